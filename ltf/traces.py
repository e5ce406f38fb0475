"""What a cell does at every step: its gate activations, cell states and outputs over a sequence.

    tr = cell_traces(cell, params, xs_BxTxD, dts_BxTxK)                # one layer
    tr = language_model_traces(model, params, tokens_BxT, layer=0)    # one layer of a language model
    tr.gates["f"], tr.c, tr.h                                          # each B x T x H
    model, params, vocab = load_language_model("runs/<run>")          # a trained one, from its workdir

How. A cell's `gate_update` returns (C_t, h_t) only, not the gates it formed, and this module
leaves the cells alone: it reuses the cell's own `project` for the h-independent part of z_t,
adds h_{t-1} W_h step by step under `lax.scan` (as `ltf.rnn` does), and recomputes the gates from
z_t with the cell's equations, written out again here per cell class (`TRACERS`). It then forms
C_t and h_t from those gates itself, so that checking its C_t and h_t against the model's forward
pass (tests/test_traces.py, for every cell in `ltf.cells.registry.CELLS`) checks the gates too. A cell
class without an entry in `TRACERS` fails with an error naming it; a new cell needs its gate
equations here as well as in `ltf.cells`.

What is reported, for every cell: gates i, f, o ∈ (0, 1) and the candidate g ∈ (−1, 1).
- `lstm_noforget` has no forget gate. Its f is reported as ones: C_t = C_{t-1} + i ⊙ g is the
  forget-gate update with f ≡ 1, and a constant row of ones plots beside a learned f.
  `ltf.cells.registry.has_forget_gate(cell)` tells the two apart.
- `adaptive` and `time_aware` report their gates with the peephole terms (U ⊙ C) included.
- `tlstm`'s f scales the time-discounted C*_{t-1}, not C_{t-1} (see `ltf.cells.time_aware.TLSTM`).
- `phased` also reports its time gate "k" ∈ [0, 1] (the cell's own rhythm at t, `Phased.time_gate`);
  its i, f, g, o form the candidate c̃_t, h̃_t that k blends with the carry.
- `ctlstm` also reports "i_bar", "f_bar" ∈ (0, 1) and the decay rate "delta" ≥ 0; its f scales
  C(t), the cell decayed over the gap; its C_t is the cell right after the event (the first H
  columns of its carry [C, C̄, δ, o]: `cell_traces` reports the first H columns of every carry).
- `gru` and `grud` report their own gates instead: update "u", reset "r" ∈ (0, 1) and the
  candidate "n" ∈ (−1, 1); their C is h (the GRU has one state vector).
- `rglru` reports its recurrence gate "r", input gate "i" ∈ (0, 1), the decay "a" = a^{c r} ∈ (0, 1]
  and its input "u" = x W_u + b_u; `linear_decay` its rate "lambda" > 0, decay "a" = exp(−Δt λ)
  ∈ (0, 1] and target "u". Their C is h, and there is no recurrent matmul (`cell.linear`).
- `mlstm` reports, per unit (each unit its head's gates), "i" = exp(ĩ − m_t) ∈ (0, 1] (the
  stabilised exponential input gate: a write's weight relative to the memory's scale), "f" = σ(f̃)
  and "o" ∈ (0, 1); its C is the first H entries of the packed [C, n, m] (head 0's memory, rows
  first: `ltf.cells.mlstm.unpack` the carry for the matrices). No recurrent matmul (`matrix_memory`).
- A masked step (mask 0) keeps C and h, as in `ltf.rnn`; its gates are what the step would
  have computed from its (padding) input, and mean nothing.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ltf import attention
from ltf.cells.base import LSTM, LSTMState, Params
from ltf.cells.classic import Adaptive, LSTMNoForget
from ltf.cells.ctlstm import CTLSTM, pack, unpack
from ltf.cells.grud import GRU, GRUD
from ltf.cells.linear import C, RGLRU, LinearDecay
from ltf.cells.mlstm import MLSTM, split_projection
from ltf.cells.mlstm import pack as mlstm_pack, unpack as mlstm_unpack
from ltf.cells.phased import Phased
from ltf.cells.time_aware import TimeAware, TLSTM
from ltf.fast_rnn import carry_in
from ltf.models import LanguageModel, RecurrentStack
from ltf.rnn import scan_layer
from ltf.shapes import lead

Array = jax.Array


class Traces(NamedTuple):
    gates: dict[str, Array]  # "i", "f", "g", "o" -> activations_BxTxH, in (0, 1); g in (−1, 1)
    c: Array  # c_BxTxH, the cell state C_t after each step
    h: Array  # h_BxTxH, the output h_t


# -- the gate equations, per cell class: (cell, params, z_BxG, C', h', dt_BxK) -> (gates, C_t, h_t),
# from the carry (C', h') after the cell's `before_step`


def _blocks(cell: LSTM, z_BxG) -> dict[str, Array]:
    """z_t split into its gate blocks, in the cell's layout (`cell.gates`)."""
    return dict(zip(cell.gates, jnp.split(z_BxG, len(cell.gates), axis=-1)))


