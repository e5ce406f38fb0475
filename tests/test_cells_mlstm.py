"""mlstm (xLSTM's matrix memory, Beck et al. 2024): the sequential form against a float64 NumPy
reference with masks, resets and a carried state; the chunkwise form equal to it in values, final
carry and gradients for chunk lengths that do and do not divide T; check_grads; its special cases
(no forgetting is a running sum, heads are independent single-head cells, the normaliser's floor);
causality; resets; per-vocabulary inputs; errors; a language model that trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import mlstm_scan, train
from ltf.cells.base import LSTMState
from ltf.cells.mlstm import carry_width, unpack
from ltf.cells.registry import make_cell
from ltf.config_lib import load_config
from ltf.models import LanguageModel
from ltf.rnn import scan_layer

from cell_inputs import perturbed_params, sigmoid
from conftest import REPO

B, T, D, H, N = 3, 11, 4, 8, 2  # T = 11: prime, so chunks of 3 and 4 leave a tail
FORMS = {"sequential": {"form": "sequential"}, "chunk1": {"form": "chunkwise", "chunk_size": 1},
         "chunk3": {"form": "chunkwise", "chunk_size": 3}, "chunk4": {"form": "chunkwise", "chunk_size": 4},
         "chunk_over_T": {"form": "chunkwise", "chunk_size": 32}}


def cell_of(variant="sequential", heads=N, **options):
    return make_cell("mlstm", heads=heads, **FORMS[variant], **options)


def setup(dtype=jnp.float64, seed=0, n_steps=T):
    """Params off their init, a carried state (C, n, m, h all non-zero), padding at the end of row 1,
    a masked step in row 2 with a reset on it, resets at step 5 of row 0 and step 0 of row 1."""
    cell = cell_of()
    params = perturbed_params(cell, jax.random.key(seed), D, H, dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, n_steps, D)), dtype)
    dts = jnp.ones((B, n_steps, 1), dtype)
    state = LSTMState(c=jnp.asarray(rng.normal(size=(B, carry_width(N, H // N))), dtype),
                      h=jnp.asarray(rng.normal(size=(B, H)), dtype))
    mask, resets = np.ones((B, n_steps)), np.zeros((B, n_steps))
    mask[1, 7:] = mask[2, 4] = 0.0
    resets[0, 5] = resets[2, 4] = resets[1, 0] = 1.0
    return params, xs, dts, state, jnp.asarray(mask, dtype), jnp.asarray(resets, dtype)


def reference_run(params, xs_BxTxD, state, mask_BxT, resets_BxT, heads=N, head_norm=False):
    """The equations step by step, per row and head, in float64 NumPy. Returns hs_BxTxH, (C, n, m, h)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    z = np.asarray(xs_BxTxD, np.float64) @ p["w_x"] + p["b"]  # [q, k, v, o, ĩ, f̃]
    d = H // heads
    c_all = np.asarray(state.c, np.float64)
    c = c_all[:, :heads * d * d].reshape(-1, heads, d, d).copy()
    n = c_all[:, heads * d * d:heads * d * (d + 1)].reshape(-1, heads, d).copy()
    m = c_all[:, heads * d * (d + 1):].copy()
    h = np.asarray(state.h, np.float64).copy()
    hs = np.zeros(z.shape[:2] + (H,))
    for t in range(z.shape[1]):
        for b in range(z.shape[0]):
            if resets_BxT[b, t]:  # the carry zeroed before the step
                c[b], n[b], m[b], h[b] = 0.0, 0.0, 0.0, 0.0
            if mask_BxT[b, t]:
                h_tilde = np.zeros(H)
                for j in range(heads):
                    cols = slice(j * d, (j + 1) * d)
                    q, k, v = z[b, t, cols], z[b, t, H:2 * H][cols] / np.sqrt(d), z[b, t, 2 * H:3 * H][cols]
                    i_pre, f_pre = z[b, t, 4 * H + j], z[b, t, 4 * H + heads + j]
                    log_f = -np.log1p(np.exp(-f_pre))  # log σ(f̃)
                    m_new = max(log_f + m[b, j], i_pre)
                    i_gate, f_gate = np.exp(i_pre - m_new), np.exp(log_f + m[b, j] - m_new)
                    c[b, j] = f_gate * c[b, j] + i_gate * np.outer(v, k)
                    n[b, j] = f_gate * n[b, j] + i_gate * k
                    m[b, j] = m_new
                    h_tilde[cols] = c[b, j] @ q / max(abs(n[b, j] @ q), np.exp(-m_new))
                    if head_norm:  # zero mean, unit variance over the head's d entries
                        centred = h_tilde[cols] - h_tilde[cols].mean()
                        h_tilde[cols] = centred / np.sqrt(np.mean(centred ** 2) + 1e-5)
                h[b] = sigmoid(z[b, t, 3 * H:4 * H]) * h_tilde
            hs[b, t] = h[b]
    return hs, (c, n, m, h)


