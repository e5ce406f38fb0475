"""Phased LSTM (ltf/cells/phased.py): a float64 NumPy reference of the whole step over a sequence,
the special cases its equations imply (k ≡ 1 is `adaptive` with peepholes; k = 0 keeps the carry),
the time gate's shape, the leak in training only, gradients through the custom backward pass,
causality, the initialisation, and the absolute times reaching the cell through the models."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

from ltf import traces
from ltf.cells import phased
from ltf.cells.base import LSTMState, StepInputs
from ltf.cells.registry import make_cell
from ltf.models import SequenceModel, with_times
from ltf.rnn import scan_layer
from ltf.shapes import dense

from cell_inputs import perturbed_params, sigmoid

B, T, D, H = 3, 12, 5, 4
# Open a third of every period, periods of 2 to 8 time units: over T steps of mean gap 1 every
# unit is open at some steps and closed at others, so both branches of the time gate take part.
OPEN = dict(r_on_init=0.3, period_init_min=2.0, period_init_max=8.0)


def setup(seed=0, dtype=jnp.float64, **options):
    """A cell, params moved off their init (peepholes start at zero), inputs, Δt with the
    absolute times as its last column (B x T x 2) and a non-zero initial state."""
    cell = make_cell("phased", **{**OPEN, **options})
    params = perturbed_params(cell, jax.random.key(seed), D, H, dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, D)), dtype)
    dts = rng.exponential(1.0, size=(B, T, 1))
    times = 3.0 + np.cumsum(dts[..., 0], axis=1)  # the batch's clock, not the window's
    dts_t = jnp.asarray(np.concatenate([dts, times[..., None]], axis=-1), dtype)
    state = LSTMState(c=jnp.asarray(rng.normal(size=(B, H)), dtype),
                      h=jnp.asarray(0.5 * rng.normal(size=(B, H)), dtype))
    return cell, params, xs, dts_t, state


def reference_gate(phi, r_on, leak):
    """k over the phase, the paper's three pieces, in NumPy."""
    return np.where(phi < r_on / 2, 2 * phi / r_on, np.where(phi < r_on, 2 - 2 * phi / r_on, leak * phi))


