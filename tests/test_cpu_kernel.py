"""The compiled CPU kernel for the LSTM recurrence (`ltf.cpu_kernel`): against a float64 NumPy
reference and against `ltf.fast_rnn`'s XLA scans (values and gradients, masks, resets, carried
state, shapes that do not fill the kernel's blocks; the peepholes, GRU-D's decay, Phased LSTM's
time gate and T-LSTM's short-term memory), causality, vmap, when it applies, and its build errors."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import cpu_kernel, fast_rnn, kernel_build
from ltf.cells.base import LSTMState
from ltf.cells.registry import make_cell

pytestmark = pytest.mark.skipif(not cpu_kernel.available(),
                                reason="ltf's CPU kernel is not built here (no C++ compiler with OpenMP)")

# (T, B, H): B not a multiple of the kernel's row blocks (4 forward, 8 backward), H of 1 and 3
# unit blocks (three do not split evenly over two threads), and a single step
SHAPES = [(7, 5, 32), (6, 9, 48), (1, 3, 16), (12, 16, 16)]


def problem(T, B, H, seed=0, *, masks=True, resets=True, peepholes=False, factors=None):
    """w_h, b, zs, masks, resets, state0, peepholes and, with `factors` ("decay", "blend" or
    "short_term"), a T x B x H factor in (0, 1] (γ_t, k_t with some exact 0s and 1s, as a closed or
    open gate, or T-LSTM's (W_d, b_d, g_t))."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    w_h = f32(rng.normal(size=(H, 4 * H)) / np.sqrt(H))
    b = f32(0.5 * rng.normal(size=4 * H))
    zs = f32(rng.normal(size=(T, B, 4 * H)))
    m = f32(rng.uniform(size=(T, B)) > 0.3) if masks else None
    r = f32(rng.uniform(size=(T, B)) > 0.8) if resets else None
    state = LSTMState(c=f32(rng.normal(size=(B, H))), h=f32(0.5 * rng.normal(size=(B, H))))
    u = {name: f32(0.5 * rng.normal(size=H)) for name in ("u_f", "u_i", "u_o")} if peepholes else None
    if factors is None:
        return w_h, b, zs, m, r, state, u
    factor = rng.uniform(0.05, 1.0, size=(T, B, H))
    if factors == "blend":
        factor = np.where(rng.uniform(size=factor.shape) < 0.2, np.round(factor), factor)
    if factors == "short_term":
        return w_h, b, zs, m, r, state, u, (f32(rng.normal(size=(H, H)) / np.sqrt(H)), f32(rng.normal(size=H)),
                                            f32(factor))
    return w_h, b, zs, m, r, state, u, f32(factor)


def factor_kwargs(factors, factor):
    """recurrence's keyword for the factor of `problem(..., factors=...)`."""
    names = {"decay": "decay_TxBxH", "blend": "blend_TxBxH", "short_term": "short_term"}
    return {names[factors]: factor} if factors else {}


def reference(w_h, b, zs, masks, resets, state, peepholes=None, decay_TxBxH=None, blend_TxBxH=None,
              short_term=None):
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
    gammas = np.ones((T, 1, 1)) if decay_TxBxH is None else np.asarray(decay_TxBxH, np.float64)
    ks = np.ones((T, 1, 1)) if blend_TxBxH is None else np.asarray(blend_TxBxH, np.float64)
    for t in range(T):
        keep = (1 - resets[t])[:, None]
        c, h = keep * c, keep * h  # (C, h)_{t-1}: zero where a sequence starts
        c_in, h_in = gammas[t] * c, gammas[t] * h  # C', h' after the decay
        if short_term is not None:  # T-LSTM: C' = C + (g − 1) tanh(C W_d + b_d)
            w_d, b_d, g = (np.asarray(a, np.float64) for a in short_term)
            c_in = c + (g[t] - 1) * np.tanh(c @ w_d + b_d)
        z_i, z_f, z_g, z_o = np.split(zs[t] + b + h_in @ w_h, 4, axis=-1)
        c_new = sigmoid(z_f + u_f * c_in) * c_in + sigmoid(z_i + u_i * c_in) * np.tanh(z_g)
        h_new = sigmoid(z_o + u_o * c_new) * np.tanh(c_new)
        c_new, h_new = ks[t] * c_new + (1 - ks[t]) * c_in, ks[t] * h_new + (1 - ks[t]) * h_in  # the time gate
        m = masks[t][:, None]
        c, h = m * c_new + (1 - m) * c, m * h_new + (1 - m) * h
        hs.append(h)
    return LSTMState(c, h), np.stack(hs)


@pytest.mark.parametrize("peepholes, factors", [(False, None), (True, None), (False, "decay"), (True, "blend"),
                                                (False, "short_term")])
@pytest.mark.parametrize("T, B, H", SHAPES)
def test_values_equal_the_float64_reference(T, B, H, peepholes, factors):
    args = problem(T, B, H, peepholes=peepholes, factors=factors)
    kwargs = factor_kwargs(factors, args[-1]) if factors else {}
    args = args[:7]
    final, hs = jax.jit(functools.partial(cpu_kernel.recurrence, **kwargs))(*args)
    ref_final, ref_hs = reference(*args, **kwargs)
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


@pytest.mark.parametrize("factors", [None, "decay", "blend", "short_term"])
def test_check_grads(factors):
    w_h, b, zs, m, r, state, u, factor = problem(5, 3, 16, seed=3, peepholes=factors != "short_term",
                                                 factors=factors or "decay")

    def run(w_h, b, zs, c0, h0, u, factor):
        kwargs = factor_kwargs(factors, factor)
        return cpu_kernel.recurrence(w_h, b, zs, m, r, LSTMState(c0, h0), u, **kwargs)[1]
    if factors == "short_term":
        factor = (*factor[:2], 0.5 + 0.4 * factor[2])
    else:  # away from the blend's exact 0 and 1: a finite difference must not cross them
        factor = 0.5 + 0.4 * factor
    check_grads(run, (w_h, b, zs, state.c, state.h, u, factor), order=1, modes=("rev",), atol=2e-2, rtol=2e-2,
                eps=1e-2)


def test_no_output_depends_on_a_later_input():
    w_h, b, zs, m, r, state, _ = problem(8, 4, 16, seed=4)
    _, hs = cpu_kernel.recurrence(w_h, b, zs, m, r, state)
    _, hs_changed = cpu_kernel.recurrence(w_h, b, zs.at[5:].add(3.0), m, r, state)
    np.testing.assert_array_equal(hs[:5], hs_changed[:5])
    assert not np.allclose(hs[5:], hs_changed[5:])


@pytest.mark.parametrize("name, options", [
        ("lstm", {}), ("time_aware", {}), ("adaptive", {}), ("time_aware", {"adaptive": True, "peepholes": True}),
        ("lstm", {"decay": True}), ("time_aware", {"adaptive": True, "peepholes": True, "decay": True}),
        ("phased", {}), ("phased", {"time_params": "raw", "learn_r_on": False}), ("tlstm", {})])
def test_the_fast_rnn_paths_take_the_kernel_with_the_same_results(name, options):
    """fast_rnn.layer (bias added inside the kernel's step), with remat too, and fast_rnn.recurrence
    (bias in zs) on dense inputs, with masks, resets and a carried state, equal their XLA path in the gradients of
    every parameter and input: time_aware's Δt in the projection, the peepholes, GRU-D's decay
    (γ_t from Δt), Phased LSTM's time gate (k_t from the absolute times) and T-LSTM's W_d, b_d and
    g(Δt)."""
    T, B, D, H = 9, 5, 7, 32
    cell = make_cell(name, **options)
    params = cell.init(jax.random.key(0), D, H)
    params = {k: v + 0.1 * jax.random.normal(jax.random.key(i + 1), v.shape) for i, (k, v) in enumerate(params.items())}
    if name == "phased":  # periods of a few steps, open a third of the time: k spans closed, rising and falling
        params["shift"] = params["shift"] % 3.0
        periods_H = jnp.linspace(2.0, 6.0, H)
        if "log_tau" in params:
            params["log_tau"] = jnp.log(periods_H)
        else:
            params["tau"] = periods_H
        cell = cell.for_evaluation() if options else cell
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(T, B, D)), jnp.float32)
    dts = rng.exponential(size=(T, B, 1))
    dts = jnp.asarray(np.cumsum(dts, axis=0) if cell.uses_times else dts, jnp.float32)  # phased: absolute times
    masks = jnp.asarray(rng.uniform(size=(T, B)) > 0.2, jnp.float32)
    resets = jnp.asarray(rng.uniform(size=(T, B)) > 0.85, jnp.float32)
    c0_BxH, h0_BxH = (jnp.asarray(rng.normal(size=(B, H)), jnp.float32) for _ in range(2))
    state = LSTMState(c0_BxH, h0_BxH)
    assert cpu_kernel.applies(cell, jnp.zeros((T, B, 4 * H), jnp.float32))

    def loss(params, xs, dts, state, kernel):
        feats = cell.time_features(params, dts)
        final, hs = fast_rnn.layer(cell, params, xs, feats, masks, state, resets_TxB=resets, kernel=kernel)
        zs = fast_rnn.project(cell, params, xs, feats)
        _, hs_rec = fast_rnn.recurrence(cell, params, zs, feats, masks, state, resets_TxB=resets, kernel=kernel)
        # remat in chunks of 4 steps: two chunks and a one-step tail (ltf.kernel_remat; off: the scans')
        final_remat, hs_remat = fast_rnn.layer(cell, params, xs, feats, masks, state, resets_TxB=resets,
                                               kernel=kernel, remat=True, remat_chunk=4)
        return (jnp.sum(jnp.sin(hs)) + jnp.sum(final.c ** 2) + jnp.sum(jnp.cos(hs_rec))
                + jnp.sum(jnp.tanh(2 * hs_remat)) + jnp.sum(final_remat.h ** 3))

    argnums = (0, 1, 2, 3)
    got_value, got = jax.value_and_grad(loss, argnums=argnums)(params, xs, dts, state, "auto")
    want_value, want = jax.value_and_grad(loss, argnums=argnums)(params, xs, dts, state, "off")
    np.testing.assert_allclose(got_value, want_value, rtol=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-5, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("chunk", [1, 5, 8, 13])  # every step alone; chunks and a tail; one chunk; longer than T
def test_remat_on_the_kernel_equals_the_kernel_without_remat(chunk):
    """ltf.kernel_remat against the kernel's own layer (no remat) in values and every gradient,
    and the kernel is what ran it."""
    T, B, D, H = 8, 3, 5, 16
    cell = make_cell("tlstm")
    params = cell.init(jax.random.key(1), D, H)
    rng = np.random.default_rng(2)
    xs = jnp.asarray(rng.normal(size=(T, B, D)), jnp.float32)
    dts = jnp.asarray(rng.exponential(size=(T, B, 1)), jnp.float32)
    masks = jnp.asarray(rng.uniform(size=(T, B)) > 0.2, jnp.float32)
    resets = jnp.asarray(rng.uniform(size=(T, B)) > 0.8, jnp.float32)
    state = LSTMState(*(jnp.asarray(rng.normal(size=(B, H)), jnp.float32) for _ in range(2)))

    def loss(params, xs, dts, state, remat):
        final, hs = fast_rnn.layer(cell, params, xs, dts, masks, state, resets_TxB=resets, remat=remat,
                                   remat_chunk=chunk)
        return jnp.sum(jnp.sin(hs) * jnp.arange(T)[:, None, None]) + jnp.sum(final.c ** 2) + jnp.sum(final.h)

    grad = functools.partial(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)), params, xs, dts, state)
    (got_value, got), (want_value, want) = grad(True), grad(False)
    np.testing.assert_allclose(got_value, want_value, rtol=1e-6)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    program = str(jax.make_jaxpr(jax.grad(functools.partial(loss, remat=True)))(params, xs, dts, state))
    assert cpu_kernel.FORWARD_TARGET in program and cpu_kernel.BACKWARD_TARGET in program


