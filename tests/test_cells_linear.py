"""rglru (Griffin's RG-LRU) and linear_decay against float64 NumPy references of their equations;
gradients (check_grads); their special cases (r ≡ 0 holds the state, Δt = 0, Δt → ∞, the moving
average); Griffin's ring initialisation, the bounded √(1 − a²) gradient and the reset; causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

from ltf import fast_rnn, traces
from ltf.cells.base import LSTMState
from ltf.cells.linear import sqrt_bounded_gradient
from ltf.cells.registry import make_cell
from ltf.rnn import scan_layer

from cell_inputs import perturbed_params, sigmoid

B, T, D, H = 3, 7, 4, 3
NAMES = ("rglru", "linear_decay")
FORMS = ("sequential", "parallel")


def softplus(x):
    return np.logaddexp(0.0, x)


def setup(name, seed=0, dtype=jnp.float64, form="sequential", **options):
    """Params off their init, inputs with irregular gaps, a non-zero initial state (c = h)."""
    cell = make_cell(name, form=form, **options)
    params = perturbed_params(cell, jax.random.key(seed), D, H, dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, D)), dtype)
    dts = jnp.asarray(rng.exponential(1.5, size=(B, T, 1)), dtype)
    h0 = jnp.asarray(rng.normal(size=(B, H)), dtype)
    return cell, params, xs, dts, LSTMState(h0, h0)


def reference_run(name, params, xs_BxTxD, dts_BxTx1, h0_BxH, resets_BxT=None):
    """The papers' equations step by step in float64 NumPy: hs_BxTxH (a reset zeroes the carry;
    rglru's multiplier is 1 there, as Griffin's at a document start)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xs, dts, h = np.asarray(xs_BxTxD, np.float64), np.asarray(dts_BxTx1, np.float64), np.asarray(h0_BxH, np.float64)
    resets = np.zeros(xs.shape[:2]) if resets_BxT is None else np.asarray(resets_BxT)
    hs = []
    for t in range(xs.shape[1]):
        z = xs[:, t] @ p["w_x"] + p["b"]
        start = resets[:, t, None] > 0
        h = np.where(start, 0.0, h)
        if name == "rglru":
            u, z_r, z_i = np.split(z, 3, axis=1)
            r, i = sigmoid(z_r), sigmoid(z_i)
            a = (np.exp(-softplus(p["a_param"]))) ** (8.0 * r)  # a_t = a^{c r_t}, a = exp(−softplus(Λ))
            h = a * h + np.where(start, 1.0, np.sqrt(1.0 - a ** 2)) * (i * u)
        else:
            u, z_lambda = np.split(z, 2, axis=1)
            a = np.exp(-dts[:, t] * softplus(z_lambda))  # a_t = exp(−Δt λ_t)
            h = a * h + (1.0 - a) * u
        hs.append(h)
    return np.stack(hs, axis=1)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_layer_matches_numpy_reference(name, form):
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(name, form=form)
        resets = np.zeros((B, T))
        resets[0, 3] = resets[2, 0] = 1.0
        for r in (None, resets):
            final, hs = scan_layer(cell, params, xs, dts, state=state,
                                   resets_BxT=None if r is None else jnp.asarray(r))
            hs_ref = reference_run(name, params, xs, dts, state.h, r)
            np.testing.assert_allclose(hs, hs_ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(final.h, hs_ref[:, -1], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(final.c, hs_ref[:, -1], rtol=1e-12, atol=1e-12)  # c = h


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_check_grads_of_the_layer(name, form):
    """In params, inputs, Δt and the carried state, with a padded row, a masked step and resets."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(name, seed=1, form=form)
        mask = np.ones((B, T))
        mask[1, 5:] = mask[2, 2] = 0.0
        resets = np.zeros((B, T))
        resets[0, 3] = 1.0

        def loss(params, xs, dts, state):
            final, hs = scan_layer(cell, params, xs, dts, jnp.asarray(mask), state, resets_BxT=jnp.asarray(resets))
            return jnp.sum(jnp.sin(hs) * jnp.linspace(-1.0, 1.0, H)[None, None]) + jnp.sum(final.h ** 2)

        check_grads(loss, (params, xs, dts + 0.1, state), order=1, modes=["rev"])


def test_rglru_with_r_zero_holds_its_state_exactly():
    """r ≡ 0: a_t = a⁰ = 1 and √(1 − a_t²) = 0, so h_t = h_{t-1} bit for bit and no input enters."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup("rglru", seed=2)
        w_u, w_r, w_i = np.split(np.asarray(params["w_x"]), 3, axis=1)
        b_u, b_r, b_i = np.split(np.asarray(params["b"]), 3)
        held = {**params, "w_x": jnp.asarray(np.concatenate([w_u, 0 * w_r, w_i], axis=1)),
                "b": jnp.asarray(np.concatenate([b_u, np.full(H, -1e4), b_i]))}  # σ(−1e4) = 0
        for form in FORMS:
            _, hs = scan_layer(make_cell("rglru", form=form), held, xs, dts, state=state)
            np.testing.assert_array_equal(hs, np.broadcast_to(state.h[:, None], hs.shape))
        _, hs = scan_layer(cell, params, xs, dts, state=state)
        assert np.abs(np.asarray(hs - state.h[:, None])).max() > 1e-3  # and otherwise it moves


def test_rglru_ring_initialisation():
    """a = exp(−softplus(Λ)) with a² uniform on [0.9², 0.999²] (recurrentgemma's ring), biases zero."""
    params = make_cell("rglru").init(jax.random.key(0), 5, 4000)
    a = np.exp(-softplus(np.asarray(params["a_param"], np.float64)))
    assert a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6
    lo, hi = 0.9 ** 2, 0.999 ** 2
    assert scipy.stats.kstest(a ** 2, scipy.stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue > 1e-3
    np.testing.assert_array_equal(params["b"], 0.0)
    assert params["w_x"].shape == (5, 3 * 4000)


def test_rglru_ring_is_an_option():
    """ring_min / ring_max move the ring (a chrono-like start for long lags); a² stays uniform on it."""
    params = make_cell("rglru", ring_min=0.99, ring_max=0.99975).init(jax.random.key(1), 5, 4000)
    a = np.exp(-softplus(np.asarray(params["a_param"], np.float64)))
    assert a.min() >= 0.99 - 1e-6 and a.max() <= 0.99975 + 1e-6 and a.max() > 0.9995
    lo, hi = 0.99 ** 2, 0.99975 ** 2
    assert scipy.stats.kstest(a ** 2, scipy.stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue > 1e-3


def test_sqrt_gradient_is_bounded_at_zero():
    grad = jax.grad(lambda x: sqrt_bounded_gradient(x, 1000.0))
    assert float(grad(0.0)) == pytest.approx(1000.0)  # 1/(2√x) at x = 1/(4·1000²)
    assert float(grad(1.0)) == pytest.approx(0.5)  # the true derivative where it is below the bound
    assert not np.isfinite(float(jax.grad(jnp.sqrt)(0.0)))  # what it guards against


@pytest.mark.parametrize("b_r", [-1e4, -30.0])
def test_rglru_gradient_is_finite_as_a_goes_to_one(b_r):
    """r = σ(b_r) → 0, a_t → 1: at a_t = 1 exactly (b_r = −1e4) an unbounded √'s derivative is ∞,
    and ∞ · dr/dz = ∞ · 0 is NaN; bounded, every gradient is finite."""
    cell, params, xs, dts, state = setup("rglru", seed=3, dtype=jnp.float32)
    b_u, _, b_i = np.split(np.asarray(params["b"]), 3)
    params = {**params, "b": jnp.asarray(np.concatenate([b_u, np.full(H, b_r), b_i]), jnp.float32)}
    loss = lambda p, x: jnp.sum(scan_layer(cell, p, x, dts, state=state)[1] ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_rglru_reset_takes_the_first_input_whole():
    """At a reset h_t = i_t ⊙ u_t (Griffin's multiplier 1 at a document start), whatever came before."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup("rglru", seed=4)
        resets = jnp.zeros((B, T)).at[:, 2].set(1.0)
        _, hs = scan_layer(cell, params, xs, dts, state=state, resets_BxT=resets)
        u, _, z_i = np.split(np.asarray(xs[:, 2]) @ np.asarray(params["w_x"]) + np.asarray(params["b"]), 3, axis=1)
        np.testing.assert_allclose(hs[:, 2], sigmoid(z_i) * u, rtol=1e-12)


def test_linear_decay_zero_gap_leaves_the_state_unchanged():
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup("linear_decay", seed=5)
        for form in FORMS:
            _, hs = scan_layer(make_cell("linear_decay", form=form), params, xs, jnp.zeros_like(dts), state=state)
            np.testing.assert_array_equal(hs, np.broadcast_to(state.h[:, None], hs.shape))


def test_linear_decay_infinite_gap_gives_the_target():
    """Δt → ∞: a_t = 0, h_t = u_t = x_t W_u + b_u at every step, the past forgotten."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup("linear_decay", seed=6)
        _, hs = scan_layer(cell, params, xs, jnp.full_like(dts, 1e30), state=state)
        u = np.split(np.asarray(xs) @ np.asarray(params["w_x"]) + np.asarray(params["b"]), 2, axis=-1)[0]
        np.testing.assert_allclose(hs, u, rtol=1e-12, atol=1e-12)


def test_linear_decay_constant_rate_and_gap_is_an_exponential_moving_average():
    """W_λ = 0 and one Δt: h_T = (1 − α)^T h_0 + Σ_t α (1 − α)^{T−t} u_t,
    α = 1 − exp(−Δt softplus(b_λ))."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup("linear_decay", seed=7)
        w_u, _ = np.split(np.asarray(params["w_x"]), 2, axis=1)
        params = {**params, "w_x": jnp.asarray(np.concatenate([w_u, np.zeros_like(w_u)], axis=1))}
        gap = 0.7
        _, hs = scan_layer(cell, params, xs, jnp.full_like(dts, gap), state=state)
        alpha = 1.0 - np.exp(-gap * softplus(np.split(np.asarray(params["b"]), 2)[1]))
        u = np.asarray(xs) @ w_u + np.split(np.asarray(params["b"]), 2)[0]
        weights = alpha * (1.0 - alpha) ** np.arange(T - 1, -1, -1)[:, None]  # T x H, the newest last
        ema = (1.0 - alpha) ** T * np.asarray(state.h) + np.einsum("th,bth->bh", weights, u)
        np.testing.assert_allclose(hs[:, -1], ema, rtol=1e-12)


def test_linear_decay_with_unit_gaps_is_the_plain_selective_decay():
    """Δt = 1: a_t = exp(−softplus(x W_λ + b_λ)), the selective decay of a cell without time."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup("linear_decay", seed=8)
        _, hs = scan_layer(cell, params, xs, jnp.ones_like(dts), state=state)
        u, z_lambda = np.split(np.asarray(xs) @ np.asarray(params["w_x"]) + np.asarray(params["b"]), 2, axis=-1)
        h, want = np.asarray(state.h), []
        for t in range(T):
            a = np.exp(-softplus(z_lambda[:, t]))
            h = a * h + (1 - a) * u[:, t]
            want.append(h)
        np.testing.assert_allclose(hs, np.stack(want, axis=1), rtol=1e-12)
        _, hs_gaps = scan_layer(cell, params, xs, dts, state=state)
        assert np.abs(np.asarray(hs_gaps - hs)).max() > 1e-3  # and the real gaps matter


def test_linear_decay_rates_start_spread_over_the_time_scales():
    cell = make_cell("linear_decay", timescale_min=2.0, timescale_max=500.0)
    b_u, b_lambda = np.split(np.asarray(cell.init(jax.random.key(0), 3, 4000)["b"], np.float64), 2)
    tau = 1.0 / softplus(b_lambda)  # the initial time scale of each unit, at x W_λ = 0
    assert tau.min() >= 2.0 * (1 - 1e-4) and tau.max() <= 500.0 * (1 + 1e-4)
    assert scipy.stats.kstest(np.log(tau), scipy.stats.uniform(loc=np.log(2.0), scale=np.log(250.0)).cdf).pvalue > 1e-3
    np.testing.assert_array_equal(b_u, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_causal(name):
    """Changing the inputs (values and gaps) after t leaves every output up to t as it was; in the
    parallel form (the sequential one is causal by construction)."""
    cell, params, xs, dts, state = setup(name, seed=9, dtype=jnp.float32, form="parallel")
    run = jax.jit(lambda x, d: scan_layer(cell, params, x, d, state=state)[1])
    base = run(xs, dts)
    for t in (0, 3, T - 2):
        out = run(xs.at[:, t + 1:].add(1.0), dts.at[:, t + 1:].multiply(2.0))
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
        assert np.abs(np.asarray(out[:, t + 1:] - base[:, t + 1:])).max() > 0


def test_traces_report_the_decay():
    cell, params, xs, dts, state = setup("linear_decay", seed=10, dtype=jnp.float32)
    tr = traces.cell_traces(cell, params, xs, dts, None, state)
    np.testing.assert_allclose(tr.h, scan_layer(cell, params, xs, dts, state=state)[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.gates["a"], np.exp(-np.asarray(dts) * np.asarray(tr.gates["lambda"])), rtol=1e-5)


@pytest.mark.parametrize("name,options,match", [
    ("rglru", {"form": "chunkwise"}, "form='chunkwise'"),
    ("rglru", {"forget_init": "chrono", "chrono_t_max": 10}, "no LSTM forget gate"),
    ("linear_decay", {"decay": True}, "decay=True does not apply to linear_decay"),
    ("linear_decay", {"timescale_min": 10.0, "timescale_max": 1.0}, "timescale_min"),
    ("rglru", {"ring_max": 1.0}, "ring_max=1.0"),
    ("rglru", {"ring_min": 0.99, "ring_max": 0.9}, "ring_min=0.99"),
])
def test_bad_options_name_the_field(name, options, match):
    with pytest.raises(ValueError, match=match):
        make_cell(name, **options)


def test_the_matmul_scans_refuse_a_linear_cell_naming_it():
    cell, params, xs, dts, state = setup("rglru", dtype=jnp.float32)
    with pytest.raises(NotImplementedError, match="rglru is a linear recurrence.*linear_scan"):
        fast_rnn.layer(cell, params, jnp.swapaxes(xs, 0, 1), jnp.swapaxes(dts, 0, 1), None, state)