def reference_run(cell, params, xs_BxTxD, dts_BxTx2, state):
    """The paper's equations step by step in float64 NumPy: hs_BxTxH, (c, h), ks_BxTxH."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w_i, w_f, w_g, w_o = np.split(np.concatenate([p["w_h"], p["w_x"]]), 4, axis=1)  # W acting on [h, x]
    b_i, b_f, b_g, b_o = np.split(p["b"], 4)
    if cell.time_params == "raw":  # the authors' code: |τ|, |r_on|
        tau, r_on = np.abs(p["tau"]), np.abs(p["r_on"]) if cell.learn_r_on else cell.r_on_init
    else:
        tau = np.exp(p["log_tau"])
        r_on = sigmoid(p["r_on_logit"]) if cell.learn_r_on else cell.r_on_init
    c, h = (np.asarray(a, np.float64) for a in state)
    hs, ks = [], []
    for t in range(xs_BxTxD.shape[1]):
        hx = np.concatenate([h, np.asarray(xs_BxTxD[:, t], np.float64)], axis=1)
        i = sigmoid(hx @ w_i + b_i + p["u_i"] * c)
        f = sigmoid(hx @ w_f + b_f + p["u_f"] * c)
        c_tilde = f * c + i * np.tanh(hx @ w_g + b_g)
        h_tilde = sigmoid(hx @ w_o + b_o + p["u_o"] * c_tilde) * np.tanh(c_tilde)
        phi = np.mod(np.asarray(dts_BxTx2[:, t, -1], np.float64)[:, None] - p["shift"], tau) / tau
        k = reference_gate(phi, r_on, cell.leak)
        c, h = k * c_tilde + (1 - k) * c, k * h_tilde + (1 - k) * h
        hs.append(h)
        ks.append(k)
    return np.stack(hs, axis=1), (c, h), np.stack(ks, axis=1)


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("learn_r_on", [True, False])
@pytest.mark.parametrize("time_params", phased.TIME_PARAMS)
def test_matches_numpy_reference(time_params, learn_r_on, training):
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(learn_r_on=learn_r_on, time_params=time_params)
        cell = cell if training else cell.for_evaluation()
        hs_ref, (c_ref, h_ref), ks = reference_run(cell, params, xs, dts, state)
        assert 0.1 < np.mean(ks > cell.leak) < 0.9  # open steps and closed ones (k ≤ α φ)
        final, hs = scan_layer(cell, params, xs, dts, None, state)
        np.testing.assert_allclose(hs, hs_ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(final.c, c_ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(final.h, h_ref, rtol=1e-10, atol=1e-10)
        step = jax.jit(lambda s, x, dt: cell.step(params, s, StepInputs(cell.project(params, x, dt), dt)))
        for t in range(T):  # the cell's own step, in a Python loop
            state, h = step(state, xs[:, t], dts[:, t])
            np.testing.assert_allclose(h, hs_ref[:, t], rtol=1e-10, atol=1e-10)


def clock_at_peak(params, r_on):
    """τ = 1 and s = −r_on/2 for every unit: at integer times φ = r_on/2, where k = 1."""
    return {**params, "log_tau": jnp.zeros(H, params["w_h"].dtype),
            "shift": jnp.full(H, -r_on / 2, params["w_h"].dtype)}


@pytest.mark.parametrize("r_on,tol", [(0.5, 1e-12), (0.05, 1e-10)])  # 0.5: φ = 1/4 and k = 1 exactly
def test_always_open_is_adaptive_with_peepholes(r_on, tol):
    """k ≡ 1: c_t = c̃_t, h_t = h̃_t, the peephole LSTM of `adaptive` on the shared parameters."""
    with jax.enable_x64(True):
        cell, params, xs, _, state = setup(r_on_init=r_on, learn_r_on=False)
        params = clock_at_peak(params, r_on)
        adaptive = make_cell("adaptive", peepholes=True)
        shared = {k: params[k] for k in adaptive.init(jax.random.key(0), D, H)}
        assert set(shared) == {"w_x", "w_h", "b", "u_f", "u_i", "u_o"}
        times = jnp.broadcast_to(jnp.arange(T, dtype=jnp.float64), (B, T))
        dts = with_times(jnp.ones((B, T, 1)), times)
        np.testing.assert_allclose(cell.time_gate(params, times[:, 5]), 1.0, rtol=0, atol=1e-12)
        final, hs = scan_layer(cell, params, xs, dts, None, state)
        final_ref, hs_ref = scan_layer(adaptive, shared, xs, dts[..., :1], None, state)
        np.testing.assert_allclose(hs, hs_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(final.c, final_ref.c, rtol=tol, atol=tol)


def test_a_closed_gate_keeps_the_carry_and_leaks_only_in_training():
    """τ = 10, s = 0: at t = 1..9, φ = 0.1..0.9 ≥ r_on, the closed phase. k = 0 outside training
    (the state stays exactly as it was); in training k = α φ, a small step towards the update."""
    with jax.enable_x64(True):
        cell, params, xs, _, state = setup(r_on_init=0.05)
        params = {**params, "log_tau": jnp.full(H, math.log(10.0)), "shift": jnp.zeros(H),
                  "r_on_logit": jnp.full(H, math.log(0.05 / 0.95))}
        times = jnp.broadcast_to(jnp.arange(1.0, 10.0), (B, 9))
        dts = with_times(jnp.ones((B, 9, 1)), times)
        final, hs = scan_layer(cell.for_evaluation(), params, xs[:, :9], dts, None, state)
        np.testing.assert_array_equal(final.c, state.c)
        np.testing.assert_array_equal(hs, np.broadcast_to(state.h[:, None], hs.shape))
        final_train, _ = scan_layer(cell, params, xs[:, :9], dts, None, state)
        moved = np.abs(np.asarray(final_train.c - state.c))
        assert 0 < moved.max() < 9 * cell.leak * 2 * (np.abs(state.c).max() + 1)  # Σ α φ |c̃ − c|


def test_leak_only_in_training():
    cell = make_cell("phased", leak=0.01, r_on_init=0.2)
    evaluated = cell.for_evaluation()
    assert cell.leak == 0.01 and evaluated.leak == 0.0
    assert dataclasses.replace(evaluated, leak=0.01) == cell  # nothing else changes
    assert make_cell("lstm").for_evaluation() == make_cell("lstm")
    # the model runs the cell as for_evaluation() without a dropout rng, as itself with one
    model = SequenceModel.build(d_values=2, d_out=3, cell="phased", d_hidden=H)
    params = model.init(jax.random.key(0))
    values = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, 2)), jnp.float32)
    evaluation, _ = model.apply(params, values)
    training, _ = model.apply(params, values, dropout_rng=jax.random.key(1))  # dropout 0: only the leak
    dts = with_times(jnp.ones((B, T, 1)))
    for mode_cell, out in ((make_cell("phased").for_evaluation(), evaluation), (make_cell("phased"), training)):
        _, hs = scan_layer(mode_cell, params["stack"]["layer_0"], values, dts)
        np.testing.assert_allclose(dense(params["out"], hs), out, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(training - evaluation)).max() > 0


@pytest.mark.parametrize("r_on,leak", [(0.05, 1e-3), (0.3, 0.0)])
def test_time_gate_over_one_period(r_on, leak):
    """Piecewise linear: 0 at φ = 0, rising to 1 at φ = r_on/2, back to 0 at r_on, then α φ."""
    phi = (np.arange(2000) / 2000)[None]  # 1 x 2000, through φ = r_on/2 and r_on exactly
    with jax.enable_x64(True):
        k = np.asarray(phased.time_gate(jnp.asarray(phi), jnp.asarray([r_on]), leak))
    open_ = phi < r_on
    np.testing.assert_allclose(k[open_], np.interp(phi[open_], [0, r_on / 2, r_on], [0, 1, 0]), atol=1e-12)
    np.testing.assert_allclose(k[~open_], leak * phi[~open_], atol=1e-15)
    assert k.max() == 1.0 and phi[0, k.argmax()] == pytest.approx(r_on / 2)
    assert np.all((k >= 0) & (k <= 1))


def test_phase_is_periodic_in_the_absolute_time():
    """φ = ((t − s) mod τ)/τ: one value per unit, the same one period later, from the shift on."""
    with jax.enable_x64(True):
        cell, params, _, _, _ = setup()
        tau, shift = np.exp(np.asarray(params["log_tau"])), np.asarray(params["shift"])
        t = jnp.asarray([0.0, 1.7, 40.3])
        phi = np.asarray(cell.phase(params, t))
        np.testing.assert_allclose(phi, np.mod(np.asarray(t)[:, None] - shift, tau) / tau, atol=1e-12)
        assert np.all((phi >= 0) & (phi < 1))
        for unit in range(H):  # one period later: the same phase
            later = cell.phase(params, t + tau[unit])[:, unit]
            np.testing.assert_allclose(later, phi[:, unit], atol=1e-9)
        np.testing.assert_allclose(cell.phase(params, jnp.asarray(shift))[np.arange(H), np.arange(H)], 0.0,
                                   atol=1e-12)


def test_phase_in_float32_at_long_times_and_its_gradients_are_those_of_the_remainder():
    """φ is computed as t − s less a whole number of periods, then over τ (vectorised, where XLA's
    remainder is not): in float32 over two days in minutes it stays within the rounding that t − s
    itself carries, in the first periods within φ's own rounding, and its gradients in log τ and s
    are those of mod(t − s, τ)/τ."""
    cell, params, _, _, _ = setup()
    t = jnp.linspace(0.0, 2880.0, 97, dtype=jnp.float32)
    phi = np.asarray(cell.phase(params, t))
    tau = np.exp(np.asarray(params["log_tau"], np.float64))
    want = np.mod(np.asarray(t, np.float64)[:, None] - np.asarray(params["shift"], np.float64), tau) / tau
    wrapped = np.abs(phi - want)
    np.testing.assert_array_less(np.minimum(wrapped, 1 - wrapped), 1e-4)  # (0 and 1 are the same phase)
    assert np.all((phi >= 0) & (phi <= 1))
    # As exact as the remainder in the first periods: where t − s is exact in float32 (one period
    # and a bit past the shift), φ is within two of its own float32 spacings; (t − s)/τ less its
    # floor would be off by the spacing of (t − s)/τ (tens of φ's here), which the open window's
    # slope 2/r_on magnifies
    tau32, shift32 = np.asarray(cell.period(params), np.float32), np.asarray(params["shift"], np.float32)
    gaps = tau32[None, :] * (np.float32(1) + np.linspace(0.01, 0.3, 30, dtype=np.float32)[:, None])
    t32 = shift32[None, :] + gaps  # (each unit its own times: column j is read from unit j's phase)
    gap64 = t32.astype(np.float64) - shift32.astype(np.float64)
    exact = gap64 == (t32 - shift32).astype(np.float64)
    assert exact.mean() > 0.5
    got = np.stack([np.asarray(cell.phase(params, jnp.asarray(t32[:, j])))[:, j] for j in range(H)], axis=1)
    want_first = np.mod(gap64, tau32.astype(np.float64)) / tau32.astype(np.float64)
    spacings = np.abs(got - want_first)[exact] / np.spacing(want_first[exact].astype(np.float32))
    assert spacings.max() <= 2.0, spacings.max()
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        t64 = jnp.asarray([0.3, 7.9, 123.4, 2000.1])

        def remainder_form(p):
            tau_1xH = jnp.exp(p["log_tau"])[None]
            return jnp.sum(jnp.sin(3.0 * jnp.mod(t64[:, None] - p["shift"][None], tau_1xH) / tau_1xH))

        got = jax.grad(lambda p: jnp.sum(jnp.sin(3.0 * cell.phase(p, t64))))(params64)
        want = jax.grad(remainder_form)(params64)
        for name in ("log_tau", "shift"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-9, err_msg=name)


@pytest.mark.slow  # 18 s on 2 busy cores; tests/test_fast_rnn.py compares phased's custom pass with autodiff by default
@pytest.mark.parametrize("options", [{}, {"learn_r_on": False}, {"remat": True}],
                         ids=["learn_r_on", "fixed_r_on", "remat"])
def test_check_grads_of_the_custom_path(options):
    """Values and gradients (params, inputs, Δt and times, state) through `ltf.fast_rnn`'s
    backward pass: against finite differences, and equal to jax.grad of the plain scan."""
    options = dict(options)
    remat = options.pop("remat", False)
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(seed=1, **options)
        mask = jnp.asarray(np.arange(T)[None] < np.array([T, 7, 10])[:, None], jnp.float64)

        def loss(backward, **kw):
            def f(params, xs, dts, state):
                final, hs = scan_layer(cell, params, xs, dts, mask, state, backward=backward, **kw)
                weights = jnp.linspace(-1.0, 1.0, H)[None, None]
                return jnp.sum(jnp.sin(hs) * weights) + jnp.sum(final.c ** 2) + jnp.sum(final.h)
            return f

        args = (params, xs, dts, state)
        check_grads(loss("custom", remat=remat), args, order=1, modes=["rev"])
        custom = jax.grad(loss("custom", remat=remat), argnums=(0, 1, 2, 3))(*args)
        autodiff = jax.grad(loss("autodiff"), argnums=(0, 1, 2, 3))(*args)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), custom, autodiff)
        assert all(float(jnp.abs(g).max()) > 0 for g in custom[0].values())  # the time gate's too
        assert float(jnp.abs(custom[2][..., -1]).max()) > 0  # the times reach the loss


@pytest.mark.slow
def test_sequence_model_is_causal_in_values_gaps_and_times():
    """Jacobians of every output over the values, Δt and the times: zero for later inputs; the
    first values and times reach the last output (in training, where closed units leak). The
    gaps themselves do not reach it: phased reads only the times (given here)."""
    model = SequenceModel.build(d_values=2, d_out=2, cell="phased", d_hidden=H, n_layers=2,
                                cell_options=OPEN)
    params = model.init(jax.random.key(1))
    rng = np.random.default_rng(1)
    values = jnp.asarray(rng.normal(size=(1, T, 2)), jnp.float32)
    dts = jnp.asarray(rng.exponential(size=(1, T, 1)), jnp.float32)
    times = 5.0 + jnp.cumsum(dts[..., 0], axis=1)

    def out(v, d, t):
        return model.apply(params, v, d, times_BxT=t, dropout_rng=jax.random.key(0))[0]

    jac = jax.jacrev(out, argnums=(0, 1, 2))(values, dts, times)
    for j in jac:  # out_1xTxO over input_1xTx...: zero wherever the input step comes later
        j = np.asarray(j).reshape(T, 2, T, -1)
        for t in range(T):
            assert np.all(j[t, :, t + 1:] == 0.0)
    assert np.abs(np.asarray(jac[0])[0, T - 1, :, 0, 0]).max() > 0
    assert np.abs(np.asarray(jac[2])[0, T - 1, :, 0, 0]).max() > 0
    assert not np.any(np.asarray(jac[1]))


def test_absolute_times_reach_the_cell_through_the_model():
    """The batch's times (a clock that does not start at the window) and the window's own clock
    (the running sum of Δt) give different outputs: each the one computed by hand with that
    clock as Δt's last column. The traces see the same times."""
    model = SequenceModel.build(d_values=2, d_out=3, cell="phased", d_hidden=H, cell_options=OPEN)
    params = model.init(jax.random.key(2))
    rng = np.random.default_rng(2)
    values = jnp.asarray(rng.normal(size=(B, T, 2)), jnp.float32)
    dts = jnp.asarray(rng.exponential(size=(B, T, 1)), jnp.float32)
    times = 17.3 + jnp.cumsum(dts[..., 0], axis=1)
    out_batch, _ = model.apply(params, values, dts, times_BxT=times)
    out_window, _ = model.apply(params, values, dts)
    assert np.abs(np.asarray(out_batch - out_window)).max() > 1e-3
    cell = model.stack.cells[0].for_evaluation()
    for clock, out in ((times, out_batch), (jnp.cumsum(dts[..., 0], axis=1), out_window)):
        dts_t = jnp.concatenate([dts, clock[..., None]], axis=-1)
        _, hs = scan_layer(cell, params["stack"]["layer_0"], values, dts_t)
        np.testing.assert_allclose(dense(params["out"], hs), out, rtol=1e-5, atol=1e-6)
        tr = traces.stack_traces(model.stack, params["stack"], values, dts, times_BxT=clock)
        np.testing.assert_allclose(tr.h, hs, rtol=1e-5, atol=1e-6)
        assert np.all((tr.gates["k"] >= 0) & (tr.gates["k"] <= 1)) and np.any(tr.gates["k"] > 0)


