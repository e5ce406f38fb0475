"""The compiled CPU kernel for the plain `lstm` (`ltf.cpu_kernel`): against a float64 NumPy
reference and against `ltf.fast_rnn`'s XLA scans (values and gradients, masks, resets, carried
state, shapes that do not fill the kernel's blocks), causality, vmap, when it applies, and its
build errors."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import cpu_kernel, fast_rnn
from ltf.cells.base import LSTMState
from ltf.cells.registry import make_cell

pytestmark = pytest.mark.skipif(not cpu_kernel.available(),
                                reason="ltf's CPU kernel is not built here (no C++ compiler with OpenMP)")

# (T, B, H): B not a multiple of the kernel's row blocks (4 forward, 8 backward), H of 1 and 3
# unit blocks (three do not split evenly over two threads), and a single step
SHAPES = [(7, 5, 32), (6, 9, 48), (1, 3, 16), (12, 16, 16)]


def problem(T, B, H, seed=0, *, masks=True, resets=True, peepholes=False):
    rng = np.random.default_rng(seed)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    w_h = f32(rng.normal(size=(H, 4 * H)) / np.sqrt(H))
    b = f32(0.5 * rng.normal(size=4 * H))
    zs = f32(rng.normal(size=(T, B, 4 * H)))
    m = f32(rng.uniform(size=(T, B)) > 0.3) if masks else None
    r = f32(rng.uniform(size=(T, B)) > 0.8) if resets else None
    state = LSTMState(c=f32(rng.normal(size=(B, H))), h=f32(0.5 * rng.normal(size=(B, H))))
    u = {name: f32(0.5 * rng.normal(size=H)) for name in ("u_f", "u_i", "u_o")} if peepholes else None
    return w_h, b, zs, m, r, state, u


def reference(w_h, b, zs, masks, resets, state, peepholes=None):
    """The recurrence step by step in float64 NumPy (module doc of ltf/kernels/lstm_cpu.cc)."""
    u = {k: np.asarray(v, np.float64) for k, v in (peepholes or {}).items()}
    u_f, u_i, u_o = (u.get(name, 0.0) for name in ("u_f", "u_i", "u_o"))
    sigmoid = lambda x: 1 / (1 + np.exp(-x))
    w_h, b, zs = (np.asarray(a, np.float64) for a in (w_h, b, zs))
    c, h = np.asarray(state.c, np.float64), np.asarray(state.h, np.float64)
    T, B, _ = zs.shape
    masks = np.ones((T, B)) if masks is None else np.asarray(masks, np.float64)
    resets = np.zeros((T, B)) if resets is None else np.asarray(resets, np.float64)
    hs = []
    for t in range(T):
        keep = (1 - resets[t])[:, None]
        c, h = keep * c, keep * h  # (C', h')_{t-1}: zero where a sequence starts
        z_i, z_f, z_g, z_o = np.split(zs[t] + b + h @ w_h, 4, axis=-1)
        c_new = sigmoid(z_f + u_f * c) * c + sigmoid(z_i + u_i * c) * np.tanh(z_g)
        h_new = sigmoid(z_o + u_o * c_new) * np.tanh(c_new)
        m = masks[t][:, None]
        c, h = m * c_new + (1 - m) * c, m * h_new + (1 - m) * h
        hs.append(h)
    return LSTMState(c, h), np.stack(hs)


@pytest.mark.parametrize("peepholes", [False, True])
@pytest.mark.parametrize("T, B, H", SHAPES)
def test_values_equal_the_float64_reference(T, B, H, peepholes):
    args = problem(T, B, H, peepholes=peepholes)
    final, hs = jax.jit(cpu_kernel.recurrence)(*args)
    ref_final, ref_hs = reference(*args)
    np.testing.assert_allclose(hs, ref_hs, atol=2e-6)
    np.testing.assert_allclose(final.c, ref_final.c, atol=2e-6)
    np.testing.assert_allclose(final.h, ref_final.h, atol=2e-6)


def _loss(run, weights):
    """A scalar that reads every output: each h_t and both parts of the final carry."""
    def loss(w_h, b, zs, state, u=None):
        final, hs = run(w_h, b, zs, state, u)
        return jnp.sum(hs * weights) + jnp.sum(final.c * weights[0]) + 2 * jnp.sum(final.h * weights[-1])
    return loss


@pytest.mark.parametrize("masks, resets, peepholes", [(True, True, False), (False, False, False),
                                                      (True, False, False), (False, True, False),
                                                      (True, True, True), (False, False, True)])
@pytest.mark.parametrize("T, B, H", SHAPES)
def test_values_and_gradients_equal_the_xla_scans(T, B, H, masks, resets, peepholes):
    """Against `ltf.fast_rnn`'s scans: `lstm`, or `adaptive` with all three peepholes."""
    w_h, b, zs, m, r, state, u = problem(T, B, H, seed=1, masks=masks, resets=resets, peepholes=peepholes)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(T, B, H)), jnp.float32)
    cell = make_cell("adaptive", peepholes=True) if peepholes else make_cell("lstm")
    dts = jnp.zeros((T, B, 1), jnp.float32)

    def xla(w_h, b, zs, state, u):
        params = {"w_x": jnp.zeros((1, 4 * H)), "w_h": w_h, "b": b, **(u or {})}
        return fast_rnn.recurrence(cell, params, zs + b[None, None], dts, m, state, resets_TxB=r, kernel="off")

    kernel = lambda w_h, b, zs, state, u: cpu_kernel.recurrence(w_h, b, zs, m, r, state, u)
    args, argnums = (w_h, b, zs, state, u), (0, 1, 2, 3) + ((4,) if peepholes else ())
    value, grads = jax.value_and_grad(_loss(kernel, weights), argnums=argnums)(*args)
    ref_value, ref_grads = jax.value_and_grad(_loss(xla, weights), argnums=argnums)(*args)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=3e-5)


