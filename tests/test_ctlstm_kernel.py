"""The compiled CPU kernel of the continuous-time LSTM (`ltf.ctlstm_kernel`): against a float64
NumPy reference and against `ltf.fast_rnn`'s XLA scans (values and gradients, Δt's among them;
masks, resets, carried state, shapes that do not fill the kernel's blocks), gradient checks,
causality, and the layer paths (plain, recurrence, remat) that take it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import cpu_kernel, ctlstm_kernel, fast_rnn, kernel_build
from ltf.cells.base import LSTMState
from ltf.cells.registry import make_cell

pytestmark = pytest.mark.skipif(not cpu_kernel.available(),
                                reason="ltf's CPU kernel is not built here (no C++ compiler with OpenMP)")

# (T, B, H): B not a multiple of the forward's 3 rows nor the backward's 8, H of 1 and 3 unit
# blocks (three do not split evenly over two threads), a single step, a batch of full blocks
SHAPES = [(7, 5, 32), (6, 10, 48), (1, 3, 16), (12, 24, 16)]
CELL = make_cell("ctlstm")


def problem(T, B, H, seed=0, *, masks=True, resets=True):
    """w_h, b, zs, Δt (exponential, some exact zeros and some long gaps), masks, resets and a
    carried state0 (δ ≥ 0, as softplus makes it)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    w_h = f32(rng.normal(size=(H, 7 * H)) / np.sqrt(H))
    b = f32(0.5 * rng.normal(size=7 * H))
    zs = f32(rng.normal(size=(T, B, 7 * H)))
    dt = rng.exponential(size=(T, B))
    dt = np.where(rng.uniform(size=dt.shape) < 0.15, 0.0, dt)
    dt = f32(np.where(rng.uniform(size=dt.shape) < 0.1, 30.0, dt))
    m = f32(rng.uniform(size=(T, B)) > 0.3) if masks else None
    r = f32(rng.uniform(size=(T, B)) > 0.8) if resets else None
    c0 = np.concatenate([rng.normal(size=(B, H)), rng.normal(size=(B, H)), rng.exponential(size=(B, H)),
                         rng.uniform(size=(B, H))], axis=-1)
    state = LSTMState(c=f32(c0), h=f32(0.5 * rng.normal(size=(B, H))))
    return w_h, b, zs, dt, m, r, state


def reference(w_h, b, zs, dt, masks, resets, state):
    """The recurrence step by step in float64 NumPy (module doc of ltf/kernels/ctlstm_cpu.cc)."""
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    w_h, b, zs, dt = f64(w_h), f64(b), f64(zs), f64(dt)
    n_steps, batch, _ = zs.shape
    m = np.ones((n_steps, batch)) if masks is None else f64(masks)
    r = np.zeros((n_steps, batch)) if resets is None else f64(resets)
    c, h, hs = f64(state.c), f64(state.h), []
    for t in range(n_steps):
        keep = 1.0 - r[t][:, None]
        c, h = c * keep, h * keep
        c_old, c_bar, delta, o = np.split(c, 4, axis=-1)
        e = np.exp(-delta * dt[t][:, None])
        c_relaxed = c_old * e + c_bar * (1.0 - e)
        z = zs[t] + b + (o * np.tanh(c_relaxed)) @ w_h
        z_i, z_f, z_g, z_o, z_i_bar, z_f_bar, z_delta = np.split(z, 7, axis=-1)
        i, f, g, o_new = sigmoid(z_i), sigmoid(z_f), np.tanh(z_g), sigmoid(z_o)
        c_new = f * c_relaxed + i * g
        c_bar_new = sigmoid(z_f_bar) * c_bar + sigmoid(z_i_bar) * g
        delta_new = np.logaddexp(z_delta, 0.0)
        new = np.concatenate([c_new, c_bar_new, delta_new, o_new], axis=-1)
        stepped = m[t][:, None] > 0
        c, h = np.where(stepped, new, c), np.where(stepped, o_new * np.tanh(c_new), h)
        hs.append(h)
    return LSTMState(c, h), np.stack(hs)


