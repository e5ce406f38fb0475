"""Each cell against an independent float64 NumPy reference of its equations, and more."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

from ltf.cells import registry as cells
from ltf.cells.base import StepInputs

from ltf.cells.registry import make_cell

B, D, H, T = 3, 5, 4, 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gate_matrices(params, gates):
    """The fused parameters as per-gate W_gate acting on [h_{t-1}, x_t] (the papers' notation)."""
    n = len(gates)
    w_x = np.split(np.asarray(params["w_x"], np.float64), n, axis=1)
    w_h = np.split(np.asarray(params["w_h"], np.float64), n, axis=1)
    b = np.split(np.asarray(params["b"], np.float64), n)
    w_dt = np.split(np.asarray(params["w_dt"], np.float64), n, axis=1) if "w_dt" in params else None
    return {g: (np.concatenate([w_h[k], w_x[k]], axis=0), b[k], None if w_dt is None else w_dt[k])
            for k, g in enumerate(gates)}


def reference_run(name, params, xs_TxBxD, dts_TxBx1, options):
    """The papers' equations, step by step, in float64 NumPy. Returns hs_TxBxH, final (c, h)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    cell = make_cell(name, **options)
    W = gate_matrices(params, cell.gates)
    c = np.zeros((xs_TxBxD.shape[1], H))
    h = np.zeros_like(c)
    phi = np.log1p if options.get("time_transform", "log1p") == "log1p" else (lambda v: v)
    hs = []
    for x, dt in zip(xs_TxBxD.astype(np.float64), dts_TxBx1.astype(np.float64)):
        hx = np.concatenate([h, x], axis=1)

        def pre(g):
            w, b, w_dt = W[g]
            out = hx @ w + b
            if name == "time_aware":  # σ(W[h_{t-1}, x_t, φ(Δt)] + b)
                out = out + phi(dt) @ w_dt
            return out

        if name == "tlstm":
            c_short = np.tanh(c @ p["w_d"] + p["b_d"])
            c = c - c_short + c_short / np.log(np.e + dt)
        i_pre, g_pre, o_pre = pre("i"), pre("g"), pre("o")
        if "u_i" in p:
            i_pre = i_pre + p["u_i"] * c
        i, g = sigmoid(i_pre), np.tanh(g_pre)
        if name == "lstm_noforget":
            c = c + i * g
        else:
            f_pre = pre("f") + (p["u_f"] * c if "u_f" in p else 0.0)
            c = sigmoid(f_pre) * c + i * g
        if "u_o" in p:
            o_pre = o_pre + p["u_o"] * c
        h = sigmoid(o_pre) * np.tanh(c)
        hs.append(h)
    return np.stack(hs), (c, h)


VARIANTS = [
    ("lstm", {}),
    ("lstm", {"forget_init": "chrono", "chrono_t_max": 50}),
    ("lstm_noforget", {}),
    ("adaptive", {}),
    ("adaptive", {"peepholes": True}),
    ("time_aware", {}),
    ("time_aware", {"time_transform": "identity"}),
    ("time_aware", {"adaptive": True, "peepholes": True}),
    ("tlstm", {}),
]


def random_params(name, options, key):
    """Init, then perturb every array so that zero-initialised extras take part too."""
    params = make_cell(name, **options).init(key, D, H)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


def run_cell(cell, params, xs_TxBxD, dts_TxBx1, state=None):
    state = cell.initial_state(xs_TxBxD.shape[1], H) if state is None else state
    hs = []
    for x, dt in zip(xs_TxBxD, dts_TxBx1):
        state, h = cell.step(params, state, StepInputs(cell.project(params, x, dt), dt))
        hs.append(h)
    return jnp.stack(hs), state


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(T, B, D)).astype(np.float32)
    dts = rng.exponential(2.0, size=(T, B, 1)).astype(np.float32)
    return xs, dts


@pytest.mark.parametrize("name,options", VARIANTS)
def test_cell_matches_numpy_reference(name, options):
    cell = make_cell(name, **options)
    params = random_params(name, options, jax.random.key(0))
    xs, dts = inputs()
    hs, state = run_cell(cell, params, jnp.asarray(xs), jnp.asarray(dts))
    hs_ref, (c_ref, h_ref) = reference_run(name, params, xs, dts, options)
    np.testing.assert_allclose(hs, hs_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.c, c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.h, h_ref, rtol=1e-5, atol=1e-5)


# Cells whose carried c is wider than H; every other cell carries c_BxH. ctlstm: [C, C̄, δ, o];
# mlstm (4 heads of d = H/4): [C (4·d·d), n (H), m (4)].
CARRY_WIDTH = {"ctlstm": 4 * H, "mlstm": 4 * (H // 4) ** 2 + H + 4}


class TestCellsChexVariants(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_step_shapes_and_dtypes(self):
        for name in cells.CELLS:
            cell = make_cell(name)
            params = cell.init(jax.random.key(1), D, H)
            state = cell.initial_state(B, H)
            z = cell.project(params, jnp.ones((B, D)), jnp.ones((B, 1)))
            step = self.variant(cell.step)
            new_state, h = step(params, state, StepInputs(z, jnp.ones((B, 1))))
            chex.assert_shape([new_state.h, h], (B, H))
            chex.assert_shape(new_state.c, (B, CARRY_WIDTH.get(name, H)))
            chex.assert_type([new_state.c, h], jnp.float32)
            chex.assert_tree_all_finite(new_state)


def test_lstm_matches_flax_lstm_cell():
    import flax.linen as nn

    cell = make_cell("lstm")
    params = random_params("lstm", {}, jax.random.key(2))
    w_x = jnp.split(params["w_x"], 4, axis=1)
    w_h = jnp.split(params["w_h"], 4, axis=1)
    b = jnp.split(params["b"], 4)
    flax_params = {"params": {}}
    for k, g in enumerate("ifgo"):
        flax_params["params"][f"i{g}"] = {"kernel": w_x[k]}
        flax_params["params"][f"h{g}"] = {"kernel": w_h[k], "bias": b[k]}
    flax_cell = nn.LSTMCell(features=H)
    xs, dts = inputs(1)
    hs, state = run_cell(cell, params, jnp.asarray(xs), jnp.asarray(dts))
    carry = (jnp.zeros((B, H)), jnp.zeros((B, H)))
    for t in range(T):
        carry, h_flax = flax_cell.apply(flax_params, carry, jnp.asarray(xs[t]))
        np.testing.assert_allclose(hs[t], h_flax, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.c, carry[0], rtol=1e-5, atol=1e-5)


def test_lstm_matches_torch_lstm():
    torch = pytest.importorskip("torch", reason="torch is an optional peer (pip install torch==2.13.0)")
    cell = make_cell("lstm")
    params = random_params("lstm", {}, jax.random.key(3))
    lstm = torch.nn.LSTM(D, H)  # gates in torch's order i, f, g, o: the same as ltf's
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(np.asarray(params["w_x"]).T))
        lstm.weight_hh_l0.copy_(torch.tensor(np.asarray(params["w_h"]).T))
        lstm.bias_ih_l0.copy_(torch.tensor(np.asarray(params["b"])))
        lstm.bias_hh_l0.zero_()
    xs, dts = inputs(2)
    hs, state = run_cell(cell, params, jnp.asarray(xs), jnp.asarray(dts))
    with torch.no_grad():
        out, (h_n, c_n) = lstm(torch.tensor(xs))
    np.testing.assert_allclose(hs, out.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.c, c_n[0].numpy(), rtol=1e-5, atol=1e-5)


def _with(params, **changes):
    return {**params, **changes}


def test_adaptive_with_zero_peephole_is_lstm_and_differs_otherwise():
    params = random_params("adaptive", {}, jax.random.key(4))
    xs, dts = map(jnp.asarray, inputs(3))
    hs_lstm, _ = run_cell(make_cell("lstm"), params, xs, dts)  # ignores u_f
    zero = _with(params, u_f=jnp.zeros(H))
    hs_zero, _ = run_cell(make_cell("adaptive"), zero, xs, dts)
    hs_adaptive, _ = run_cell(make_cell("adaptive"), params, xs, dts)
    np.testing.assert_allclose(hs_zero, hs_lstm, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(hs_adaptive - hs_lstm)).max() > 1e-3


def test_time_aware_with_zero_dt_weights_is_lstm_and_differs_otherwise():
    params = random_params("time_aware", {}, jax.random.key(5))
    xs, dts = map(jnp.asarray, inputs(4))
    hs_lstm, _ = run_cell(make_cell("lstm"), params, xs, dts)
    hs_zero, _ = run_cell(make_cell("time_aware"), _with(params, w_dt=jnp.zeros_like(params["w_dt"])), xs, dts)
    hs_time, _ = run_cell(make_cell("time_aware"), params, xs, dts)
    np.testing.assert_allclose(hs_zero, hs_lstm, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(hs_time - hs_lstm)).max() > 1e-3


def test_tlstm_with_zero_dt_is_lstm_and_discounts_otherwise():
    params = random_params("tlstm", {}, jax.random.key(6))
    xs, dts = map(jnp.asarray, inputs(5))
    zero_dt = jnp.zeros_like(dts)
    hs_lstm, _ = run_cell(make_cell("lstm"), params, xs, zero_dt)
    hs_tlstm, _ = run_cell(make_cell("tlstm"), params, xs, zero_dt)
    hs_tlstm_dt, _ = run_cell(make_cell("tlstm"), params, xs, dts)
    np.testing.assert_allclose(hs_tlstm, hs_lstm, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(hs_tlstm_dt - hs_lstm)).max() > 1e-3


def test_noforget_cell_state_accumulates():
    """C_t − C_{t-1} = i ⊙ g ∈ (−1, 1): the 1997 cell can only add to its memory."""
    cell = make_cell("lstm_noforget")
    params = random_params("lstm_noforget", {}, jax.random.key(7))
    xs = jnp.ones((200, B, D))
    state = cell.initial_state(B, H)
    cs = []
    for x in xs:
        state, _ = cell.step(params, state, StepInputs(cell.project(params, x, None), None))
        cs.append(state.c)
    steps = np.diff(np.stack(cs), axis=0)
    assert np.all(np.abs(steps) < 1.0)
    assert np.abs(cs[-1]).max() > 20  # a constant input drives C without bound


@pytest.mark.parametrize("name,options", VARIANTS)
def test_cell_gradients(name, options):
    with jax.enable_x64(True):
        cell = make_cell(name, **options)
        params = jax.tree.map(lambda x: x.astype(jnp.float64), random_params(name, options, jax.random.key(8)))
        xs, dts = (jnp.asarray(a, jnp.float64)[:3] for a in inputs(6))

        def loss(params, xs, dts):
            hs, state = run_cell(cell, params, xs, dts)
            return jnp.sum(hs ** 2) + jnp.sum(jnp.sin(state.c))

        check_grads(lambda p, x: loss(p, x, dts), (params, xs), order=1, modes=["rev"], eps=1e-4)
        if name in ("time_aware", "tlstm"):
            check_grads(lambda d: loss(params, xs, d), (dts + 0.5,), order=1, modes=["rev"], eps=1e-4)


def test_chrono_initialisation_distribution():
    t_max = 100.0
    cell = make_cell("lstm", forget_init="chrono", chrono_t_max=t_max)
    b_i, b_f, b_g, b_o = np.split(np.asarray(cell.init_bias(jax.random.key(9), 4000)), 4)
    u = np.exp(b_f)  # b_f ~ log U[1, T_max − 1]  <=>  exp(b_f) ~ U[1, T_max − 1]
    assert u.min() >= 1.0 and u.max() <= t_max - 1.0
    assert scipy.stats.kstest(u, scipy.stats.uniform(loc=1.0, scale=t_max - 2.0).cdf).pvalue > 1e-3
    np.testing.assert_array_equal(b_i, -b_f)
    np.testing.assert_array_equal(b_g, 0.0)
    np.testing.assert_array_equal(b_o, 0.0)


def test_constant_forget_bias():
    b = np.split(np.asarray(make_cell("adaptive", forget_bias=2.5).init(jax.random.key(0), D, H)["b"]), 4)
    np.testing.assert_array_equal(b[1], 2.5)
    np.testing.assert_array_equal(b[0], 0.0)


@pytest.mark.parametrize("name", ["lstm", "adaptive", "gru", "phased"])
def test_normal_weight_init_draws_every_weight_from_n_0_std(name):
    """weight_init="normal" (Lasagne's default, the Phased LSTM authors' code): W_x, W_h and the
    peepholes ~ N(0, weight_std²); the biases and a cell's own parameters keep their init."""
    options = {"peepholes": True} if name == "adaptive" else {}
    default = make_cell(name, **options).init(jax.random.key(1), 64, 128)
    normal = make_cell(name, weight_init="normal", weight_std=0.05, **options).init(jax.random.key(1), 64, 128)
    weights = ["w_x", "w_h"] + [k for k in normal if k in ("u_f", "u_i", "u_o")]
    for key in weights:
        values = np.asarray(normal[key]).ravel()
        assert abs(values.mean()) < 0.01 and abs(values.std() - 0.05) < 0.005, key
    assert len(weights) == (2 if name in ("lstm", "gru") else 5)
    np.testing.assert_array_equal(normal["b"], default["b"])
    for key in set(default) - set(weights) - {"b"}:  # phased's τ, s, r_on: drawn as by default
        np.testing.assert_array_equal(normal[key], default[key])
    assert not np.allclose(normal["w_h"], default["w_h"])


@pytest.mark.parametrize("name,options,match", [
    ("no_such_cell", {}, "allowed values are"),
    ("lstm", {"weight_init": "uniform"}, "weight_init='uniform'"),
    ("lstm", {"weight_init": "normal", "weight_std": 0.0}, "weight_std=0.0"),
    ("rglru", {"weight_init": "normal"}, "does not apply to rglru"),
    ("mlstm", {"weight_init": "normal"}, "does not apply to mlstm"),
    ("lstm", {"forget_init": "zeros"}, "forget_init"),
    ("lstm", {"forget_init": "chrono"}, "chrono_t_max"),
    ("lstm_noforget", {"forget_init": "chrono", "chrono_t_max": 10}, "no forget gate"),
    ("time_aware", {"time_transform": "sqrt"}, "time_transform"),
    ("time_aware", {"peepholes": True}, "adaptive=True"),
    ("lstm", {"peepholes": True}, "do not apply"),
])
def test_bad_cell_options_name_the_field(name, options, match):
    with pytest.raises(ValueError, match=match):
        make_cell(name, **options)


def test_cells_are_hashable_and_params_are_plain_dicts():
    for name in cells.CELLS:
        cell = make_cell(name)
        hash(cell)
        params = cell.init(jax.random.key(0), D, H)
        assert isinstance(params, dict) and all(isinstance(v, jax.Array) for v in params.values())
        batched = jax.vmap(lambda k: cell.init(k, D, H))(jax.random.split(jax.random.key(0), 3))
        assert all(v.shape[0] == 3 for v in batched.values())
        assert dataclasses.is_dataclass(cell)


@pytest.mark.parametrize("name", list(cells.CELLS))
def test_no_parameter_is_weak_typed(name):
    """A weak-typed leaf (jnp.full with a Python float) turns float32 at the first optimiser
    update, and the jitted train step compiles a second time."""
    params = make_cell(name).init(jax.random.key(0), 3, 4)
    assert not [k for k, v in params.items() if v.weak_type]
