"""ltf.hybrid: Griffin's residual blocks (a cell's recurrent block, local attention), their
causal convolution, and the carry between windows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf.hybrid import ResidualStack, causal_conv, rms_norm
from ltf.models import LanguageModel, make_stack
from ltf.rnn import scan_layer
from ltf.shapes import dense

B, T, D, K = 2, 9, 6, 4


def _conv_params(rng, dtype=np.float64):
    return {"w": jnp.asarray(rng.normal(size=(K, D)), dtype), "b": jnp.asarray(rng.normal(size=D), dtype)}


def _conv_reference(w_KxD, b_D, u_TxD, tail_WxD):
    """out_t = b + Σ_k w_k u_{t−k}, with the tail before step 0 (one row, no mask, no reset)."""
    ext = np.concatenate([tail_WxD, u_TxD])
    W = len(tail_WxD)
    return np.stack([b_D + sum(w_KxD[k] * ext[W + t - k] for k in range(K)) for t in range(len(u_TxD))])


def test_the_convolution_against_its_equation_with_a_tail():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p, u, tail = _conv_params(rng), rng.normal(size=(B, T, D)), rng.normal(size=(B, K - 1, D))
        out, new_tail = causal_conv(p, jnp.asarray(u), jnp.asarray(tail))
        for b in range(B):
            np.testing.assert_allclose(out[b], _conv_reference(np.asarray(p["w"]), np.asarray(p["b"]), u[b], tail[b]),
                                       rtol=1e-12)
        np.testing.assert_array_equal(new_tail, u[:, -(K - 1):])  # the last inputs, the newest last


@pytest.mark.slow
def test_the_convolution_continues_across_windows_and_skips_trailing_padding():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        p, u = _conv_params(rng), jnp.asarray(rng.normal(size=(B, T, D)))
        zeros = jnp.zeros((B, K - 1, D))
        whole, whole_tail = causal_conv(p, u, zeros)
        first, tail = causal_conv(p, u[:, :4], zeros)
        second, second_tail = causal_conv(p, u[:, 4:], tail)
        np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, rtol=1e-12)
        np.testing.assert_allclose(second_tail, whole_tail, rtol=1e-12)
        # the same 4 steps followed by 3 padded ones: the same outputs and carried inputs
        padded = jnp.concatenate([u[:, :4], 100.0 + u[:, 4:7]], 1)
        mask = jnp.asarray([[1.0] * 4 + [0.0] * 3] * B)
        out, padded_tail = causal_conv(p, padded, zeros, mask)
        np.testing.assert_allclose(out[:, :4], first, rtol=1e-12)
        np.testing.assert_array_equal(padded_tail, tail)


def test_the_convolution_does_not_read_across_a_reset():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        p, u = _conv_params(rng), jnp.asarray(rng.normal(size=(B, T, D)))
        tail = jnp.asarray(rng.normal(size=(B, K - 1, D)))
        for at in (0, 5, T - 1):  # the first step, inside, the last (the carried inputs start anew)
            resets = jnp.zeros((B, T)).at[:, at].set(1.0)
            out, new_tail = causal_conv(p, u, tail, None, resets)
            fresh, fresh_tail = causal_conv(p, u[:, at:], jnp.zeros_like(tail))
            np.testing.assert_allclose(out[:, at:], fresh, rtol=1e-12)
            np.testing.assert_allclose(new_tail, fresh_tail, rtol=1e-12)
            if at > 0:  # before the reset: as without one
                np.testing.assert_allclose(out[:, :at], causal_conv(p, u[:, :at], tail)[0], rtol=1e-12)


def _stack(pattern="ra", cell="lstm", **options):
    return ResidualStack(cell=cell, d_in=5, d_hidden=D, n_layers=len(pattern), pattern=pattern, window=3,
                         conv_width=K, **options)


def _perturbed_params(stack, seed=0):
    """Init, then every parameter moved a little: the identity convolution and unit norms of the
    init would hide wiring mistakes."""
    params = stack.init(jax.random.PRNGKey(seed))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def test_a_recurrent_block_against_its_equations():
    """x W_in, then x + (GeLU(y W_g) ⊙ Cell(Conv(y W_b))) W_o with y = RMSNorm(x), then the gated
    MLP and the final norm, computed here step by step in float64 (the cell by its own layer)."""
    with jax.enable_x64(True):
        stack = _stack("r")
        params = _perturbed_params(stack)
        xs = jnp.asarray(np.random.default_rng(3).normal(size=(B, T, 5)))
        dts = jnp.ones((B, T, 1))
        _, hs = stack.apply(params, xs, dts)

        def norm(scale, v):
            return np.asarray(scale) * v / np.sqrt(np.mean(v * v, -1, keepdims=True) + 1e-6)

        def gelu(v):
            return np.asarray(jax.nn.gelu(jnp.asarray(v)))

        p = params["block_0"]
        x = np.asarray(dense(params["in"], xs))
        y = norm(p["norm_mix"], x)
        u = np.asarray(dense(p["mix"]["branch"], jnp.asarray(y)))
        conv = np.stack([_conv_reference(np.asarray(p["mix"]["conv"]["w"]), np.asarray(p["mix"]["conv"]["b"]), u[b],
                                         np.zeros((K - 1, D))) for b in range(B)])
        _, h = scan_layer(stack.cells[0], p["mix"]["cell"], jnp.asarray(conv), dts)
        gate = gelu(y @ np.asarray(p["mix"]["gate"]["w"]) + np.asarray(p["mix"]["gate"]["b"]))
        x = x + (gate * np.asarray(h)) @ np.asarray(p["mix"]["out"]["w"]) + np.asarray(p["mix"]["out"]["b"])
        y = norm(p["norm_mlp"], x)
        m = {k: (np.asarray(v["w"]), np.asarray(v["b"])) for k, v in p["mlp"].items()}
        x = x + (gelu(y @ m["gate"][0] + m["gate"][1]) * (y @ m["up"][0] + m["up"][1])) @ m["down"][0] + m["down"][1]
        np.testing.assert_allclose(hs, norm(params["norm_out"], x), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cell,options", [("lstm", {}), ("time_aware", {}), ("mlstm", {"heads": 2})])
def test_two_windows_with_the_carry_equal_one(cell, options):
    """Stateful truncated BPTT: the cells' carries (mlstm's: its matrix memory, normaliser and
    stabiliser) and the convolution's inputs continue exactly."""
    with jax.enable_x64(True):
        stack = _stack("rr", cell=cell, cell_options=tuple(options.items()))
        params = _perturbed_params(stack)
        xs = jnp.asarray(np.random.default_rng(4).normal(size=(B, T, 5)))
        dts = jnp.asarray(np.random.default_rng(5).uniform(0.5, 2.0, size=(B, T, 1)))
        whole_final, whole = stack.apply(params, xs, dts)
        first_final, first = stack.apply(params, xs[:, :4], dts[:, :4])
        second_final, second = stack.apply(params, xs[:, 4:], dts[:, 4:], states=first_final)
        np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, rtol=1e-10, atol=1e-12)
        for a, b in zip(jax.tree.leaves(second_final), jax.tree.leaves(whole_final)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_no_output_depends_on_a_later_input():
    with jax.enable_x64(True):
        stack = _stack("rra")
        params = _perturbed_params(stack)
        xs = jnp.asarray(np.random.default_rng(6).normal(size=(B, T, 5)))
        dts = jnp.ones((B, T, 1))
        _, base = stack.apply(params, xs, dts)
        for t in (0, 4, T - 2):
            _, moved = stack.apply(params, xs.at[:, t + 1:].add(3.0), dts)
            np.testing.assert_array_equal(moved[:, : t + 1], base[:, : t + 1])
            assert not np.allclose(moved[:, t + 1:], base[:, t + 1:])


@pytest.mark.slow
def test_gradients_against_finite_differences():
    with jax.enable_x64(True):
        stack = _stack("ra")
        params = _perturbed_params(stack)
        xs = jnp.asarray(np.random.default_rng(7).normal(size=(B, 5, 5)))
        dts = jnp.ones((B, 5, 1))

        def loss(params, xs):
            return jnp.sum(jnp.sin(stack.apply(params, xs, dts)[1]))

        check_grads(loss, (params, xs), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


def test_the_norm_scales_to_unit_root_mean_square():
    x = jnp.asarray(np.random.default_rng(8).normal(size=(3, 4, 16)) * 7.0, jnp.float32)
    y = rms_norm(jnp.ones(16), x)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(y * y, -1)), 1.0, rtol=1e-4)


