"""Traces: C_t and h_t equal the model's own forward pass for every cell (so the gates that form
them are the cell's); gates in range; lstm_noforget's f ≡ 1; one step of lstm by hand."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltf import traces
from ltf.cells.base import LSTM, LSTMState, StepInputs
from ltf.cells.registry import CELLS, has_forget_gate, make_cell
from ltf.models import AttentionSpec, LanguageModel
from ltf.rnn import scan_layer

B, T, D, H, V = 3, 9, 5, 4, 13
TOL = dict(rtol=1e-5, atol=1e-6)


def perturbed(params, key):
    """Every parameter moved off its init, so that the peepholes and W_Δt (zero at init) count."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def setup(name, seed=0, **options):
    cell = make_cell(name, **options)
    key = jax.random.key(seed)
    params = perturbed(cell.init(key, D, H), jax.random.fold_in(key, 1))
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    dts = jnp.asarray(rng.exponential(2.0, size=(B, T, 1)), jnp.float32)
    state = LSTMState(*(jnp.asarray(rng.normal(size=s.shape), jnp.float32) for s in cell.initial_state(B, H)))
    return cell, params, xs, dts, state


def cell_loop(cell, params, xs, dts, mask, state):
    """(C_t, h_t) at every step from the cell's own `step`, in a Python loop over t."""
    step = jax.jit(lambda s, x, dt: cell.step(params, s, StepInputs(cell.project(params, x, dt), dt))[0])
    cs, hs = [], []
    for t in range(xs.shape[1]):
        new = step(state, xs[:, t], dts[:, t])
        keep = jnp.ones((xs.shape[0], 1)) if mask is None else mask[:, t, None]
        state = LSTMState(*(jnp.where(keep > 0, n, o) for n, o in zip(new, state)))
        cs.append(state.c)
        hs.append(state.h)
    return jnp.stack(cs, axis=1), jnp.stack(hs, axis=1)


# Gates a cell reports beyond i, f, g, o.
EXTRA_GATES = {"ctlstm": {"i_bar", "f_bar", "delta"}, "phased": {"k"}}
# Cells that report other gates than i, f, g, o: the GRU's update u, reset r ∈ (0, 1), candidate n ∈ (−1, 1).
GRUS = ("gru", "grud")
# The linear cells (ltf.cells.linear): the decay a ∈ (0, 1], their gates, their input/target u.
OWN_GATES = {**{name: {"u", "r", "n"} for name in GRUS},
             "rglru": {"u", "r", "i", "a"}, "linear_decay": {"u", "lambda", "a"},
             "mlstm": {"i", "f", "o"}}  # mlstm: no candidate g; i = exp(ĩ − m_t), per head
CASES = [(name, {}) for name in CELLS] + [
    ("adaptive", {"peepholes": True}),
    ("time_aware", {"adaptive": True, "peepholes": True}),
]


def test_every_registered_cell_is_covered():
    assert {type(make_cell(name)) for name in CELLS} <= set(traces.TRACERS)


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{''.join(',' + k for k in o)}" for n, o in CASES])
def test_c_and_h_equal_the_forward_pass(name, options, masked):
    cell, params, xs, dts, state = setup(name, **options)
    mask = jnp.asarray(np.arange(T)[None, :] < np.array([T, 5, 1])[:, None], jnp.float32) if masked else None
    tr = traces.cell_traces(cell, params, xs, dts, mask, state)
    final, hs = scan_layer(cell, params, xs, dts, mask, state)
    np.testing.assert_allclose(tr.h, hs, **TOL)
    np.testing.assert_allclose(tr.c[:, -1], final.c[:, :H], **TOL)  # C_t: the carry's first H columns
    cs_loop, hs_loop = cell_loop(cell, params, xs, dts, mask, state)
    np.testing.assert_allclose(tr.c, cs_loop[..., :H], **TOL)
    np.testing.assert_allclose(tr.h, hs_loop, **TOL)
    assert set(tr.gates) == OWN_GATES.get(name, {"i", "f", "g", "o"} | EXTRA_GATES.get(name, set()))
    assert all(v.shape == (B, T, H) for v in (*tr.gates.values(), tr.c, tr.h))


