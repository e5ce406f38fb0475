"""`gru` and `grud` (ltf/cells/grud.py): a float64 NumPy reference over a sequence, flax's GRUCell,
the special cases of the decay, the layout's zero block, and the custom backward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf.cells.base import LSTMState, StepInputs
from ltf.cells.registry import make_cell
from ltf.rnn import scan_layer

from cell_inputs import perturbed_params, sigmoid

B, T, D, H, K = 3, 7, 5, 4, 3
RESETS = np.zeros((B, T))
RESETS[0, 3] = RESETS[2, 2] = 1.0  # a new sequence at step 3 of row 0, at the masked step of row 2


def setup(name, dtype=jnp.float64, seed=0, **options):
    """Every parameter moved off its init; Δt with K columns; padding and a masked middle step."""
    cell = make_cell(name, d_time=K, **options)
    params = perturbed_params(cell, jax.random.key(seed), D, H, dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, D)), dtype)
    dts = jnp.asarray(rng.exponential(1.0, size=(B, T, K)), dtype)
    h0 = jnp.asarray(0.5 * rng.normal(size=(B, H)), dtype)
    mask = np.ones((B, T))
    mask[1, 4:] = 0.0
    mask[2, 2] = 0.0
    return cell, params, xs, dts, LSTMState(c=h0, h=h0), jnp.asarray(mask, dtype)


def reference(params, xs_BxTxD, dts_BxTxK, mask_BxT, h0_BxH, decay: bool):
    """GRU-D's equations step by step in float64 NumPy: hs_BxTxH and the final h."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w_u, w_r, w_n = np.split(p["w_x"], 3, axis=1)
    u_u, u_r, u_n = np.split(p["w_h"], 3, axis=1)
    b_u, b_r, b_n, b_hn = np.split(p["b"], 4)
    h = np.asarray(h0_BxH, np.float64)
    hs = []
    for t in range(xs_BxTxD.shape[1]):
        x, dt = np.asarray(xs_BxTxD[:, t], np.float64), np.asarray(dts_BxTxK[:, t], np.float64)
        h_in = h * np.exp(-np.maximum(0.0, dt @ p["w_gamma"] + p["b_gamma"])) if decay else h  # h' = γ ⊙ h
        u = sigmoid(x @ w_u + h_in @ u_u + b_u)
        r = sigmoid(x @ w_r + h_in @ u_r + b_r)
        n = np.tanh(x @ w_n + b_n + r * (h_in @ u_n + b_hn))
        h_new = (1.0 - u) * h_in + u * n
        h = np.where(np.asarray(mask_BxT[:, t, None]) > 0, h_new, h)  # a masked step keeps the carry
        hs.append(h)
    return np.stack(hs, axis=1), h


@pytest.mark.parametrize("name", ["gru", "grud"])
def test_scan_matches_the_numpy_reference_to_1e_10(name):
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask = setup(name)
        hs_ref, h_ref = reference(params, xs, dts, mask, state.h, decay=name == "grud")
        for backward in ("custom", "autodiff"):
            final, hs = scan_layer(cell, params, xs, dts, mask, state, backward=backward)
            np.testing.assert_allclose(hs, hs_ref, rtol=0, atol=1e-10)
            np.testing.assert_allclose(final.h, h_ref, rtol=0, atol=1e-10)
            np.testing.assert_array_equal(final.c, final.h)  # c = h: one state vector
        # the step itself, in a loop
        h = state
        for t in range(T):
            h, out = cell.step(params, h, StepInputs(cell.project(params, xs[:, t], dts[:, t]), dts[:, t]))
            h = LSTMState(*(jnp.where(mask[:, t, None] > 0, a, b) for a, b in zip(h, state)))
            state = h
        np.testing.assert_allclose(h.h, h_ref, rtol=0, atol=1e-10)


def test_gru_matches_flax_gru_cell():
    """flax's GRUCell is the reset-after form with h_t = (1 − z) ⊙ n + z ⊙ h: z = 1 − u, so its
    z-weights are the negated u-weights."""
    import flax.linen as nn

    cell, params, xs, dts, state, _ = setup("gru", jnp.float32, seed=1)
    w_u, w_r, w_n = jnp.split(params["w_x"], 3, axis=1)
    u_u, u_r, u_n = jnp.split(params["w_h"], 3, axis=1)
    b_u, b_r, b_n, b_hn = jnp.split(params["b"], 4)
    flax_params = {"params": {"ir": {"kernel": w_r, "bias": b_r}, "iz": {"kernel": -w_u, "bias": -b_u},
                              "in": {"kernel": w_n, "bias": b_n}, "hr": {"kernel": u_r},
                              "hz": {"kernel": -u_u}, "hn": {"kernel": u_n, "bias": b_hn}}}
    _, hs = scan_layer(cell, params, xs, dts, None, state)
    h = state.h
    for t in range(T):
        h, _ = nn.GRUCell(features=H).apply(flax_params, h, xs[:, t])
        np.testing.assert_allclose(hs[:, t], h, rtol=1e-5, atol=1e-5)