def run(cell, params, xs, dts, mask, state, resets, **options):
    return scan_layer(cell, params, xs, dts, mask, state, resets_BxT=resets, **options)


@pytest.mark.parametrize("variant", ["sequential", "chunk3"])
@pytest.mark.parametrize("head_norm", [False, True])
def test_matches_numpy_reference_with_masks_resets_and_a_carried_state(variant, head_norm):
    with jax.enable_x64(True):
        params, xs, dts, state, mask, resets = setup()
        cell = cell_of(variant, head_norm=head_norm)
        final, hs = jax.jit(lambda *a: run(cell, *a))(params, xs, dts, mask, state, resets)
        hs_ref, (c_ref, n_ref, m_ref, h_ref) = reference_run(params, xs, state, np.asarray(mask), np.asarray(resets),
                                                             head_norm=head_norm)
        np.testing.assert_allclose(hs, hs_ref, rtol=1e-10, atol=1e-12)
        c, n, m = unpack(final.c, N)
        for got, want in ((c, c_ref), (n, n_ref), (m, m_ref), (final.h, h_ref)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        # the row padded from step 7 ends with the carry of step 6; its padding re-emits that h
        np.testing.assert_array_equal(hs[1, 7:], np.broadcast_to(hs[1, 6], hs[1, 7:].shape))


def loss_fn(cell, mask, resets, *, with_outputs=False, **options):
    def loss(params, xs, dts, state):
        final, hs = run(cell, params, xs, dts, mask, state, resets, **options)
        weights = jnp.linspace(-1.0, 1.0, H, dtype=hs.dtype)
        value = (jnp.sum(jnp.sin(hs) * weights[None, None]) + jnp.sum(jnp.sin(final.c))
                 + jnp.sum(final.h * weights[None]))
        return (value, (final, hs)) if with_outputs else value
    return loss


def assert_trees_close(actual, expected, tol):
    """Per leaf, relative to the leaf's largest magnitude."""
    for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        scale = max(float(jnp.max(jnp.abs(e))), 1e-6)
        np.testing.assert_allclose(a / scale, e / scale, rtol=0, atol=tol, err_msg=jax.tree_util.keystr(path))


def forms_agree(cases, dtype, tol, seed=0, **cell_options):
    """Each case (cell, scan_layer options) against the sequential form (with `cell_options`):
    outputs, the final packed carry [C, n, m] and h, and the gradients of params, inputs and the
    initial state, with padding, a masked step, resets and a carried state; all in one compiled program."""
    params, xs, dts, state, mask, resets = setup(dtype, seed=seed)
    cases = {"sequential": (cell_of("sequential", **cell_options), {}), **cases}

    def everything(*args):
        return {name: jax.value_and_grad(loss_fn(cell, mask, resets, with_outputs=True, **options),
                                         argnums=(0, 1, 3), has_aux=True)(*args)
                for name, (cell, options) in cases.items()}

    results = jax.jit(everything)(params, xs, dts, state)
    (_, (final_ref, hs_ref)), grads_ref = results["sequential"]
    for name, ((_, (final, hs)), grads) in results.items():
        np.testing.assert_allclose(hs, hs_ref, rtol=tol, atol=tol * 1e-3, err_msg=name)
        np.testing.assert_allclose(final.c, final_ref.c, rtol=tol, atol=tol * 1e-3, err_msg=name)
        np.testing.assert_allclose(final.h, final_ref.h, rtol=tol, atol=tol * 1e-3, err_msg=name)
        assert_trees_close(grads, grads_ref, tol)
    for k, g in grads_ref[0].items():  # every parameter takes part
        assert float(jnp.max(jnp.abs(g))) > 0, k


def test_chunkwise_equals_sequential_in_values_final_carry_and_gradients():
    """Chunks of 3 (three and a tail of 2 in T = 11) and 32 > T (one chunk of all T steps)."""
    with jax.enable_x64(True):
        forms_agree({name: (cell_of(name), {}) for name in ("chunk3", "chunk_over_T")}, jnp.float64, 1e-9)


def test_with_the_head_norm_chunkwise_and_remat_equal_sequential():
    """Chunks of 3 (and a tail), of more than T, and chunks of 3 under remat, all with head_norm."""
    with_norm = {"head_norm": True}
    cases = {"chunk3": (cell_of("chunk3", **with_norm), {}), "chunk_over_T": (cell_of("chunk_over_T", **with_norm), {}),
             "chunk3+remat": (cell_of("chunk3", **with_norm), {"remat": True})}
    with jax.enable_x64(True):
        forms_agree(cases, jnp.float64, 1e-9, seed=6, **with_norm)


@pytest.mark.parametrize("variant", ["sequential", "chunk4"])
def test_the_head_norm_makes_each_head_blind_to_the_scale_of_its_values(variant):
    """LN(h̃) per head: scaling head j's values v by 5 (their columns of W_x and b) scales its h̃ by
    5 and leaves h unchanged, to the norm's ε (made negligible); without the norm h̃, and so h,
    scales by 5. The other head is untouched either way."""
    with jax.enable_x64(True):
        params, xs, dts, state, mask, resets = setup(seed=7)
        d, j = H // N, 1
        cols = slice(2 * H + j * d, 2 * H + (j + 1) * d)  # head j's v block
        # values 100x their draw, so that h̃'s variance dwarfs the norm's ε = 1e-5 even at a first step
        params = {"w_x": params["w_x"].at[:, cols].multiply(100.0), "b": params["b"].at[cols].multiply(100.0)}
        scaled = {"w_x": params["w_x"].at[:, cols].multiply(5.0), "b": params["b"].at[cols].multiply(5.0)}
        zero = jax.tree.map(jnp.zeros_like, state)  # a carried memory would hold unscaled values
        for head_norm, factor in ((True, 1.0), (False, 5.0)):
            cell = cell_of(variant, head_norm=head_norm)
            _, hs = run(cell, params, xs, dts, mask, zero, resets)
            _, hs_scaled = run(cell, scaled, xs, dts, mask, zero, resets)
            np.testing.assert_allclose(hs_scaled[..., j * d:], factor * hs[..., j * d:], rtol=1e-4, atol=1e-8)
            np.testing.assert_array_equal(hs_scaled[..., :j * d], hs[..., :j * d])
        # the norm's output per head: zero mean, unit variance (before the output gate σ(o))
        cell = cell_of(variant, head_norm=True)
        _, hs = scan_layer(cell, params, xs, dts)
        z = np.asarray(xs) @ np.asarray(params["w_x"]) + np.asarray(params["b"])
        normed = (np.asarray(hs) / sigmoid(z[..., 3 * H:4 * H])).reshape(B, T, N, d)
        np.testing.assert_allclose(normed.mean(-1), 0.0, atol=1e-9)
        np.testing.assert_allclose(normed[..., j, :].var(-1), 1.0, rtol=1e-3)  # head j: ε negligible


@pytest.mark.slow
def test_chunkwise_and_remat_equal_sequential_in_float64_and_float32():
    """Chunks of 1 and 4 (two and a tail of 3), and both forms under remat (chunks under jax.checkpoint)."""
    cases = {"chunk1": (cell_of("chunk1"), {}), "chunk4": (cell_of("chunk4"), {}),
             "chunk3+remat": (cell_of("chunk3"), {"remat": True}),
             "sequential+remat": (make_cell("mlstm", heads=N, form="sequential", chunk_size=4), {"remat": True})}
    with jax.enable_x64(True):
        forms_agree(cases, jnp.float64, 1e-9, seed=1)
    forms_agree({"chunk4": cases["chunk4"]}, jnp.float32, 1e-4, seed=1)


# remat in pieces: of 4 steps (two and a tail of 3) for the sequential form; chunk 3 with
# remat_chunk 7, rounded down to pieces of 6 (two chunks each; the tail: one piece of 5 steps,
# padded); chunk 4 in one piece longer than T
@pytest.mark.parametrize("variant, remat_chunk", [("sequential", 4), ("chunk3", 7),
                                                  pytest.param("chunk4", 64, marks=pytest.mark.slow)])
def test_remat_pieces_keep_values_final_carry_and_gradients(variant, remat_chunk):
    """`mlstm_scan.layer` with remat projects and runs a piece at a time under jax.checkpoint:
    the same values, final carry and gradients as the plain layer, with padding, a masked step,
    resets and a carried state."""
    cell = cell_of(variant)
    time_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731

    def loss(remat, mask, resets):
        def f(params, xs, dts, state):
            final, hs = mlstm_scan.layer(cell, params, time_major(xs), time_major(dts), time_major(mask), state,
                                         resets_TxB=time_major(resets), remat=remat, remat_chunk=remat_chunk)
            return jnp.sum(jnp.sin(hs)) + jnp.sum(jnp.sin(final.c)) + jnp.sum(final.h ** 2), (final, hs)
        return jax.value_and_grad(f, argnums=(0, 1, 3), has_aux=True)

    with jax.enable_x64(True):
        params, xs, dts, state, mask, resets = setup(jnp.float64, seed=5)
        ((value, (final, hs)), grads), ((value_ref, (final_ref, hs_ref)), grads_ref) = [
            jax.jit(loss(remat, mask, resets))(params, xs, dts, state) for remat in (True, False)]
        np.testing.assert_allclose(value, value_ref, rtol=1e-12)
        np.testing.assert_allclose(hs, hs_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(final.c, final_ref.c, rtol=1e-12, atol=1e-14)
        assert_trees_close(grads, grads_ref, 1e-12)
        with pytest.raises(ValueError, match="remat_chunk=0"):
            mlstm_scan.layer(cell, params, time_major(xs), time_major(dts), None, state, remat=True, remat_chunk=0)


@pytest.mark.parametrize("variant, head_norm", [("sequential", False), ("chunk4", False), ("chunk4", True)])
def test_check_grads_of_the_layer(variant, head_norm):
    with jax.enable_x64(True):
        params, xs, dts, state, mask, resets = setup(seed=2, n_steps=6)
        check_grads(jax.jit(loss_fn(cell_of(variant, head_norm=head_norm), mask[:, :6], resets[:, :6])),
                    (params, xs, dts, state), order=1, modes=["rev"])


@pytest.mark.parametrize("variant", ["sequential", "chunk3"])
def test_without_forgetting_the_memory_is_the_running_sum_of_writes(variant):
    """σ(f̃) = 1 (f̃ → ∞) and ĩ = 0: m stays 0, f' = i' = 1, so C_t = Σ_{s≤t} v_s k_sᵀ, n_t = Σ k_s
    and h̃_t = C_t q_t / max(|n_tᵀ q_t|, 1)."""
    with jax.enable_x64(True):
        params, xs, dts, _, _, _ = setup(seed=3)
        w_x, b = params["w_x"], params["b"]
        params = {"w_x": w_x.at[:, 4 * H:].set(0.0), "b": b.at[4 * H:4 * H + N].set(0.0).at[4 * H + N:].set(1e3)}
        final, hs = scan_layer(cell_of(variant), params, xs, dts)
        z = np.asarray(xs) @ np.asarray(params["w_x"]) + np.asarray(params["b"])
        d = H // N
        q, k, v = (z[..., j * H:(j + 1) * H].reshape(B, T, N, d) for j in range(3))
        k = k / np.sqrt(d)
        c_BxTxNxDxD = np.cumsum(v[..., :, None] * k[..., None, :], axis=1)
        n_BxTxNxD = np.cumsum(k, axis=1)
        c, n, m = unpack(final.c, N)
        np.testing.assert_allclose(c, c_BxTxNxDxD[:, -1], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(n, n_BxTxNxD[:, -1], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(m, 0.0)
        num = np.einsum("btnij,btnj->btni", c_BxTxNxDxD, q)
        den = np.maximum(np.abs(np.einsum("btnj,btnj->btn", n_BxTxNxD, q)), 1.0)
        h_ref = sigmoid(z[..., 3 * H:4 * H]) * (num / den[..., None]).reshape(B, T, H)
        np.testing.assert_allclose(hs, h_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["sequential", "chunk4"])
def test_heads_are_independent_single_head_cells(variant):
    """N heads of d = H/N equal N cells of one head with d_hidden = d, each reading its own
    columns of the projection: the multi-head layout of q, k, v, o, ĩ, f̃ and of the carry."""
    with jax.enable_x64(True):
        params, xs, dts, state, mask, resets = setup(seed=4)
        final, hs = run(cell_of(variant), params, xs, dts, mask, state, resets)
        d = H // N
        c0, n0, m0 = unpack(state.c, N)
        c, n, m = unpack(final.c, N)
        single = cell_of(variant, heads=1)
        for j in range(N):
            cols = np.concatenate([np.arange(g * H + j * d, g * H + (j + 1) * d) for g in range(4)]
                                  + [np.array([4 * H + j, 4 * H + N + j])])
            params_j = {"w_x": params["w_x"][:, cols], "b": params["b"][cols]}
            state_j = LSTMState(jnp.concatenate([c0[:, j].reshape(B, -1), n0[:, j], m0[:, j:j + 1]], axis=-1),
                                state.h[:, j * d:(j + 1) * d])
            final_j, hs_j = run(single, params_j, xs, dts, mask, state_j, resets)
            np.testing.assert_allclose(hs[..., j * d:(j + 1) * d], hs_j, rtol=1e-12, atol=1e-14)
            c_j, n_j, m_j = unpack(final_j.c, 1)
            np.testing.assert_allclose(c[:, j], c_j[:, 0], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(n[:, j], n_j[:, 0], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(m[:, j], m_j[:, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", ["sequential", "chunk4"])
def test_a_query_orthogonal_to_every_key_reads_zero_not_nan(variant):
    """q_t = (x₀, 0), k_t = (0, x₁) in every head: C_t q_t = 0 and n_tᵀ q_t = 0, so the floor
    exp(−m_t) alone is the denominator: h̃ = 0 exactly, and the gradients are finite."""
    with jax.enable_x64(True):
        params, xs, dts, _, _, _ = setup(seed=5)
        d = H // N
        w_x = params["w_x"].at[:, :2 * H].set(0.0)
        for j in range(N):
            w_x = w_x.at[0, j * d].set(1.0).at[1, H + j * d + 1].set(1.0)
        params = {"w_x": w_x, "b": params["b"].at[:2 * H].set(0.0)}
        cell = cell_of(variant)
        _, hs = scan_layer(cell, params, xs, dts)
        np.testing.assert_array_equal(hs, 0.0)
        grads = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(scan_layer(cell, p, x, dts)[1] + 0.1)),
                                 argnums=(0, 1)))(params, xs)
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("variant", ["sequential", "chunk4", "chunk_over_T"])
def test_causal_outputs_at_t_ignore_later_inputs(variant):
    with jax.enable_x64(True):
        params, xs, dts, state, mask, resets = setup(seed=6)
        apply = jax.jit(lambda x: run(cell_of(variant), params, x, dts, mask, state, resets)[1])
        base = apply(xs)
        for t in (0, 4, 8):
            changed = xs.at[:, t + 1:].add(1.0)
            out = apply(changed)
            np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
            assert np.abs(np.asarray(out[0, t + 1:] - base[0, t + 1:])).max() > 0


@pytest.mark.parametrize("variant", ["sequential", "chunk3"])
def test_a_reset_starts_a_new_sequence_and_no_gradient_crosses_it(variant):
    """Row 0 resets at step 5: steps 5.. equal a run from the zero state, their outputs have no
    gradient to inputs before step 5, and row 1 (reset at step 0) none to its initial state."""
    with jax.enable_x64(True):
        params, xs, dts, state, _, resets = setup(seed=7)
        cell = cell_of(variant)

        # d(sum of row 0's outputs from step 5 on)/d inputs, and d(all outputs)/d initial state
        def grads(x, s):
            hs = run(cell, params, x, dts, None, s, resets)[1]
            return (jax.grad(lambda x: jnp.sum(jnp.sin(run(cell, params, x, dts, None, s, resets)[1][0, 5:])))(x),
                    jax.grad(lambda s: jnp.sum(jnp.sin(run(cell, params, x, dts, None, s, resets)[1])))(s), hs)

        d_xs, d_state, hs = jax.jit(grads)(xs, state)
        np.testing.assert_array_equal(d_xs[0, :5], 0.0)
        assert np.abs(np.asarray(d_xs[0, 5:])).max() > 0
        np.testing.assert_array_equal(d_state.c[1], 0.0)
        np.testing.assert_array_equal(d_state.h[1], 0.0)
        assert np.abs(np.asarray(d_state.c[0])).max() > 0
        tail = jax.jit(lambda *a: scan_layer(cell, *a)[1])(params, xs[:1, 5:], dts[:1, 5:])
        np.testing.assert_allclose(hs[0, 5:], tail[0], rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_per_vocab_projection_equals_per_token():
    """A language model of mlstm layers: the V x G table path gives the per-token values and gradients."""
    with jax.enable_x64(True):
        models = {path: LanguageModel.build(vocab_size=7, d_embed=D, cell="mlstm", d_hidden=H, n_layers=1,
                                            cell_options={"heads": N}, input_projection=path)
                  for path in ("per_vocab", "per_token")}
        params = jax.tree.map(lambda x: x.astype(jnp.float64), models["per_token"].init(jax.random.key(8)))
        tokens = jnp.asarray(np.random.default_rng(8).integers(0, 7, size=(B, T)), jnp.int32)
        mask = jnp.ones((B, T)).at[1, 6:].set(0.0).at[0, 3].set(0.0)

        def loss(model, params):
            logits, states = model.apply(params, tokens, mask_BxT=mask)
            return jnp.sum(jax.nn.log_softmax(logits)[..., 1] * mask) + sum(jnp.sum(s.h) for s in states)

        out = {path: jax.jit(jax.value_and_grad(lambda p, m=model: loss(m, p)))(params)
               for path, model in models.items()}
        np.testing.assert_allclose(out["per_vocab"][0], out["per_token"][0], rtol=1e-12)
        assert_trees_close(out["per_vocab"][1], out["per_token"][1], 1e-10)


def test_initialisation():
    """xLSTM's: b_f̃ = linspace(3, 6) over the heads, b_ĩ ~ N(0, 0.1²), the gates' weights zero."""
    cell = make_cell("mlstm", heads=4)
    params = cell.init(jax.random.key(0), 5, 16)
    assert params["w_x"].shape == (5, 4 * 16 + 2 * 4) and cell.hidden_size(params) == 16
    np.testing.assert_allclose(params["b"][-4:], [3.0, 4.0, 5.0, 6.0], rtol=1e-6)
    assert np.all(np.abs(params["b"][-8:-4]) < 0.5) and np.any(params["b"][-8:-4] != 0)
    np.testing.assert_array_equal(params["w_x"][:, -8:], 0.0)
    np.testing.assert_array_equal(params["b"][:-8], 0.0)
    state = cell.initial_state(2, 16)
    assert state.c.shape == (2, carry_width(4, 4)) and not np.any(state.c)


@pytest.mark.parametrize("options,match", [
    ({"form": "parallel"}, "form='parallel'"),
    ({"heads": 0}, "heads=0"),
    ({"chunk_size": 0}, "chunk_size=0"),
    ({"forget_init": "chrono", "chrono_t_max": 50.0}, "forget_init"),
    ({"decay": True}, "decay=True"),
    ({"head_norm": "yes"}, "head_norm='yes'"),
])
def test_bad_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        make_cell("mlstm", **options)


def test_auto_form_by_backend():
    assert mlstm_scan.resolve_form("auto", "gpu") == "chunkwise" == mlstm_scan.resolve_form("auto", "tpu")
    assert mlstm_scan.resolve_form("auto", "cpu") == mlstm_scan.CPU_FORM
    assert mlstm_scan.resolve_form("sequential", "gpu") == "sequential"


def test_a_hidden_size_that_heads_do_not_divide_names_both_fields():
    config = load_config(str(REPO / "configs" / "tlstm_lm.py") + ":smoke,cell=mlstm")
    config.model.d_hidden = 18  # 4 heads by default
    with pytest.raises(ValueError, match=r"d_hidden=18.*heads=4.*model\.d_hidden.*model\.cell_options\.heads"):
        train.build(config)
    with pytest.raises(ValueError, match="model.cell_options.heads"):
        make_cell("mlstm").init(jax.random.key(0), 3, 18)


@pytest.mark.slow
def test_a_language_model_trains_from_the_smoke_config(tmp_path, monkeypatch):
    """configs/tlstm_lm.py:smoke,cell=mlstm through ltf.train: stateful batches, evaluation, a finite loss."""
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "cache"))
    config = load_config(str(REPO / "configs" / "tlstm_lm.py") + ":smoke,cell=mlstm")
    config.model.cell_options.chunk_size = 5  # seq_len 16: three chunks and a tail
    metrics = train.train_and_evaluate(config, tmp_path / "run")
    assert np.isfinite(metrics["validation"]["loss"])