def test_check_grads():
    w_h, b, zs, m, r, state, u = problem(5, 3, 16, seed=3, peepholes=True)
    run = lambda w_h, b, zs, c0, h0, u: cpu_kernel.recurrence(w_h, b, zs, m, r, LSTMState(c0, h0), u)[1]
    check_grads(run, (w_h, b, zs, state.c, state.h, u), order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-2)


def test_no_output_depends_on_a_later_input():
    w_h, b, zs, m, r, state, _ = problem(8, 4, 16, seed=4)
    _, hs = cpu_kernel.recurrence(w_h, b, zs, m, r, state)
    _, hs_changed = cpu_kernel.recurrence(w_h, b, zs.at[5:].add(3.0), m, r, state)
    np.testing.assert_array_equal(hs[:5], hs_changed[:5])
    assert not np.allclose(hs[5:], hs_changed[5:])


@pytest.mark.parametrize("name, options", [("lstm", {}), ("time_aware", {}), ("adaptive", {}),
                                           ("time_aware", {"adaptive": True, "peepholes": True})])
def test_the_fast_rnn_layer_takes_the_kernel_with_the_same_results(name, options):
    """fast_rnn.layer on dense inputs (bias added inside the kernel's step; time_aware's Δt in the
    projection; the peepholes) equals its XLA path, in the gradients of every parameter and input."""
    T, B, D, H = 6, 5, 7, 32
    cell = make_cell(name, **options)
    params = cell.init(jax.random.key(0), D, H)
    params = {k: v + 0.1 * jax.random.normal(jax.random.key(i + 1), v.shape) for i, (k, v) in enumerate(params.items())}
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(T, B, D)), jnp.float32)
    dts = jnp.asarray(rng.exponential(size=(T, B, 1)), jnp.float32)
    masks = jnp.asarray(rng.uniform(size=(T, B)) > 0.2, jnp.float32)
    state = LSTMState(jnp.zeros((B, H)), jnp.zeros((B, H)))
    assert cpu_kernel.applies(cell, jnp.zeros((T, B, 4 * H), jnp.float32))

    def loss(params, xs, dts, kernel):
        _, hs = fast_rnn.layer(cell, params, xs, cell.time_features(params, dts), masks, state, kernel=kernel)
        return jnp.sum(jnp.sin(hs))

    got = jax.grad(loss, argnums=(0, 1, 2))(params, xs, dts, "auto")
    want = jax.grad(loss, argnums=(0, 1, 2))(params, xs, dts, "off")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


