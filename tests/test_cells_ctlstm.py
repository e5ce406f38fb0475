"""ctlstm (Mei & Eisner 2017) against a float64 NumPy reference over irregular gaps; its special
cases (Δt = 0, Δt → ∞, δ = 0, C̄ tracking C); gradients of the custom backward pass (check_grads,
against autodiff with masks, resets, remat); causality; biases; traces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import fast_rnn, traces
from ltf.cells.base import LSTMState
from ltf.cells.ctlstm import pack, unpack
from ltf.cells.registry import make_cell
from ltf.models import SequenceModel
from ltf.rnn import scan_layer

from cell_inputs import perturbed_params, sigmoid

B, T, D, H = 3, 6, 4, 3
GATES = ("i", "f", "g", "o", "i_bar", "f_bar", "delta")


def setup(seed=0, dtype=jnp.float64, k_time=1):
    """Params off their init, inputs with irregular gaps, and a valid carry: δ ≥ 0, o ∈ (0, 1),
    h = o ⊙ tanh(C) (what a step leaves behind)."""
    cell = make_cell("ctlstm")
    params = perturbed_params(cell, jax.random.key(seed), D, H, dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, D)), dtype)
    dts = jnp.asarray(rng.exponential(1.5, size=(B, T, k_time)), dtype)
    return cell, params, xs, dts, valid_state(rng, dtype)


def valid_state(rng, dtype):
    c, c_bar, d, o = (rng.normal(size=(B, H)) for _ in range(4))
    delta, o = np.logaddexp(0.0, d), sigmoid(o)
    return LSTMState(c=jnp.asarray(np.concatenate([c, c_bar, delta, o], axis=1), dtype),
                     h=jnp.asarray(o * np.tanh(c), dtype))


def reference_run(params, xs_BxTxD, dts_BxTxK, state):
    """The paper's equations step by step in float64 NumPy. Returns hs_BxTxH, final (c_Bx4H, h)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w_x, w_h, b = (np.split(p[k], len(GATES), axis=-1) for k in ("w_x", "w_h", "b"))
    W = {g: (np.concatenate([w_h[n], w_x[n]], axis=0), b[n]) for n, g in enumerate(GATES)}  # on [h, x]
    c, c_bar, delta, o = np.split(np.asarray(state.c, np.float64), 4, axis=1)
    hs = []
    for t in range(xs_BxTxD.shape[1]):
        x, dt = np.asarray(xs_BxTxD[:, t], np.float64), np.asarray(dts_BxTxK[:, t, :1], np.float64)
        c_t = c_bar + (c - c_bar) * np.exp(-delta * dt)  # c(t) = c̄ + (c − c̄) exp(−δ Δt)
        h_t = o * (2 * sigmoid(2 * c_t) - 1)  # h(t) = o ⊙ (2σ(2c(t)) − 1), as the paper writes it
        hx = np.concatenate([h_t, x], axis=1)
        pre = {g: hx @ W[g][0] + W[g][1] for g in GATES}
        i, f, o, i_bar, f_bar = (sigmoid(pre[g]) for g in ("i", "f", "o", "i_bar", "f_bar"))
        z = np.tanh(pre["g"])
        delta = np.log1p(np.exp(pre["delta"]))  # softplus
        c = f * c_t + i * z
        c_bar = f_bar * c_bar + i_bar * z
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, axis=1), (np.concatenate([c, c_bar, delta, o], axis=1), h)


def lstm_part(params):
    """The first four gate blocks (i, f, g, o) as the parameters of an `lstm`."""
    return {k: v[..., :4 * H] for k, v in params.items()}