def _peep(u_H, c_BxH):
    return 0.0 if u_H is None else lead(u_H, c_BxH) * c_BxH


def _forget_gate_lstm(z: dict, c_prev_BxH, u_f=None, u_i=None, u_o=None):
    """Gers et al. 2000, with the diagonal peepholes of Gers, Schraudolph & Schmidhuber 2002."""
    i = jax.nn.sigmoid(z["i"] + _peep(u_i, c_prev_BxH))  # i_t = σ(W_i[h_{t-1}, x_t] + U_i ⊙ C_{t-1} + b_i)
    f = jax.nn.sigmoid(z["f"] + _peep(u_f, c_prev_BxH))  # f_t = σ(W_f[h_{t-1}, x_t] + U_f ⊙ C_{t-1} + b_f)
    g = jnp.tanh(z["g"])  # g_t = tanh(W_g[h_{t-1}, x_t] + b_g)
    c = f * c_prev_BxH + i * g  # C_t = f ⊙ C_{t-1} + i ⊙ g
    o = jax.nn.sigmoid(z["o"] + _peep(u_o, c))  # o_t = σ(W_o[h_{t-1}, x_t] + U_o ⊙ C_t + b_o)
    h = o * jnp.tanh(c)  # h_t = o ⊙ tanh(C_t)
    return {"i": i, "f": f, "g": g, "o": o}, c, h