@pytest.mark.parametrize("masks, resets", [(True, True), (False, False)])
@pytest.mark.parametrize("T, B, H", SHAPES)
def test_values_equal_the_float64_reference(T, B, H, masks, resets):
    w_h, b, zs, dt, m, r, state = problem(T, B, H, masks=masks, resets=resets)
    final, hs = ctlstm_kernel.recurrence(w_h, b, zs, dt, m, r, state)
    want_final, want_hs = reference(w_h, b, zs, dt, m, r, state)
    np.testing.assert_allclose(hs, want_hs, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(final.c, want_final.c, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(final.h, want_final.h, rtol=1e-5, atol=2e-6)


def _loss(run, weights):
    """A scalar that reads every output: each h_t and every part of the final carry."""
    def loss(w_h, b, zs, dt, state):
        final, hs = run(w_h, b, zs, dt, state)
        return jnp.sum(hs * weights) + jnp.sum(jnp.sin(final.c)) + 2 * jnp.sum(final.h * weights[-1])
    return loss


@pytest.mark.parametrize("masks, resets", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("T, B, H", SHAPES)
def test_values_and_gradients_equal_the_xla_scans(T, B, H, masks, resets):
    """Every gradient, Δt's too, against `ltf.fast_rnn`'s scans of the ctlstm cell."""
    w_h, b, zs, dt, m, r, state = problem(T, B, H, seed=1, masks=masks, resets=resets)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(T, B, H)), jnp.float32)

    def xla(w_h, b, zs, dt, state):
        params = {"w_x": jnp.zeros((1, 7 * H)), "w_h": w_h, "b": b}
        return fast_rnn.recurrence(CELL, params, zs + b[None, None], dt[..., None], m, state, resets_TxB=r,
                                   kernel="off")

    kernel = lambda w_h, b, zs, dt, state: ctlstm_kernel.recurrence(w_h, b, zs, dt, m, r, state)  # noqa: E731
    args = (w_h, b, zs, dt, state)
    value, grads = jax.value_and_grad(_loss(kernel, weights), argnums=(0, 1, 2, 3, 4))(*args)
    ref_value, ref_grads = jax.value_and_grad(_loss(xla, weights), argnums=(0, 1, 2, 3, 4))(*args)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=3e-5)


def test_check_grads():
    w_h, b, zs, dt, m, r, state = problem(5, 4, 16, seed=3)
    dt = 0.2 + dt.clip(0.0, 3.0)  # away from Δt = 0: the gradient there is one-sided for a user's clip

    def run(w_h, b, zs, dt, c0, h0):
        return ctlstm_kernel.recurrence(w_h, b, zs, dt, m, r, LSTMState(c0, h0))[1]
    check_grads(run, (w_h, b, zs, dt, state.c, state.h), order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-2)


def test_no_output_depends_on_a_later_input():
    w_h, b, zs, dt, m, r, state = problem(8, 4, 16, seed=4)
    _, hs = ctlstm_kernel.recurrence(w_h, b, zs, dt, m, r, state)
    _, hs_changed = ctlstm_kernel.recurrence(w_h, b, zs.at[5:].add(3.0), dt.at[5:].add(1.0), m, r, state)
    np.testing.assert_array_equal(hs[:5], hs_changed[:5])
    assert not np.allclose(hs[5:], hs_changed[5:])


def test_a_zero_gap_from_a_zero_carry_is_the_lstm_on_the_first_four_gates():
    """Δt = 0 leaves the carry as it is, so from zeros the cell is `lstm` on i, f, g, o: the
    two kernels agree (and ctlstm's gradient through the other three blocks is that of C̄ and δ)."""
    T, B, H = 6, 5, 32
    w_h, b, zs, _, m, r, _ = problem(T, B, H, seed=5)
    zero = LSTMState(jnp.zeros((B, 4 * H)), jnp.zeros((B, H)))
    _, hs = ctlstm_kernel.recurrence(w_h, b, zs, jnp.zeros((T, B)), m, r, zero)
    # Δt = 0: h(t) = o_{t-1} ⊙ tanh(C_{t-1}) = h_{t-1}, the LSTM's recurrent input
    _, want = cpu_kernel.recurrence(w_h[:, :4 * H], b[:4 * H], zs[..., :4 * H], m, r,
                                    LSTMState(jnp.zeros((B, H)), jnp.zeros((B, H))))
    np.testing.assert_allclose(hs, want, rtol=1e-5, atol=1e-6)