def test_vmap_over_parameters_equals_one_call_each():
    """vmapped seeds batch the parameters: the kernel then runs once per seed."""
    (w_a, b, zs, m, r, state, _), w_b = problem(5, 3, 16, seed=6), problem(5, 3, 16, seed=7)[0]
    batched = jax.vmap(lambda w: cpu_kernel.recurrence(w, b, zs, m, r, state)[1])(jnp.stack([w_a, w_b]))
    for i, w in enumerate((w_a, w_b)):
        np.testing.assert_allclose(batched[i], cpu_kernel.recurrence(w, b, zs, m, r, state)[1], atol=1e-6)


@pytest.mark.parametrize("name, options, step", [
        ("lstm", {}, "plain"), ("lstm", {"forget_init": "chrono", "chrono_t_max": 10.0}, "plain"),
        ("time_aware", {}, "plain"), ("time_aware", {"adaptive": True, "peepholes": True}, "plain"),
        ("adaptive", {}, "plain"), ("adaptive", {"peepholes": True}, "plain"),
        ("lstm", {"decay": True}, "decay"), ("time_aware", {"decay": True}, "decay"),
        ("adaptive", {"peepholes": True, "decay": True}, "decay"),
        ("phased", {}, "blend"), ("phased", {"time_params": "raw", "learn_r_on": False}, "blend"),
        ("tlstm", {}, "short_term"), ("tlstm", {"decay": True}, None),
        ("lstm_noforget", {}, None), ("gru", {}, None), ("grud", {}, None),
        ("ctlstm", {}, "ctlstm"), ("rglru", {}, None), ("mlstm", {}, None)])
def test_applies_to_the_cells_whose_step_it_has(name, options, step):
    cell = make_cell(name, **options)
    zs = jnp.zeros((2, 3, len(cell.gates) * 16), jnp.float32)
    assert cpu_kernel.kernel_step(cell) == step
    assert cpu_kernel.applies(cell, zs) is (step is not None)


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
    monkeypatch.setattr(kernel_build, "KERNELS_DIR", tmp_path)
    monkeypatch.setattr(kernel_build, "SOURCES", (broken.name,))
    monkeypatch.setattr(kernel_build, "HEADERS", ())
    monkeypatch.setenv("LTF_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="broken.cc"):
        kernel_build._build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernel_build.available.__wrapped__() is False
    assert any("runs the XLA path" in str(w.message) and "broken.cc" in str(w.message) for w in caught)
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(kernel_build.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        kernel_build._build()