@pytest.mark.parametrize("name", list(CELLS))
def test_gates_lie_in_their_ranges(name):
    cell, params, xs, dts, state = setup(name, seed=1)
    tr = traces.cell_traces(cell, params, xs, dts, None, state)
    if name in GRUS:
        assert all(np.all((tr.gates[k] > 0) & (tr.gates[k] < 1)) for k in ("u", "r"))
        assert np.all(np.abs(tr.gates["n"]) < 1)
        assert np.ptp(np.asarray(tr.gates["u"])) > 0.1  # they move with the input
        return
    if cell.linear:  # a_t = a^{c r_t} or exp(−Δt λ_t) ∈ (0, 1]; rglru's gates r, i ∈ (0, 1); λ > 0
        assert np.all((tr.gates["a"] > 0) & (tr.gates["a"] <= 1))
        for k in set(tr.gates) & {"r", "i"}:
            assert np.all((tr.gates[k] > 0) & (tr.gates[k] < 1)), k
        assert np.all(tr.gates.get("lambda", 1.0) > 0)
        assert np.ptp(np.asarray(tr.gates["a"])) > 0.01  # it moves with the input
        return
    if cell.matrix_memory:  # mlstm: the stabilised exponential input gate i' = exp(ĩ − m_t) ∈ (0, 1]
        assert np.all((tr.gates["i"] > 0) & (tr.gates["i"] <= 1))
        assert np.all((tr.gates["f"] > 0) & (tr.gates["f"] < 1)) and np.all((tr.gates["o"] > 0) & (tr.gates["o"] < 1))
        assert np.ptp(np.asarray(tr.gates["i"])) > 0.1  # it moves with the input
        return
    for k in ("i", "o") + (("f",) if has_forget_gate(cell) else ()):
        assert np.all((tr.gates[k] > 0) & (tr.gates[k] < 1)), k
    assert np.all(np.abs(tr.gates["g"]) < 1)
    assert np.ptp(np.asarray(tr.gates["i"])) > 0.1  # they move with the input


def test_lstm_noforget_reports_f_as_ones_and_its_cell_state_accumulates():
    cell, params, xs, dts, state = setup("lstm_noforget")
    tr = traces.cell_traces(cell, params, xs, dts, None, state)
    np.testing.assert_array_equal(tr.gates["f"], np.ones((B, T, H)))
    c_prev = jnp.concatenate([state.c[:, None], tr.c[:, :-1]], axis=1)
    np.testing.assert_allclose(tr.c, c_prev + tr.gates["i"] * tr.gates["g"], **TOL)  # C_t = C_{t-1} + i ⊙ g


def test_one_lstm_step_by_hand():
    cell = make_cell("lstm")
    # D = H = 1; the gate blocks are laid out i, f, g, o.
    params = {"w_x": jnp.array([[1.0, 2.0, 0.5, -1.0]]), "w_h": jnp.array([[0.2, -0.4, 1.0, 0.6]]),
              "b": jnp.array([0.0, 0.0, 0.0, 0.0])}
    state = LSTMState(c=jnp.array([[0.5]]), h=jnp.array([[0.5]]))
    tr = traces.cell_traces(cell, params, jnp.ones((1, 1, 1)), jnp.ones((1, 1, 1)), None, state)
    # z = x W_x + h W_h + b = (1.1, 1.8, 1.0, −0.7)
    # i = σ(1.1) = 0.750260, f = σ(1.8) = 0.858149, g = tanh(1.0) = 0.761594, o = σ(−0.7) = 0.331812
    # C = f·0.5 + i·g = 0.429074 + 0.571394 = 1.000468,  h = o·tanh(C) = 0.331812·0.761791 = 0.252771
    expected = {"i": 0.750260, "f": 0.858149, "g": 0.761594, "o": 0.331812}
    for k, v in expected.items():
        np.testing.assert_allclose(tr.gates[k][0, 0, 0], v, atol=2e-6)
    np.testing.assert_allclose(tr.c[0, 0, 0], 1.000468, atol=2e-6)
    np.testing.assert_allclose(tr.h[0, 0, 0], 0.252771, atol=2e-6)


@pytest.mark.parametrize("name", list(CELLS))
def test_language_model_layers_match_its_apply(name):
    """Layer 1 of 2, attention after layer 0: h of the last layer is what the model's head reads."""
    model = LanguageModel.build(vocab_size=V, d_embed=D, cell=name, d_hidden=H, n_layers=2,
                                attention=AttentionSpec(layer=0, normaliser="softmax", window=4))
    params = model.init(jax.random.key(2))
    params = {**params, "stack": perturbed(params["stack"], jax.random.key(3))}
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, V, size=(B, T)), jnp.int32)
    states = [jax.tree.map(lambda a: jnp.full_like(a, 0.5), s) for s in model.initial_state(B)]
    logits, finals = model.apply(params, tokens, states=states)
    last = traces.language_model_traces(model, params, tokens, states=states, layer=-1)
    np.testing.assert_allclose(last.h @ params["out"]["w"] + params["out"]["b"][None, None], logits,
                               rtol=1e-5, atol=1e-5)
    first = traces.language_model_traces(model, params, tokens, states=states, layer=0)
    for tr, final in zip((first, last), finals):
        np.testing.assert_allclose(tr.c[:, -1], final.c[:, :H], **TOL)
        np.testing.assert_allclose(tr.h[:, -1], final.h, **TOL)
    with pytest.raises(ValueError, match="layer=2"):
        traces.language_model_traces(model, params, tokens, layer=2)


def test_a_cell_without_gate_equations_fails_naming_it():
    @dataclasses.dataclass(frozen=True)
    class MyCell(LSTM):
        pass

    cell = MyCell()
    params = cell.init(jax.random.key(0), D, H)
    with pytest.raises(NotImplementedError, match="MyCell.*TRACERS"):
        traces.cell_traces(cell, params, jnp.ones((1, 2, D)), jnp.ones((1, 2, 1)))