def test_initialisation():
    """τ log-uniform in [min, max], s ~ U(0, τ), r_on = r_on_init, peepholes zero; no r_on
    parameter when it is not learned."""
    n = 4000
    cell = make_cell("phased")
    params = cell.init_extra(jax.random.key(3), D, n)  # the time gate's (no 4000 x 4000 W_h)
    log_tau = np.asarray(params["log_tau"], np.float64)
    assert log_tau.min() >= 1.0 and log_tau.max() <= 6.0  # τ in [e, e⁶]
    assert scipy.stats.kstest(log_tau, scipy.stats.uniform(loc=1.0, scale=5.0).cdf).pvalue > 1e-3
    u = np.asarray(params["shift"], np.float64) / np.exp(log_tau)  # s / τ ~ U(0, 1)
    assert scipy.stats.kstest(u, scipy.stats.uniform().cdf).pvalue > 1e-3
    np.testing.assert_allclose(jax.nn.sigmoid(params["r_on_logit"]), 0.05, rtol=1e-6)
    for name in ("u_f", "u_i", "u_o"):
        np.testing.assert_array_equal(params[name], 0.0)
    fixed = make_cell("phased", learn_r_on=False, r_on_init=0.1, period_init_min=1.0, period_init_max=1.0)
    fixed_params = fixed.init(jax.random.key(3), D, H)
    assert "r_on_logit" not in fixed_params
    np.testing.assert_allclose(fixed.open_ratio(fixed_params), 0.1)
    np.testing.assert_allclose(fixed_params["log_tau"], 0.0)