def test_vmap_over_parameters_equals_one_call_each():
    """vmapped seeds batch the parameters: the kernel then runs once per seed."""
    (w_a, b, zs, m, r, state, _), w_b = problem(5, 3, 16, seed=6), problem(5, 3, 16, seed=7)[0]
    batched = jax.vmap(lambda w: cpu_kernel.recurrence(w, b, zs, m, r, state)[1])(jnp.stack([w_a, w_b]))
    for i, w in enumerate((w_a, w_b)):
        np.testing.assert_allclose(batched[i], cpu_kernel.recurrence(w, b, zs, m, r, state)[1], atol=1e-6)


@pytest.mark.parametrize("name, options, plain", [
        ("lstm", {}, True), ("lstm", {"forget_init": "chrono", "chrono_t_max": 10.0}, True),
        ("time_aware", {}, True), ("time_aware", {"adaptive": True, "peepholes": True}, True), ("adaptive", {}, True),
        ("adaptive", {"peepholes": True}, True),
        ("lstm", {"decay": True}, False), ("lstm_noforget", {}, False), ("tlstm", {}, False),
        ("phased", {}, False), ("gru", {}, False), ("ctlstm", {}, False), ("rglru", {}, False)])
def test_applies_to_the_plain_lstm_step_only(name, options, plain):
    cell = make_cell(name, **options)
    zs = jnp.zeros((2, 3, 64), jnp.float32)
    assert cpu_kernel.applies(cell, zs) is plain


def test_applies_in_float32_with_h_a_multiple_of_16_unless_turned_off(monkeypatch):
    cell = make_cell("lstm")
    zs = jnp.zeros((2, 3, 64), jnp.float32)
    assert cpu_kernel.applies(cell, zs)
    assert not cpu_kernel.applies(cell, zs, kernel="off")
    assert not cpu_kernel.applies(cell, jnp.zeros((2, 3, 48), jnp.float32))  # H = 12
    with jax.enable_x64(True):
        assert not cpu_kernel.applies(cell, jnp.zeros((2, 3, 64), jnp.float64))
    with monkeypatch.context() as patch:  # data parallel: XLA would gather the shards for it
        patch.setattr(cpu_kernel.jax, "device_count", lambda: 2)
        assert not cpu_kernel.applies(cell, zs)
    monkeypatch.setenv(cpu_kernel.ENV, "off")
    assert not cpu_kernel.applies(cell, zs)
    monkeypatch.setenv(cpu_kernel.ENV, "fast")
    with pytest.raises(ValueError, match="LTF_CPU_KERNEL='fast'"):
        cpu_kernel.applies(cell, zs)
    with pytest.raises(ValueError, match="kernel='on'"):
        cpu_kernel.applies(cell, zs, kernel="on")


def test_a_failed_build_names_the_file_and_the_scan_path_takes_over(tmp_path, monkeypatch):
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(cpu_kernel, "SOURCE", broken)
    monkeypatch.setenv("LTF_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="broken.cc"):
        cpu_kernel._build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cpu_kernel.available.__wrapped__() is False
    assert any("runs the XLA path" in str(w.message) and "broken.cc" in str(w.message) for w in caught)
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(cpu_kernel.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        cpu_kernel._build()