@pytest.mark.parametrize("start", ["zeros", "state"])
def test_matches_numpy_reference_over_irregular_gaps(start):
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(k_time=2)  # Δt's second column must not matter
        state = cell.initial_state(B, H, jnp.float64) if start == "zeros" else state
        final, hs = jax.jit(lambda p, x, d, s: scan_layer(cell, p, x, d, None, s))(params, xs, dts, state)
        hs_ref, (c_ref, h_ref) = reference_run(params, xs, dts, state)
        np.testing.assert_allclose(hs, hs_ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(final.c, c_ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(final.h, h_ref, rtol=1e-10, atol=1e-10)
        assert final.c.shape == (B, 4 * H) and final.h.shape == (B, H)
        assert np.all(np.asarray(unpack(final.c)[2]) >= 0)  # δ = softplus(·)


def test_zero_gap_is_the_jump_alone():
    """Δt = 0: before_step returns the carry and h = o ⊙ tanh(C) unchanged."""
    with jax.enable_x64(True):
        cell, params, _, _, state = setup(seed=1)
        c_in, h_in = cell.before_step(params, state.c, state.h, jnp.zeros((B, 1)))
        np.testing.assert_array_equal(c_in, state.c)
        np.testing.assert_allclose(h_in, state.h, rtol=1e-14, atol=1e-15)


def test_a_long_gap_relaxes_c_to_its_target():
    """Δt → ∞: C(t) → C̄, h(t) → o ⊙ tanh(C̄), and |C(t) − C̄| shrinks monotonically on the way."""
    with jax.enable_x64(True):
        cell, params, _, _, state = setup(seed=2)
        c, c_bar, delta, o = unpack(state.c)
        gaps = [0.0, 0.1, 1.0, 10.0, 1e9]
        dist = []
        for gap in gaps:
            c_in, h_in = cell.before_step(params, state.c, state.h, jnp.full((B, 1), gap))
            c_t, c_bar_t, delta_t, o_t = unpack(c_in)
            for kept, original in ((c_bar_t, c_bar), (delta_t, delta), (o_t, o)):
                np.testing.assert_array_equal(kept, original)
            np.testing.assert_allclose(h_in, o * np.tanh(c_t), rtol=1e-14)
            dist.append(np.abs(np.asarray(c_t - c_bar)))
        assert np.all(np.diff(np.stack(dist), axis=0) <= 0)
        np.testing.assert_array_equal(dist[-1], 0.0)  # exactly C̄
        np.testing.assert_allclose(h_in, o * np.tanh(c_bar), rtol=1e-14)


def test_zero_decay_rate_never_decays_and_is_the_lstm():
    """δ = 0 (a large negative δ pre-activation): C(t) = C at every gap, and from zeros the cell is
    `lstm` on its first four gate blocks, whatever Δt."""
    with jax.enable_x64(True):
        cell, params, xs, dts, _ = setup(seed=3)
        b = params["b"].at[6 * H:].set(-1e3)  # softplus(−1e3 + O(1)) = 0 in float64
        params = {**params, "b": b}
        final, hs = scan_layer(cell, params, xs, dts)
        assert not np.any(np.asarray(unpack(final.c)[2]))
        c_in, _ = cell.before_step(params, final.c, final.h, jnp.full((B, 1), 1e6))
        np.testing.assert_array_equal(c_in, final.c)
        final_lstm, hs_lstm = scan_layer(make_cell("lstm"), lstm_part(params), xs, dts)
        np.testing.assert_allclose(hs, hs_lstm, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(unpack(final.c)[0], final_lstm.c, rtol=1e-12, atol=1e-12)


def test_zero_gaps_everywhere_is_the_lstm():
    with jax.enable_x64(True):
        cell, params, xs, dts, _ = setup(seed=4)
        _, hs = scan_layer(cell, params, xs, jnp.zeros_like(dts))
        _, hs_lstm = scan_layer(make_cell("lstm"), lstm_part(params), xs, dts)
        _, hs_gaps = scan_layer(cell, params, xs, dts)
        np.testing.assert_allclose(hs, hs_lstm, rtol=1e-12, atol=1e-12)
        assert np.abs(np.asarray(hs_gaps - hs_lstm)).max() > 1e-3  # the gaps do forget


def test_target_gates_equal_to_the_cell_gates_track_c():
    """ī, f̄ blocks = i, f blocks, from C = C̄: C̄_t = C_t at every step (C − C̄ = f ⊙ (C − C̄) e^{−δΔt}
    stays 0), so nothing decays and the cell is `lstm` on its first four blocks, whatever Δt and δ."""
    with jax.enable_x64(True):
        cell, params, xs, dts, _ = setup(seed=5)
        copy = lambda w: jnp.concatenate([w[..., :4 * H], w[..., :2 * H], w[..., 6 * H:]], axis=-1)  # noqa: E731
        params = {k: copy(v) for k, v in params.items()}
        tr = traces.cell_traces(cell, params, xs, dts)
        final, hs = scan_layer(cell, params, xs, dts)
        c, c_bar, delta, _ = unpack(final.c)
        np.testing.assert_allclose(c_bar, c, rtol=1e-12, atol=1e-12)
        assert np.asarray(delta).min() > 1e-2  # the decay rate is not what makes it so
        _, hs_lstm = scan_layer(make_cell("lstm"), lstm_part(params), xs, dts)
        np.testing.assert_allclose(hs, hs_lstm, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(tr.gates["i_bar"], tr.gates["i"], rtol=1e-12)


def loss_fn(cell, mask, backward, **options):
    def loss(params, xs, dts, state):
        final, hs = scan_layer(cell, params, xs, dts, mask, state, backward=backward, **options)
        weights = jnp.linspace(-1.0, 1.0, H, dtype=hs.dtype)
        return (jnp.sum(jnp.sin(hs) * weights[None, None]) + jnp.sum(jnp.cos(final.c))
                + jnp.sum(weights[None] * final.h))
    return loss


MASK = np.ones((B, T), np.float64)
MASK[1, 4:] = 0.0  # padding after a shorter sequence
MASK[2, 2] = 0.0  # a masked step in the middle
RESETS = np.zeros((B, T), np.float64)
RESETS[0, 3] = 1.0
RESETS[1, 0] = 1.0


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
def test_check_grads_of_the_custom_path(masked):
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(seed=6)
        loss = jax.jit(loss_fn(cell, jnp.asarray(MASK) if masked else None, "custom"))
        check_grads(loss, (params, xs, dts, state), order=1, modes=["rev"])


@pytest.mark.parametrize("options", [{}, pytest.param({"remat": True}, marks=pytest.mark.slow),
                                     pytest.param({"unroll": 2}, marks=pytest.mark.slow)],
                         ids=["plain", "remat", "unroll"])
def test_custom_gradients_equal_autodiff(options):
    """With padding, a masked middle step and resets; d state0.h is zero (h(t) is read from the
    packed c), every parameter and Δt get a gradient."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(seed=7)
        mask, resets = jnp.asarray(MASK), jnp.asarray(RESETS)

        def both(*args):
            return [jax.value_and_grad(loss_fn(cell, mask, backward, resets_BxT=resets, **kw),
                                       argnums=(0, 1, 2, 3))(*args)
                    for backward, kw in (("custom", options), ("autodiff", {}))]

        (value, grads), (value_ref, grads_ref) = jax.jit(both)(params, xs, dts, state)
        np.testing.assert_allclose(value, value_ref, rtol=1e-10)
        for (path, g), g_ref in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads_ref)):
            scale = max(float(jnp.max(jnp.abs(g_ref))), 1e-6)  # per leaf, relative to its largest entry
            np.testing.assert_allclose(g / scale, g_ref / scale, rtol=0, atol=1e-10,
                                       err_msg=jax.tree_util.keystr(path))
        d_params, _, d_dts, d_state = grads
        assert all(float(jnp.max(jnp.abs(v))) > 0 for v in d_params.values())
        assert float(jnp.max(jnp.abs(d_dts[0, 1:, 0]))) > 0
        np.testing.assert_array_equal(d_state.h, 0.0)
        np.testing.assert_array_equal(d_state.c[1], 0.0)  # row 1 resets at step 0


@pytest.mark.slow
def test_remat_chunks_equal_autodiff():
    with jax.enable_x64(True):
        cell, params, xs, dts, state = setup(seed=8)
        tm = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731

        def loss(custom):
            def f(params, xs, dts, state):
                if custom:
                    final, hs = fast_rnn.layer(cell, params, tm(xs), tm(dts), tm(jnp.asarray(MASK)), state,
                                               remat=True, remat_chunk=4)
                    hs = tm(hs)
                else:
                    final, hs = scan_layer(cell, params, xs, dts, jnp.asarray(MASK), state, backward="autodiff")
                return jnp.sum(jnp.sin(hs)) + jnp.sum(final.c ** 2)
            return jax.grad(f, argnums=(0, 1, 2, 3))

        got, want = (jax.jit(loss(c))(params, xs, dts, state) for c in (True, False))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12), got, want)


@pytest.mark.slow
def test_sequence_model_is_causal_and_reads_each_gap():
    """The output at t depends on inputs and gaps up to t only; the gap Δt_t reaches it."""
    model = SequenceModel.build(d_values=2, d_out=2, cell="ctlstm", d_hidden=H, n_layers=2)
    params = model.init(jax.random.key(9))
    rng = np.random.default_rng(9)
    values = jnp.asarray(rng.normal(size=(1, T, 2)), jnp.float32)
    dts = jnp.asarray(rng.exponential(size=(1, T, 1)), jnp.float32)
    jac = jax.jacrev(lambda v, d: model.apply(params, v, d)[0], argnums=(0, 1))(values, dts)
    for j in jac:  # out_1xTxO over input_1xTxF
        j = np.asarray(j)[0, :, :, 0]  # T x O x T x F
        for t in range(T):
            assert np.all(j[t, :, t + 1:] == 0.0)
    j_dt = np.asarray(jac[1])[0, :, :, 0, :, 0]  # T x O x T
    assert all(np.abs(j_dt[t, :, t]).max() > 0 for t in range(1, T))
    assert np.abs(np.asarray(jac[0])[0, T - 1, :, 0]).max() > 0


def test_biases_follow_forget_init_for_both_forget_gates():
    b = dict(zip(GATES, np.split(np.asarray(make_cell("ctlstm").init(jax.random.key(0), D, H)["b"]), 7)))
    np.testing.assert_array_equal(b["f"], 1.0)
    np.testing.assert_array_equal(b["f_bar"], 1.0)
    for g in ("i", "g", "o", "i_bar", "delta"):
        np.testing.assert_array_equal(b[g], 0.0)
    cell = make_cell("ctlstm", forget_init="chrono", chrono_t_max=50)
    b = dict(zip(GATES, np.split(np.asarray(cell.init_bias(jax.random.key(0), 500)), 7)))
    for f, i in (("f", "i"), ("f_bar", "i_bar")):
        assert 0.0 <= b[f].min() and b[f].max() <= np.log(49.0)  # b ~ log U[1, T_max − 1]
        np.testing.assert_array_equal(b[i], -b[f])
    assert np.abs(b["f"] - b["f_bar"]).max() > 0.1  # drawn anew
    assert cell.initial_state(B, H).c.shape == (B, 4 * H)


def test_decay_option_is_refused():
    with pytest.raises(ValueError, match="decays its own carry"):
        make_cell("ctlstm", decay=True)


def test_traces_report_the_cell_state_and_the_extra_gates():
    cell, params, xs, dts, state = setup(seed=10, dtype=jnp.float32)
    tr = traces.cell_traces(cell, params, xs, dts, None, state)
    final, _ = scan_layer(cell, params, xs, dts, None, state)
    assert all(v.shape == (B, T, H) for v in (*tr.gates.values(), tr.c, tr.h))
    np.testing.assert_allclose(tr.c[:, -1], unpack(final.c)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.gates["delta"][:, -1], unpack(final.c)[2], rtol=1e-5, atol=1e-6)
    for k in ("i_bar", "f_bar"):
        assert np.all((tr.gates[k] > 0) & (tr.gates[k] < 1)), k
    assert np.all(tr.gates["delta"] >= 0)
    np.testing.assert_array_equal(pack(*unpack(final.c)), final.c)