@pytest.mark.slow  # 60 steps of three blocks: ~12 s
def test_a_language_model_of_residual_blocks_learns():
    """The LM with Griffin's blocks around `lstm` fits a repeating sequence: the loss falls."""
    import optax

    model = LanguageModel.build(vocab_size=7, d_embed=D, cell="lstm", d_hidden=D, n_layers=3, block="residual",
                                pattern="rra", window=4)
    params = model.init(jax.random.PRNGKey(0))
    tokens = jnp.tile(jnp.arange(7), (2, 3))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def loss(params):
        logits, _ = model.apply(params, inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    first = float(loss(params))

    @jax.jit
    def step(params, opt_state):
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for _ in range(60):
        params, opt_state = step(params, opt_state)
    assert float(loss(params)) < 0.2 * first


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="model.pattern='rx'"):
        _stack("rx")
    with pytest.raises(ValueError, match="model.window=0"):
        ResidualStack(cell="lstm", d_in=4, d_hidden=4, window=0)
    with pytest.raises(ValueError, match="model.block='griffin'"):
        make_stack(4, block="griffin", cell="lstm", d_hidden=4)
    from ltf.models import AttentionSpec

    with pytest.raises(ValueError, match="put 'a' in model.pattern"):
        make_stack(4, block="residual", cell="lstm", d_hidden=4, attention=AttentionSpec())
    stack = _stack("ra")
    with pytest.raises(ValueError, match="resets inside a window with attention blocks"):
        stack.apply(stack.init(jax.random.PRNGKey(0)), jnp.zeros((1, 3, 5)), jnp.ones((1, 3, 1)),
                    resets_BxT=jnp.zeros((1, 3)))