def test_grud_without_decay_is_gru():
    """γ ≡ 1 (W_γ δ + b_γ ≤ 0 everywhere) gives the GRU with the same parameters; so does δ = 0
    with b_γ ≤ 0; a positive rate changes h."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask = setup("grud")
        gru = make_cell("gru", d_time=K)
        gru_params = {k: params[k] for k in ("w_x", "w_h", "b")}
        _, hs_gru = scan_layer(gru, gru_params, xs, dts, mask, state)
        no_decay = {**params, "w_gamma": jnp.zeros((K, H)), "b_gamma": -jnp.ones(H)}
        np.testing.assert_allclose(scan_layer(cell, no_decay, xs, dts, mask, state)[1], hs_gru, rtol=0, atol=1e-12)
        at_zero_gap = {**params, "b_gamma": -jnp.abs(params["b_gamma"])}
        np.testing.assert_allclose(scan_layer(cell, at_zero_gap, xs, jnp.zeros_like(dts), mask, state)[1], hs_gru,
                                   rtol=0, atol=1e-12)
        decaying = {**params, "w_gamma": jnp.abs(params["w_gamma"])}
        assert np.abs(np.asarray(scan_layer(cell, decaying, xs, dts, mask, state)[1] - hs_gru)).max() > 1e-3


def test_layout_one_matmul_with_a_structural_zero_block():
    cell = make_cell("grud", d_time=K)
    params = cell.init(jax.random.key(0), D, H)
    assert {k: v.shape for k, v in params.items()} == {
        "w_x": (D, 3 * H), "w_h": (H, 3 * H), "b": (4 * H,), "w_gamma": (K, H), "b_gamma": (H,)}
    w = cell.recurrent_weight(params)  # [U_u U_r 0 U_n]
    assert w.shape == (H, 4 * H) and cell.gates == ("u", "r", "n", "n_h")
    np.testing.assert_array_equal(w[:, 2 * H:3 * H], 0.0)
    np.testing.assert_array_equal(w[:, :2 * H], params["w_h"][:, :2 * H])
    np.testing.assert_array_equal(w[:, 3 * H:], params["w_h"][:, 2 * H:])
    b = jnp.arange(4.0 * H)
    zs = cell.project({**params, "b": b}, jnp.ones((2, D)), None)  # the n_h block of zs is b_hn alone
    np.testing.assert_array_equal(zs[:, 3 * H:], np.broadcast_to(b[3 * H:], (2, H)))
    assert make_cell("grud").decay and not make_cell("gru").decay


def loss_fn(cell, mask, backward, **options):
    def loss(params, xs, dts, state):
        final, hs = scan_layer(cell, params, xs, dts, mask, state, backward=backward, **options)
        weights = jnp.linspace(-1.0, 1.0, H, dtype=hs.dtype)
        return jnp.sum(jnp.sin(hs) * weights[None, None]) + jnp.sum(weights[None] * final.h)
    return loss


@pytest.mark.parametrize("name", ["gru", "grud"])
def test_check_grads_of_the_custom_path(name):
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask = setup(name, seed=2)
        check_grads(loss_fn(cell, mask, "custom"), (params, xs, dts, state), order=1, modes=["rev"])


@pytest.mark.parametrize("remat", [False, True])
@pytest.mark.parametrize("name", ["gru", "grud"])
def test_custom_gradients_equal_autodiff_with_masks_and_resets(name, remat):
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask = setup(name, seed=3)
        resets = jnp.asarray(RESETS, jnp.float64)

        def both(*args):
            return [jax.value_and_grad(loss_fn(cell, mask, backward, **options), argnums=(0, 1, 2, 3))(*args)
                    for backward, options in (("custom", {"remat": remat, "resets_BxT": resets}),
                                              ("autodiff", {"resets_BxT": resets}))]

        (value, grads), (value_ref, grads_ref) = jax.jit(both)(params, xs, dts, state)
        np.testing.assert_allclose(value, value_ref, rtol=1e-10)
        for (path, g), g_ref in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads_ref)):
            scale = max(float(jnp.max(jnp.abs(g_ref))), 1e-6)
            np.testing.assert_allclose(g / scale, g_ref / scale, rtol=0, atol=1e-10,
                                       err_msg=jax.tree_util.keystr(path))
        assert all(float(jnp.max(jnp.abs(g))) > 0 for g in grads[0].values())
        if name == "grud":  # Δt reaches h only through the decay
            assert float(jnp.max(jnp.abs(grads[2]))) > 0


def test_gru_has_no_forget_gate_options():
    with pytest.raises(ValueError, match="no forget gate"):
        make_cell("grud", forget_init="chrono", chrono_t_max=10.0)
    with pytest.raises(ValueError, match="no forget gate"):
        make_cell("gru", forget_bias=2.0)
    make_cell("grud", chrono_t_max=100.0)  # what sequence configs always set: accepted, unused