def test_vmap_over_parameters_equals_one_call_each():
    """vmapped seeds batch the parameters: the kernel then runs once per seed."""
    (w_a, b, zs, dt, m, r, state), w_b = problem(5, 3, 16, seed=6), problem(5, 3, 16, seed=7)[0]
    run = lambda w: ctlstm_kernel.recurrence(w, b, zs, dt, m, r, state)[1]  # noqa: E731
    batched = jax.vmap(run)(jnp.stack([w_a, w_b]))
    for i, w in enumerate((w_a, w_b)):
        np.testing.assert_allclose(batched[i], run(w), atol=1e-6)


def test_mismatched_shapes_name_the_operands():
    w_h, b, zs, dt, m, r, state = problem(3, 2, 16)
    with pytest.raises(ValueError, match="7H and 4H"):
        ctlstm_kernel.recurrence(w_h, b, zs[..., :4 * 16], dt, m, r, state)
    with pytest.raises(ValueError, match="state0.c"):
        ctlstm_kernel.recurrence(w_h, b, zs, dt, m, r, LSTMState(state.c[:, :16], state.h))


@pytest.mark.parametrize("remat", [False, True])
def test_the_fast_rnn_paths_take_the_kernel_with_the_same_results(remat):
    """fast_rnn.layer (bias inside the kernel's step; with remat on chunks of 4 steps: two chunks
    and a tail) and fast_rnn.recurrence (bias in zs) on dense inputs, with masks, resets and a
    carried state, equal the XLA scans in every gradient, and the kernel is what ran."""
    T, B, D, H = 9, 5, 7, 32
    params = CELL.init(jax.random.key(0), D, H)
    params = {k: v + 0.1 * jax.random.normal(jax.random.key(i + 1), v.shape) for i, (k, v) in enumerate(params.items())}
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(T, B, D)), jnp.float32)
    dts = jnp.asarray(rng.exponential(size=(T, B, 1)), jnp.float32)
    masks = jnp.asarray(rng.uniform(size=(T, B)) > 0.2, jnp.float32)
    resets = jnp.asarray(rng.uniform(size=(T, B)) > 0.85, jnp.float32)
    c0 = np.concatenate([rng.normal(size=(B, 2 * H)), rng.exponential(size=(B, H)), rng.uniform(size=(B, H))], -1)
    state = LSTMState(jnp.asarray(c0, jnp.float32), jnp.asarray(rng.normal(size=(B, H)), jnp.float32))
    assert cpu_kernel.applies(CELL, jnp.zeros((T, B, 7 * H), jnp.float32))

    def loss(params, xs, dts, state, kernel):
        final, hs = fast_rnn.layer(CELL, params, xs, dts, masks, state, resets_TxB=resets, kernel=kernel,
                                   remat=remat, remat_chunk=4)
        zs = fast_rnn.project(CELL, params, xs, dts)
        _, hs_rec = fast_rnn.recurrence(CELL, params, zs, dts, masks, state, resets_TxB=resets, kernel=kernel)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(final.c ** 2) + jnp.sum(jnp.cos(hs_rec)) + jnp.sum(final.h ** 3)

    grad = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))
    (got_value, got), (want_value, want) = grad(params, xs, dts, state, "auto"), grad(params, xs, dts, state, "off")
    np.testing.assert_allclose(got_value, want_value, rtol=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-5, err_msg=jax.tree_util.keystr(path))
    program = str(jax.make_jaxpr(jax.grad(functools.partial(loss, kernel="auto")))(params, xs, dts, state))
    assert kernel_build.CTLSTM_FORWARD_TARGET in program and kernel_build.CTLSTM_BACKWARD_TARGET in program