def _lstm(cell, params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
    """lstm, adaptive, time_aware: φ(Δt) W_Δt is already in z (from `project`); peepholes by name."""
    del h_prev_BxH, dt_BxK
    return _forget_gate_lstm(_blocks(cell, z_BxG), c_prev_BxH, **cell.peephole_weights(params))


def _no_forget(cell, params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
    """Hochreiter & Schmidhuber 1997: C_t = C_{t-1} + i ⊙ g, i.e. f ≡ 1."""
    del params, h_prev_BxH, dt_BxK
    z = _blocks(cell, z_BxG)
    i, g, o = jax.nn.sigmoid(z["i"]), jnp.tanh(z["g"]), jax.nn.sigmoid(z["o"])
    c = c_prev_BxH + i * g  # C_t = C_{t-1} + i ⊙ g
    h = o * jnp.tanh(c)  # h_t = o ⊙ tanh(C_t)
    return {"i": i, "f": jnp.ones_like(i), "g": g, "o": o}, c, h


def _tlstm(cell, params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
    """Baytas et al. 2017: the LSTM update from C*_{t-1}, the memory with its short-term part discounted."""
    del h_prev_BxH
    c_short = jnp.tanh(c_prev_BxH @ params["w_d"] + lead(params["b_d"], c_prev_BxH))  # C^S_{t-1}
    decay = 1.0 / jnp.log(jnp.e + dt_BxK[:, :1])  # g(Δt) = 1 / log(e + Δt)
    c_adjusted = c_prev_BxH - c_short + decay * c_short  # C*_{t-1} = C_{t-1} − C^S + g(Δt) C^S
    return _forget_gate_lstm(_blocks(cell, z_BxG), c_adjusted)


def _ctlstm(cell, params, z_BxG, c_in_Bx4H, h_in_BxH, dt_BxK):
    """Mei & Eisner 2017: the jump at the event from the carry [C(t), C̄, δ, o] after the decay;
    returns the packed carry [C_t, C̄_t, δ_t, o_t] as the cell's C."""
    del params, h_in_BxH, dt_BxK
    z = _blocks(cell, z_BxG)
    c_t_BxH, c_bar_BxH, _, _ = unpack(c_in_Bx4H)
    gates = {k: jax.nn.sigmoid(z[k]) for k in ("i", "f", "o", "i_bar", "f_bar")}  # σ(W[h(t), x_t] + b)
    gates["g"] = jnp.tanh(z["g"])  # the paper's z = tanh(W_z[h(t), x_t] + b_z)
    gates["delta"] = jax.nn.softplus(z["delta"])  # δ = softplus(W_δ[h(t), x_t] + b_δ)
    c_BxH = gates["f"] * c_t_BxH + gates["i"] * gates["g"]  # C_t = f ⊙ C(t) + i ⊙ z
    c_bar_BxH = gates["f_bar"] * c_bar_BxH + gates["i_bar"] * gates["g"]  # C̄_t = f̄ ⊙ C̄ + ī ⊙ z
    h_BxH = gates["o"] * jnp.tanh(c_BxH)  # h_t = o ⊙ tanh(C_t)
    return gates, pack(c_BxH, c_bar_BxH, gates["delta"], gates["o"]), h_BxH


def _phased(cell, params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
    """Neil et al. 2016: the peephole LSTM's c̃_t, h̃_t, blended with the carry by the time gate k_t
    at t (`dt_BxK` holds the cell's time features: k_t from φ_t = ((t − s) mod τ)/τ)."""
    gates, c_tilde_BxH, h_tilde_BxH = _forget_gate_lstm(_blocks(cell, z_BxG), c_prev_BxH,
                                                        **cell.peephole_weights(params))
    k_BxH = dt_BxK  # Phased.time_features
    gates["k"] = k_BxH
    c_BxH = k_BxH * c_tilde_BxH + (1.0 - k_BxH) * c_prev_BxH  # c_t = k ⊙ c̃_t + (1 − k) ⊙ c_{t−1}
    h_BxH = k_BxH * h_tilde_BxH + (1.0 - k_BxH) * h_prev_BxH  # h_t = k ⊙ h̃_t + (1 − k) ⊙ h_{t−1}
    return gates, c_BxH, h_BxH


def _gru(cell, params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
    """Cho et al. 2014, reset gate after the matmul (`ltf.cells.grud`): z = [z_u, z_r, z_n, z_nh],
    h' the carry after the decay (grud); C is h."""
    del params, c_prev_BxH, dt_BxK
    z = _blocks(cell, z_BxG)
    u, r = jax.nn.sigmoid(z["u"]), jax.nn.sigmoid(z["r"])  # u_t = σ(x W_u + h' U_u + b_u), r_t likewise
    n = jnp.tanh(z["n"] + r * z["n_h"])  # n_t = tanh(x W_n + b_n + r_t ⊙ (h' U_n + b_hn))
    h = (1.0 - u) * h_prev_BxH + u * n  # h_t = (1 − u_t) ⊙ h' + u_t ⊙ n_t
    return {"u": u, "r": r, "n": n}, h, h


def _rglru(cell, params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
    """De et al. 2024 (`ltf.cells.linear`): z = [u, x W_r + b_r, x W_i + b_i]; C is h."""
    del c_prev_BxH, dt_BxK
    z = _blocks(cell, z_BxG)
    r, i = jax.nn.sigmoid(z["r"]), jax.nn.sigmoid(z["i"])  # r_t = σ(x W_r + b_r), i_t = σ(x W_i + b_i)
    log_a = -C * r * lead(jax.nn.softplus(params["a_param"]), r)  # log a_t = −c r_t softplus(Λ)
    a = jnp.exp(log_a)
    h = a * h_prev_BxH + jnp.sqrt(-jnp.expm1(2.0 * log_a)) * (i * z["u"])  # h_t = a_t h + √(1 − a_t²)(i_t u_t)
    return {"u": z["u"], "r": r, "i": i, "a": a}, h, h


def _linear_decay(cell, params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
    """Time-aware linear forgetting (`ltf.cells.linear`): z = [u, x W_λ + b_λ]; C is h."""
    del params, c_prev_BxH
    z = _blocks(cell, z_BxG)
    rate = jax.nn.softplus(z["lambda"])  # λ_t = softplus(x W_λ + b_λ)
    a = jnp.exp(-dt_BxK[:, :1] * rate)  # a_t = exp(−Δt_t λ_t)
    h = a * h_prev_BxH + (1.0 - a) * z["u"]  # h_t = a_t ⊙ h_{t-1} + (1 − a_t) ⊙ u_t
    return {"u": z["u"], "lambda": rate, "a": a}, h, h


def _mlstm(cell, params, z_BxG, c_prev_BxW, h_prev_BxH, dt_BxK):
    """Beck et al. 2024 (`ltf.cells.mlstm`): z = [q, k, v, o, ĩ, f̃]; C is the packed [C, n, m]."""
    del params, h_prev_BxH, dt_BxK
    q, k, v, z_o, i_pre, f_pre = split_projection(z_BxG, cell.heads)  # k scaled by 1/√d
    c, n, m = mlstm_unpack(c_prev_BxW, cell.heads)
    log_f = jax.nn.log_sigmoid(f_pre)
    m_new = jnp.maximum(log_f + m, i_pre)  # m_t = max(log σ(f̃_t) + m_{t−1}, ĩ_t)
    i, f_scaled = jnp.exp(i_pre - m_new), jnp.exp(log_f + m - m_new)  # i'_t, f'_t
    c = f_scaled[..., None, None] * c + i[..., None, None] * jnp.einsum("bni,bnj->bnij", v, k)  # C_t = f'C + i' v kᵀ
    n = f_scaled[..., None] * n + i[..., None] * k  # n_t = f'n + i' k
    den = jnp.maximum(jnp.abs(jnp.einsum("bnj,bnj->bn", n, q)), jnp.exp(-m_new))  # max(|nᵀq|, exp(−m_t))
    o = jax.nn.sigmoid(z_o)
    h = o * (jnp.einsum("bnij,bnj->bni", c, q) / den[..., None]).reshape(o.shape)  # h_t = σ(o_t) ⊙ C_t q_t / den
    per_unit = lambda g: jnp.repeat(g, q.shape[-1], axis=-1)  # noqa: E731  a head's gate on its d units
    return {"i": per_unit(i), "f": per_unit(jax.nn.sigmoid(f_pre)), "o": o}, mlstm_pack(c, n, m_new), h


# Exact classes: a subclass may change the equations, so it needs its own entry.
TRACERS: dict[type, Callable] = {
    LSTM: _lstm,
    LSTMNoForget: _no_forget,
    Adaptive: _lstm,
    TimeAware: _lstm,
    TLSTM: _tlstm,
    Phased: _phased,
    CTLSTM: _ctlstm,
    GRU: _gru,
    GRUD: _gru,
    RGLRU: _rglru,
    LinearDecay: _linear_decay,
    MLSTM: _mlstm,
}


def tracer(cell: LSTM) -> Callable:
    try:
        return TRACERS[type(cell)]
    except KeyError:
        known = ", ".join(sorted(c.__name__ for c in TRACERS))
        raise NotImplementedError(
            f"ltf.traces has no gate equations for cell class {type(cell).__name__}: add its gates to "
            f"ltf.traces.TRACERS (known: {known}).") from None


# -- one layer -----------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def cell_traces(cell: LSTM, params: Params, xs_BxTxD, dts_BxTxK, mask_BxT=None,
                state: LSTMState | None = None) -> Traces:
    """The gates, C_t and h_t of `cell` at every step, from `state` (zeros when None); as
    `ltf.rnn.scan_layer(cell, params, xs, dts, mask, state)` runs it."""
    step_gates = tracer(cell)
    batch, _, _ = xs_BxTxD.shape
    if state is None:
        state = cell.initial_state(batch, cell.hidden_size(params), xs_BxTxD.dtype)
    xs_TxBxD = jnp.swapaxes(xs_BxTxD, 0, 1)
    dts_TxBxK = cell.time_features(params, jnp.swapaxes(dts_BxTxK, 0, 1).astype(xs_BxTxD.dtype))
    masks_TxB = None if mask_BxT is None else jnp.swapaxes(mask_BxT, 0, 1)
    zs_TxBxG = cell.project(params, xs_TxBxD, dts_TxBxK)  # the cell's own h-independent part

    def body(carry: LSTMState, step_in):
        z_BxG, dt_BxK, m_B = step_in
        c_in, h_in_BxH = carry_in(cell, params, carry.c, carry.h, dt_BxK)  # the cell's decay, if any
        if cell.has_recurrent_matmul:
            z_BxG = z_BxG + h_in_BxH @ cell.recurrent_weight(params)  # z_t = x_t W_x + h' W_h + b (+ φ(Δt) W_Δt)
        gates, c_BxH, h_BxH = step_gates(cell, params, z_BxG, c_in, h_in_BxH, dt_BxK)
        if m_B is not None:  # a masked step keeps the carry and emits the carried h
            keep = lambda new, old: jnp.where(m_B[:, None] > 0, new, old)  # noqa: E731
            c_BxH, h_BxH = keep(c_BxH, carry.c), keep(h_BxH, carry.h)
        # C_t: the carry's first H columns (a wider carry packs more after them: ctlstm's C̄, δ, o)
        return LSTMState(c_BxH, h_BxH), (gates, c_BxH[..., :h_BxH.shape[-1]], h_BxH)

    _, (gates, cs_TxBxH, hs_TxBxH) = jax.lax.scan(body, state, (zs_TxBxG, dts_TxBxK, masks_TxB))
    batch_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
    return Traces({k: batch_major(v) for k, v in gates.items()}, batch_major(cs_TxBxH), batch_major(hs_TxBxH))


# -- one layer of a model --------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0, static_argnames="layer")
def stack_traces(stack: RecurrentStack, stack_params, xs_BxTxD, dts_BxTxK, mask_BxT=None, states=None,
                 *, layer: int = 0, times_BxT=None) -> Traces:
    """Traces of layer `layer` (−1: the last) of a `RecurrentStack`, fed as `stack.apply` feeds it
    without dropout: the layers below it run first, with attention where the stack has it; the
    cells run as `cell.for_evaluation()`, and those that read absolute times get `times_BxT` (or
    the window's clock) as Δt's last column, as in `RecurrentStack.apply`."""
    if not -stack.n_layers <= layer < stack.n_layers:
        raise ValueError(f"layer={layer}: the stack has {stack.n_layers} layers "
                         f"(0..{stack.n_layers - 1}, or −1 for the last).")
    layer %= stack.n_layers
    states = [None] * stack.n_layers if states is None else list(states)
    cells, dts_BxTxK = stack.running(dts_BxTxK, times_BxT, training=False)  # no dropout rng
    hs = xs_BxTxD
    for i in range(layer):
        _, hs = scan_layer(cells[i], stack_params[f"layer_{i}"], hs, dts_BxTxK, mask_BxT, states[i],
                           backward=stack.backward)
        if i == stack.attention_layer:
            hs = attention.apply(stack_params["attention"], hs, mask_BxT, **stack.attention.apply_options())
    return cell_traces(cells[layer], stack_params[f"layer_{layer}"], hs, dts_BxTxK, mask_BxT,
                       states[layer])


def language_model_traces(model: LanguageModel, params, tokens_BxT, dts_BxT=None, mask_BxT=None, states=None,
                          *, layer: int = 0, times_BxT=None) -> Traces:
    """Traces of layer `layer` of a `LanguageModel` reading `tokens_BxT`, as `model.apply` (no
    dropout) runs it; `states` continue from `model.apply`'s final states (zeros when None);
    `times_BxT` as in `RecurrentStack.apply`."""
    xs_BxTxE = params["embed"][tokens_BxT]
    if dts_BxT is None:
        dts_BxT = jnp.ones(tokens_BxT.shape, xs_BxTxE.dtype)
    return stack_traces(model.stack, params["stack"], xs_BxTxE, dts_BxT[..., None], mask_BxT, states,
                        layer=layer, times_BxT=times_BxT)


def load_language_model(workdir, *, step: int | None = None):
    """(model, params, vocab) of a run written by `scripts/train.py`: `ltf.sampling.load_language_model`."""
    from ltf.sampling import load_language_model as load

    return load(workdir, step=step)
