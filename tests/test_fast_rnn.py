"""The custom backward pass of `ltf.fast_rnn` against `jax.grad` of the plain scan ("autodiff")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import fast_rnn, rnn
from ltf.cells.base import LSTMState
from ltf.cells.registry import CELLS, make_cell
from ltf.rnn import scan_layer

from cell_inputs import perturbed_params

B, T, D, H = 3, 7, 5, 4

# phased's units update only while open, r_on = 5% of each period at init: half open here, so that
# the open phase (and the gradient of r_on) takes part in a 7-step window
OPTIONS = {"phased": {"r_on_init": 0.5}}
# The cells with a recurrent matmul: the linear cells (`cell.linear`) and mlstm (`cell.matrix_memory`)
# have no W_h and no custom backward pass (ltf.rnn.scan_layer runs them in ltf.linear_scan and
# ltf.mlstm_scan, whatever `backward` says, so custom against autodiff would compare a path with
# itself); tests/test_linear_scan.py and tests/test_cells_mlstm.py test them.
CASES = [(name, OPTIONS.get(name, {})) for name in CELLS
         if not (make_cell(name).linear or make_cell(name).matrix_memory)] + [
        ("adaptive", {"peepholes": True}),
        ("time_aware", {"adaptive": True}),
        ("time_aware", {"adaptive": True, "peepholes": True}),
        ("lstm", {"decay": True}),  # GRU-D's hidden decay: before_step through the custom pass
        ("tlstm", {"decay": True}),
]
CASE_IDS = [name + "".join(f"-{k}" for k in options) for name, options in CASES]
# float64 on every case (to 1e-10), float32 (to 1e-5) on the cells that differ most
# The cells with test files of their own (tests/test_cells_<name>.py compare their custom pass with
# autodiff to 1e-10 too) run here under `slow`, to keep the default suite near five minutes; phased's
# own check (finite differences as well) is the slower one, so phased runs here by default.
OWN_FILES = ("ctlstm", "gru", "grud")
DTYPE_CASES = [pytest.param(name, options, jnp.float64, id=f"{case_id}-f64",
                            marks=[pytest.mark.slow] if name in OWN_FILES else [])
               for (name, options), case_id in zip(CASES, CASE_IDS)] + [
        pytest.param(name, options, jnp.float32, id=f"{case_id}-f32")
        for (name, options), case_id in zip(CASES, CASE_IDS)
        if case_id in ("lstm", "tlstm", "time_aware-adaptive-peepholes", "lstm-decay")]
TOLERANCES = {jnp.float64: 1e-10, jnp.float32: 1e-5}


def setup(name, options, dtype, seed=0):
    """Params with every parameter off its initial value (peepholes start at zero), inputs,
    a non-zero initial state, and a mask with padding at the end and a masked middle step."""
    cell = make_cell(name, **options)
    params = perturbed_params(cell, jax.random.key(seed), D, H, dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, D)), dtype)
    dts = jnp.asarray(rng.exponential(1.0, size=(B, T, 1)), dtype)
    state = LSTMState(c=jnp.asarray(rng.normal(size=cell.initial_state(B, H).c.shape), dtype),  # ctlstm: B x 4H
                      h=jnp.asarray(0.5 * rng.normal(size=(B, H)), dtype))
    mask = np.ones((B, T), np.float32)
    mask[1, 4:] = 0.0  # padding after a shorter sequence
    mask[2, 2] = 0.0  # a masked step in the middle
    return cell, params, xs, dts, state, jnp.asarray(mask)


def loss_fn(cell, mask, backward, **options):
    def loss(params, xs, dts, state):
        final, hs = scan_layer(cell, params, xs, dts, mask, state, backward=backward, **options)
        weights = jnp.linspace(-1.0, 1.0, H, dtype=hs.dtype)
        return (jnp.sum(jnp.sin(hs) * weights[None, None]) + jnp.sum(final.c ** 2)
                + jnp.sum(weights[None] * final.h))
    return loss


def assert_trees_close(actual, expected, rtol):
    """Per leaf, relative to the leaf's largest magnitude."""
    for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        scale = max(float(jnp.max(jnp.abs(e))), 1e-6)
        np.testing.assert_allclose(a / scale, e / scale, rtol=0, atol=rtol,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("name,options,dtype", DTYPE_CASES)
def test_custom_values_and_gradients_equal_autodiff(name, options, dtype):
    """With masks (padding, a masked middle step) and without; one compilation for all four."""
    with jax.enable_x64(dtype == jnp.float64):
        cell, params, xs, dts, state, mask = setup(name, options, dtype)

        def all_four(*args):
            grad = lambda masked, backward: jax.value_and_grad(  # noqa: E731
                    loss_fn(cell, mask if masked else None, backward), argnums=(0, 1, 2, 3))
            return {(masked, backward): grad(masked, backward)(*args)
                    for masked in (True, False) for backward in ("custom", "autodiff")}

        results = jax.jit(all_four)(params, xs, dts, state)
        for masked in (True, False):
            value, grads = results[masked, "custom"]
            value_ref, grads_ref = results[masked, "autodiff"]
            np.testing.assert_allclose(value, value_ref, rtol=TOLERANCES[dtype])
            assert_trees_close(grads, grads_ref, TOLERANCES[dtype])
            # every parameter the recurrence reads gets a gradient (the inputs change all of them)
            for k, g in grads[0].items():
                assert float(jnp.max(jnp.abs(g))) > 0, k


@pytest.mark.parametrize("name,options", [("tlstm", {}), ("adaptive", {"peepholes": True}),
                                          ("lstm", {"decay": True})])
def test_check_grads_of_the_custom_path(name, options):
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask = setup(name, options, jnp.float64, seed=1)
        check_grads(loss_fn(cell, mask, "custom"), (params, xs, dts, state), order=1, modes=["rev"])


def test_vmap_over_seeds_of_grad_equals_per_seed_grads():
    cell, params, xs, dts, state, mask = setup("tlstm", {}, jnp.float32)
    seeds = [jax.tree.map(lambda v, i=i: v * (1.0 + 0.1 * i), params) for i in range(3)]
    stacked = jax.tree.map(lambda *vs: jnp.stack(vs), *seeds)
    grad = jax.jit(jax.grad(loss_fn(cell, mask, "custom")))
    grads = jax.jit(jax.vmap(grad, in_axes=(0, None, None, None)))(stacked, xs, dts, state)
    for i, seed in enumerate(seeds):
        assert_trees_close(jax.tree.map(lambda g: g[i], grads), grad(seed, xs, dts, state), 1e-5)


@pytest.mark.parametrize("option", [{"remat": True}, {"unroll": 3}])
def test_remat_and_unroll_keep_the_gradients(option):
    """remat recomputes z_t = x_t W_x + φ(Δt) W_Δt + b + h_{t-1} W_h for all steps at once."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask = setup("time_aware", {"adaptive": True, "peepholes": True},
                                                   jnp.float64, seed=2)

        def both(*args):
            return [jax.value_and_grad(loss_fn(cell, mask, backward, **options),
                                       argnums=(0, 1, 2, 3))(*args)
                    for backward, options in (("custom", option), ("autodiff", {}))]

        (value, grads), (value_ref, grads_ref) = jax.jit(both)(params, xs, dts, state)
        np.testing.assert_allclose(value, value_ref, rtol=1e-10)
        assert_trees_close(grads, grads_ref, 1e-10)


def test_recurrence_takes_time_major_projections_and_integer_masks():
    cell, params, xs, dts, state, mask = setup("lstm", {}, jnp.float32, seed=3)
    xs_TxBxD, dts_TxBxK = jnp.swapaxes(xs, 0, 1), jnp.swapaxes(dts, 0, 1)
    masks_TxB = jnp.swapaxes(mask, 0, 1).astype(jnp.int32)

    def loss(params, zs, dts):
        final, hs = fast_rnn.recurrence(cell, params, zs, dts, masks_TxB, state)
        return jnp.sum(hs ** 2) + jnp.sum(final.c)

    zs = cell.project(params, xs_TxBxD, dts_TxBxK)
    d_params, d_zs, d_dts = jax.grad(loss, argnums=(0, 1, 2))(params, zs, dts_TxBxK)
    # w_x and b enter only the projection: their gradient flows through dzs, not from here
    assert not jnp.any(d_params["w_x"]) and not jnp.any(d_params["b"])
    assert not jnp.any(d_dts)  # the plain LSTM does not read Δt
    assert not jnp.any(d_zs[4:, 1]) and not jnp.any(d_zs[2, 2])  # masked steps read nothing
    assert jnp.all(jnp.any(d_zs[:4, 1] != 0, axis=-1))
    final, hs = fast_rnn.recurrence(cell, params, zs, dts_TxBxK, masks_TxB, state)
    final_ref, hs_ref = scan_layer(cell, params, xs, dts, mask, state, backward="autodiff")
    np.testing.assert_allclose(jnp.swapaxes(hs, 0, 1), hs_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final.c, final_ref.c, rtol=1e-6, atol=1e-6)


def test_unknown_backward_is_an_error():
    cell, params, xs, dts, state, mask = setup("lstm", {}, jnp.float32)
    with pytest.raises(ValueError, match="backward='manual'"):
        scan_layer(cell, params, xs, dts, backward="manual")


RESETS = np.zeros((B, T), np.float32)
RESETS[0, 3] = 1.0  # a new sequence starts at step 3 of row 0
RESETS[2, 2] = 1.0  # ... and at the masked step of row 2 (reset, then keep the zeros)
RESETS[1, 0] = 1.0  # ... and at step 0 of row 1: the initial state is dropped


@pytest.mark.parametrize("name,options,remat", [("lstm", {}, False), ("tlstm", {}, True),
                                               ("time_aware", {"adaptive": True}, False),
                                               ("lstm", {"decay": True}, True)])
def test_resets_inside_a_window_custom_equals_autodiff(name, options, remat):
    with jax.enable_x64(True):
        _check_resets(name, options, remat)


def _check_resets(name, options, remat):
    cell, params, xs, dts, state, mask = setup(name, options, jnp.float64)
    args = (params, xs, dts, state)
    resets = jnp.asarray(RESETS, jnp.float64)
    custom = jax.grad(loss_fn(cell, mask, "custom", remat=remat, resets_BxT=resets), argnums=(0, 1, 2, 3))(*args)
    autodiff = jax.grad(loss_fn(cell, mask, "autodiff", resets_BxT=resets), argnums=(0, 1, 2, 3))(*args)
    assert_trees_close(custom, autodiff, 1e-10)
    check_grads(loss_fn(cell, mask, "custom", remat=remat, resets_BxT=resets), args, order=1, modes=["rev"],
                atol=1e-5, rtol=1e-5)
    # row 1 resets at step 0: its initial state gets no gradient
    np.testing.assert_array_equal(np.asarray(custom[3].c[1]), 0.0)
    np.testing.assert_array_equal(np.asarray(custom[3].h[1]), 0.0)


def test_a_reset_is_a_new_sequence_from_zeros():
    """Row 0 with a reset at step 3 = steps 0..2 from its state, then steps 3.. from zeros."""
    with jax.enable_x64(True):
        _check_new_sequence()


def _check_new_sequence():
    cell, params, xs, dts, state, _ = setup("lstm", {}, jnp.float64)
    resets = jnp.asarray(RESETS, jnp.float64)
    final, hs = scan_layer(cell, params, xs, dts, None, state, resets_BxT=resets)
    _, head = scan_layer(cell, params, xs[:1, :3], dts[:1, :3], None, jax.tree.map(lambda x: x[:1], state))
    tail_final, tail = scan_layer(cell, params, xs[:1, 3:], dts[:1, 3:])
    np.testing.assert_allclose(hs[0, :3], head[0], rtol=1e-12)
    np.testing.assert_allclose(hs[0, 3:], tail[0], rtol=1e-12)
    np.testing.assert_allclose(final.c[0], tail_final.c[0], rtol=1e-12)
    # no later output depends on an input before the reset
    jac = jax.jacobian(lambda x: scan_layer(cell, params, x, dts, None, state, resets_BxT=resets)[1][0, 3:])(xs)
    np.testing.assert_array_equal(np.asarray(jac)[..., 0, :3, :], 0.0)


@pytest.mark.parametrize("chunk", [3, 7, 10])  # two chunks and a tail; one chunk; the tail alone
def test_remat_chunks_keep_the_gradients(chunk):
    """The remat backward pass, chunk by chunk from the last, against jax.grad of the plain scan;
    with padding, a masked step and resets inside the window."""
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask = setup("tlstm", {}, jnp.float64, seed=4)
        resets = jnp.asarray(RESETS, jnp.float64)
        time_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731

        def loss(backward):
            def f(params, xs, dts, state):
                if backward == "autodiff":
                    final, hs = scan_layer(cell, params, xs, dts, mask, state, backward="autodiff",
                                           resets_BxT=resets)
                else:
                    final, hs_TxBxH = fast_rnn.layer(cell, params, time_major(xs), time_major(dts),
                                                     time_major(mask), state, remat=True, remat_chunk=chunk,
                                                     resets_TxB=time_major(resets))
                    hs = time_major(hs_TxBxH)
                weights = jnp.linspace(-1.0, 1.0, H)[None, None]
                return jnp.sum(jnp.sin(hs) * weights) + jnp.sum(final.c ** 2) + jnp.sum(final.h)
            return jax.value_and_grad(f, argnums=(0, 1, 2, 3))

        (value, grads), (value_ref, grads_ref) = [jax.jit(loss(b))(params, xs, dts, state)
                                                  for b in ("custom", "autodiff")]
        np.testing.assert_allclose(value, value_ref, rtol=1e-10)
        assert_trees_close(grads, grads_ref, 1e-10)


def test_remat_chunks_bound_the_backward_memory():
    """XLA's own buffer plan: the remat backward pass in chunks of 32 steps needs far less scratch
    memory than one chunk of all T steps (whose pre-activations are T x B x 4H)."""
    cell = make_cell("lstm")
    n_steps, batch, d = 1024, 8, 64
    params = cell.init(jax.random.key(0), d, d)
    xs_TxBxD = jnp.ones((n_steps, batch, d), jnp.float32)
    dts_TxBxK = jnp.ones((n_steps, batch, 1), jnp.float32)
    state = cell.initial_state(batch, d, jnp.float32)

    def scratch_bytes(chunk):
        def loss(params, xs):
            return jnp.sum(fast_rnn.layer(cell, params, xs, dts_TxBxK, None, state, remat=True,
                                          remat_chunk=chunk)[1])
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs_TxBxD).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    def plain_scratch_bytes():
        def loss(params, xs):
            return jnp.sum(fast_rnn.layer(cell, params, xs, dts_TxBxK, None, state)[1])
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs_TxBxD).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    preactivations = n_steps * batch * 4 * d * 4  # bytes of one T x B x G float32 array
    whole, chunked = scratch_bytes(n_steps), scratch_bytes(32)
    assert whole - chunked > preactivations, (whole, chunked)
    # and less than without remat, which keeps z_t: the forward pass projects a chunk at a time too
    # (it projected all T at once, and remat then took more memory than the plain pass)
    plain = plain_scratch_bytes()
    assert plain - chunked > preactivations / 2, (plain, chunked)


def test_remat_chunk_must_be_positive():
    cell, params, xs, dts, state, mask = setup("lstm", {}, jnp.float32)
    with pytest.raises(ValueError, match="remat_chunk=0"):
        fast_rnn.layer(cell, params, jnp.swapaxes(xs, 0, 1), jnp.swapaxes(dts, 0, 1), None, state, remat=True,
                       remat_chunk=0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_carried_scan_equals_lax_scan(reverse, n_steps):
    """Inputs through the carry: the same final carry and outputs as `lax.scan`, forward and
    in reverse, with a None leaf among the inputs and an order-sensitive body."""
    rng = np.random.default_rng(n_steps)
    xs = (jnp.asarray(rng.normal(size=(n_steps, 2, 3))), None, jnp.arange(n_steps))

    def body(carry, x):
        a_2x3, _, t = x
        carry = 0.5 * carry + jnp.sin(a_2x3) * (t + 1)  # depends on the order of the steps
        return carry, (carry.sum(), t)

    init = jnp.ones((2, 3))
    want = jax.lax.scan(body, init, xs, reverse=reverse)
    got = jax.jit(lambda i, x: fast_rnn.carried_scan(body, i, x, reverse=reverse))(init, xs)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6), got, want)


def test_transposed_is_the_transpose():
    w = jnp.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(jax.jit(fast_rnn.transposed)(w), w.T)


@pytest.mark.parametrize("name", list(CELLS))  # a cell's options do not change its `project`
def test_project_tokens_equals_the_projection_of_the_looked_up_embeddings(name):
    """The per-vocabulary projection (row v of E W_x for token v, plus what depends on Δt) equals
    `project` of embed[tokens] in values and in the gradients of params, E and Δt, for every cell:
    it fails for a cell whose `project` is not affine in x."""
    with jax.enable_x64(True):
        cell = make_cell(name, **OPTIONS.get(name, {}))
        params = perturbed_params(cell, jax.random.key(3), D, H, jnp.float64)
        rng = np.random.default_rng(3)
        embed_VxD = jnp.asarray(rng.normal(size=(6, D)))
        tokens_TxB = jnp.asarray(rng.integers(0, 6, size=(T, B)))
        dts_TxBxK = jnp.asarray(rng.exponential(1.0, size=(T, B, cell.d_time)))
        n_gates_x_h = fast_rnn.project(cell, params, embed_VxD[tokens_TxB], dts_TxBxK).shape[-1]
        cotangent_TxBxG = jnp.asarray(rng.normal(size=(T, B, n_gates_x_h)))

        def per_vocab(params, embed, dts):
            return jnp.sum(jnp.sin(rnn.project_tokens(cell, params, embed, tokens_TxB, dts)) * cotangent_TxBxG)

        def per_token(params, embed, dts):
            return jnp.sum(jnp.sin(fast_rnn.project(cell, params, embed[tokens_TxB], dts)) * cotangent_TxBxG)

        value, grads = jax.value_and_grad(per_vocab, argnums=(0, 1, 2))(params, embed_VxD, dts_TxBxK)
        value_ref, grads_ref = jax.value_and_grad(per_token, argnums=(0, 1, 2))(params, embed_VxD, dts_TxBxK)
        np.testing.assert_allclose(value, value_ref, rtol=1e-12)
        assert_trees_close(grads, grads_ref, 1e-12)