def test_raw_time_params_are_the_same_cell_with_the_chain_rule_in_its_gradients():
    """time_params="raw" at τ = exp(log τ), r_on = σ(ρ) computes what "log" computes; its gradients
    are the log parameters' through the chain rule: ∂L/∂τ = ∂L/∂log τ / τ, ∂L/∂r_on = ∂L/∂ρ / (r(1 − r))."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup()
        raw_cell = dataclasses.replace(cell, time_params="raw")
        tau, r_on = jnp.exp(params["log_tau"]), jax.nn.sigmoid(params["r_on_logit"])
        raw = {**{k: v for k, v in params.items() if k not in ("log_tau", "r_on_logit")}, "tau": tau, "r_on": r_on}

        def loss(cell, params):
            final, hs = scan_layer(cell, params, xs, dts, None, state)
            return jnp.sum(hs**2) + jnp.sum(final.c)

        np.testing.assert_allclose(loss(raw_cell, raw), loss(cell, params), rtol=1e-12)
        grads, raw_grads = jax.grad(loss, argnums=1)(cell, params), jax.grad(loss, argnums=1)(raw_cell, raw)
        assert np.abs(grads["log_tau"]).max() > 1e-6 and np.abs(grads["r_on_logit"]).max() > 1e-6
        np.testing.assert_allclose(raw_grads["tau"], grads["log_tau"] / tau, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(raw_grads["r_on"], grads["r_on_logit"] / (r_on * (1 - r_on)), rtol=1e-8, atol=1e-12)
        for name in ("w_x", "w_h", "b", "shift", "u_f"):
            np.testing.assert_allclose(raw_grads[name], grads[name], rtol=1e-8, atol=1e-12)
        # |τ| and |r_on|: a sign flip changes nothing
        flipped = {**raw, "tau": -raw["tau"], "r_on": -raw["r_on"]}
        np.testing.assert_allclose(loss(raw_cell, flipped), loss(cell, params), rtol=1e-12)


def test_raw_time_params_initialise_tau_and_r_on_themselves():
    cell = make_cell("phased", time_params="raw", period_init_min=2.0, period_init_max=20.0, r_on_init=0.05)
    params = cell.init(jax.random.key(1), D, 500)
    assert "log_tau" not in params and "r_on_logit" not in params
    tau = np.asarray(params["tau"])
    assert tau.min() >= 2.0 - 1e-5 and tau.max() <= 20.0 + 1e-4
    np.testing.assert_allclose(params["r_on"], 0.05, rtol=1e-6)
    shift_over_tau = np.asarray(params["shift"]) / tau
    assert shift_over_tau.min() >= 0 and shift_over_tau.max() < 1
    fixed = make_cell("phased", time_params="raw", learn_r_on=False, r_on_init=0.2)
    fixed_params = fixed.init(jax.random.key(1), D, H)
    assert "r_on" not in fixed_params
    np.testing.assert_allclose(fixed.open_ratio(fixed_params), 0.2)


@pytest.mark.parametrize("options,match", [
    ({"time_params": "exp"}, "time_params='exp'.*raw"),
    ({"r_on_init": 1.0}, "r_on_init"),
    ({"r_on_init": 0.0}, "r_on_init"),
    ({"leak": -0.1}, "leak"),
    ({"period_init_min": 10.0, "period_init_max": 5.0}, "period_init_min"),
    ({"decay": True}, "decay=True does not apply"),
])
def test_bad_options_name_the_field(options, match):
    with pytest.raises(ValueError, match=match):
        make_cell("phased", **options)


@pytest.mark.slow
def test_a_language_model_keeps_its_clock_across_the_windows_it_carries_its_state_through():
    """Text has no time: the batches' `times` are positions in the stream, so two windows of T with
    the state carried give the logits of one window of 2T (with the window's own clock they did
    not: the phase restarted at every window)."""
    from ltf.data.lm_batches import lm_batches
    from ltf.models import LanguageModel

    model = LanguageModel.build(vocab_size=11, d_embed=4, cell="phased", d_hidden=6,
                                cell_options={"period_init_min": 2.0, "period_init_max": 5.0, "r_on_init": 0.3})
    params = model.init(jax.random.PRNGKey(0))
    tokens = np.random.default_rng(0).integers(0, 11, size=2 * 40)
    long = next(lm_batches(tokens, 2, 16, train=True))
    short = lm_batches(tokens, 2, 8, train=True)

    def logits(batch, states, times=True):
        return model.apply(params, batch["inputs"], batch["dt"], None, states,
                           times_BxT=batch["times"] if times else None)

    whole, _ = logits(long, None)
    first_batch, second_batch = next(short), next(short)
    first, states = logits(first_batch, None)
    second, _ = logits(second_batch, states)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-6)
    restarted, _ = logits(second_batch, states, times=False)  # the window's own clock, 1 ... T
    assert not np.allclose(restarted, whole[:, 8:], atol=1e-4)
