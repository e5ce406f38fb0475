"""The scanned layer against a Python loop over the step; masks; continuing from a carry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltf.cells.base import StepInputs

from ltf.cells.registry import CELLS, make_cell
from ltf.rnn import dropout, scan_layer, scan_stack

B, T, D, H = 3, 7, 5, 4


def setup(name, seed=0):
    cell = make_cell(name)
    key = jax.random.key(seed)
    params = cell.init(key, D, H)
    params = jax.tree.map(lambda x: x + 0.2 * jax.random.normal(jax.random.fold_in(key, x.size), x.shape), params)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    dts = jnp.asarray(rng.exponential(1.0, size=(B, T, 1)), jnp.float32)
    return cell, params, xs, dts


def python_loop(cell, params, xs, dts):
    state, hs = cell.initial_state(B, H), []
    for t in range(xs.shape[1]):
        z = cell.project(params, xs[:, t], cell.time_features(params, dts[:, t]))
        state, h = cell.step(params, state, StepInputs(z, dts[:, t]))  # step: the raw Δt
        hs.append(h)
    return state, jnp.stack(hs, axis=1)


@pytest.mark.parametrize("name", list(CELLS))
def test_scan_equals_python_loop(name):
    cell, params, xs, dts = setup(name)
    final, hs = jax.jit(lambda p, x, d: scan_layer(cell, p, x, d))(params, xs, dts)
    final_ref, hs_ref = python_loop(cell, params, xs, dts)
    np.testing.assert_allclose(hs, hs_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final.c, final_ref.c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(CELLS))
def test_continuing_from_the_returned_carry_equals_one_long_run(name):
    cell, params, xs, dts = setup(name, seed=1)
    xs2, dts2 = jnp.concatenate([xs, xs[:, ::-1]], axis=1), jnp.concatenate([dts, dts], axis=1)
    final_long, hs_long = scan_layer(cell, params, xs2, dts2)
    mid, hs_a = scan_layer(cell, params, xs2[:, :T], dts2[:, :T])
    final_b, hs_b = scan_layer(cell, params, xs2[:, T:], dts2[:, T:], state=mid)
    np.testing.assert_allclose(jnp.concatenate([hs_a, hs_b], axis=1), hs_long, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final_b.h, final_long.h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(CELLS))
def test_masked_steps_leave_the_carry_untouched(name):
    cell, params, xs, dts = setup(name, seed=2)
    lengths = np.array([T, 4, 1])
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)
    # Padding holds garbage: it must not matter.
    xs_padded = jnp.where(mask[..., None] > 0, xs, 1e3)
    final, hs = scan_layer(cell, params, xs_padded, dts, jnp.asarray(mask))
    for b, n in enumerate(lengths):
        final_b, hs_b = scan_layer(cell, params, xs[b:b + 1, :n], dts[b:b + 1, :n])
        np.testing.assert_allclose(hs[b, :n], hs_b[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(final.c[b], final_b.c[0], rtol=1e-5, atol=1e-6)
        # a masked step emits the carried h: the last real step's, exactly (that h equals the short
        # run's to rounding: mlstm's chunkwise form sums over chunks of another length there)
        np.testing.assert_array_equal(hs[b, n:], np.broadcast_to(hs[b, n - 1], hs[b, n:].shape))


def test_a_masked_step_in_the_middle_is_skipped():
    cell, params, xs, dts = setup("lstm", seed=3)
    mask = np.ones((B, T), np.float32)
    mask[:, 3] = 0.0
    _, hs = scan_layer(cell, params, xs, dts, jnp.asarray(mask))
    keep = [t for t in range(T) if t != 3]
    _, hs_ref = scan_layer(cell, params, xs[:, keep], dts[:, keep])
    np.testing.assert_allclose(hs[:, keep], hs_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("option", [{"unroll": 4}, {"remat": True}])
def test_unroll_and_remat_change_nothing_but_speed_and_memory(option):
    cell, params, xs, dts = setup("time_aware", seed=4)

    def loss(params, **kw):
        final, hs = scan_layer(cell, params, xs, dts, **kw)
        return jnp.sum(hs ** 2) + jnp.sum(final.c)

    value, grads = jax.value_and_grad(loss)(params)
    value_opt, grads_opt = jax.jit(jax.value_and_grad(lambda p: loss(p, **option)))(params)
    np.testing.assert_allclose(value_opt, value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads_opt, grads)


def test_locked_dropout_shares_one_mask_over_time():
    x = jnp.ones((4, 50, 8))
    y = dropout(jax.random.key(0), x, 0.5, locked=True)
    zero = np.asarray(y == 0)
    assert np.all(zero == zero[:, :1, :])  # same mask at every step
    assert 0 < zero.mean() < 1
    np.testing.assert_allclose(np.asarray(y)[~zero], 2.0)  # inverted scaling
    free = np.asarray(dropout(jax.random.key(0), x, 0.5, locked=False) == 0)
    assert not np.all(free == free[:, :1, :])
    assert dropout(None, x, 0.5) is x


def test_stack_without_rng_is_deterministic_and_layers_chain():
    cells = [make_cell("lstm"), make_cell("lstm")]
    key = jax.random.key(5)
    params = [cells[0].init(key, D, H), cells[1].init(jax.random.fold_in(key, 1), H, H)]
    _, _, xs, dts = setup("lstm")
    finals, hs = scan_stack(cells, params, xs, dts, dropout_rate=0.5)
    _, h1 = scan_layer(cells[0], params[0], xs, dts)
    final2, h2 = scan_layer(cells[1], params[1], h1, dts)
    np.testing.assert_allclose(hs, h2, rtol=1e-6)
    assert len(finals) == 2
    _, hs_drop = scan_stack(cells, params, xs, dts, dropout_rate=0.5, rng=jax.random.key(1))
    assert np.abs(np.asarray(hs_drop - hs)).max() > 1e-3
