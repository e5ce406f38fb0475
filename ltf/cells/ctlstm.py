"""The continuous-time LSTM of the neural Hawkes process (Mei & Eisner, NeurIPS 2017).

Between events the cell state does not hold still: after event i it starts at C and relaxes
exponentially, at a learned rate δ per unit, towards a target C̄, so that a gap Δt itself forgets:

    C(t) = C̄ + (C − C̄) ⊙ exp(−δ Δt),   h(t) = o ⊙ tanh(C(t))

At the event of step t (input x_t arriving Δt after the previous event), the gates read h(t), the
output just before the event, and set the next C, C̄, δ and o:

    i, f, o, ī, f̄ = σ(W[h(t), x_t] + b),  g = tanh(W_g[h(t), x_t] + b_g),  δ = softplus(W_δ[h(t), x_t] + b_δ)
    C_t = f ⊙ C(t) + i ⊙ g,   C̄_t = f̄ ⊙ C̄ + ī ⊙ g,   h_t = o ⊙ tanh(C_t)

The paper's z (the candidate) is g here, as in every ltf cell; its 2σ(2x) − 1 is tanh(x).

The carry. `LSTMState(c, h)` with c_Bx4H = [C, C̄, δ, o] packed (what C(t) needs over the
next gap), h_BxH = h_t, the output right after the event. `before_step` reads only the
packed c: h(t) is a function of it, so h_{t-1} itself gets no gradient (an initial state's h
does not matter). A zero carry (the initial state, a reset) has o = 0, hence h(t) = 0.

Special cases (tests/test_cells_ctlstm.py): Δt = 0 leaves the carry as it is, so the step is
the jump alone (h(t) = o ⊙ tanh(C) = h_{t-1}); Δt → ∞ relaxes C to C̄ before the event; δ = 0
never decays. From a zero carry, with Δt = 0 at every step or with δ = 0, the cell is `lstm` on
its first four gate blocks (i, f, g, o); so it is when the ī, f̄ blocks equal the i, f blocks
(then C̄ ≡ C, and there is nothing to decay towards).

Biases: b_f and b_i follow `forget_init` as in `lstm` ("constant": b_f = forget_bias = 1;
"chrono": b_f ~ log U[1, T − 1], b_i = −b_f); b_f̄ and b_ī the same way (drawn anew under
chrono), since C̄ is a leaky memory of the events just as C is. b_δ = 0, i.e. δ = log 2 ≈ 0.69
per unit of time at init (the paper gives no initialisation). `decay=True` (GRU-D's decay) does
not apply: this cell decays its own carry.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from ltf.cells.base import LSTM, Array, LSTMState, Params, split_gates

N_CARRIED = 4  # C, C̄, δ, o: the carry's c is B x 4H


def pack(c_BxH, c_bar_BxH, delta_BxH, o_BxH) -> Array:
    """[C, C̄, δ, o] as the carry's c_Bx4H."""
    return jnp.concatenate([c_BxH, c_bar_BxH, delta_BxH, o_BxH], axis=-1)


def unpack(c_Bx4H) -> tuple[Array, Array, Array, Array]:
    """C, C̄, δ, o (B x H each) from the carry's c_Bx4H."""
    return tuple(jnp.split(c_Bx4H, N_CARRIED, axis=-1))


def relax(c_BxH, c_bar_BxH, delta_BxH, dt_Bx1) -> Array:
    """C(t) = C̄ + (C − C̄) ⊙ exp(−δ Δt): C after a gap Δt, on its way to C̄. Written as
    C ⊙ e + C̄ ⊙ (1 − e), e = exp(−δ Δt), so that Δt = 0 (or δ = 0) gives C and Δt → ∞ gives C̄
    exactly, not up to rounding."""
    e_BxH = jnp.exp(-delta_BxH * dt_Bx1)
    return c_BxH * e_BxH + c_bar_BxH * (1.0 - e_BxH)


@dataclasses.dataclass(frozen=True)
class CTLSTM(LSTM):
    """The continuous-time LSTM (Mei & Eisner 2017): C relaxes towards a target C̄ at a learned
    rate δ over the gap Δt before each step (the first column of Δt when K > 1)."""

    gates: ClassVar[tuple[str, ...]] = ("i", "f", "g", "o", "i_bar", "f_bar", "delta")

    @property
    def changes_carry(self) -> bool:
        return True

    def __post_init__(self):
        if self.decay:
            raise ValueError("decay=True does not apply to ctlstm: the cell decays its own carry "
                             "(C relaxes towards C̄ at its learned rate δ); leave decay=False.")
        super().__post_init__()

    def init_bias(self, key, d_hidden: int) -> Array:
        """b_i, b_f by `forget_init` (as `lstm`); b_ī, b_f̄ the same way, drawn anew; the rest zero."""
        split = lambda b: dict(zip(self.gates, jnp.split(b, len(self.gates))))  # noqa: E731
        b = split(super().init_bias(key, d_hidden))
        target = split(super().init_bias(jax.random.fold_in(key, 1), d_hidden))
        b["i_bar"], b["f_bar"] = target["i"], target["f"]
        return jnp.concatenate([b[name] for name in self.gates])

    def initial_state(self, batch_size: int, d_hidden: int, dtype=jnp.float32) -> LSTMState:
        """Zeros: C = C̄ = 0, δ = 0, o = 0 (c_Bx4H) and h = 0 (h_BxH)."""
        return LSTMState(c=jnp.zeros((batch_size, N_CARRIED * d_hidden), dtype),
                         h=jnp.zeros((batch_size, d_hidden), dtype))

    def before_step(self, params: Params, c_prev_Bx4H, h_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """The decay over the gap: ([C(t), C̄, δ, o], h(t)); h_{t-1} is not read (h(t) is a
        function of the carry)."""
        del params, h_prev_BxH
        c_BxH, c_bar_BxH, delta_BxH, o_BxH = unpack(c_prev_Bx4H)
        c_t_BxH = relax(c_BxH, c_bar_BxH, delta_BxH, dt_BxK[:, :1])  # C(t) = C̄ + (C − C̄) ⊙ exp(−δ Δt)
        h_t_BxH = o_BxH * jnp.tanh(c_t_BxH)  # h(t) = o ⊙ tanh(C(t))
        return pack(c_t_BxH, c_bar_BxH, delta_BxH, o_BxH), h_t_BxH

    def gate_update(self, params: Params, z_BxG, c_prev_Bx4H, h_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """The jump at the event, from z_t = x_t W_x + h(t) W_h + b and the carry [C(t), C̄, δ, o]
        after `before_step`: returns ([C_t, C̄_t, δ_t, o_t], h_t)."""
        del params, h_prev_BxH, dt_BxK
        c_t_BxH, c_bar_BxH, _, _ = unpack(c_prev_Bx4H)
        z_i, z_f, z_g, z_o, z_i_bar, z_f_bar, z_delta = split_gates(z_BxG, len(self.gates))
        i, f, o = jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jax.nn.sigmoid(z_o)  # i, f, o = σ(W[h(t), x] + b)
        i_bar, f_bar = jax.nn.sigmoid(z_i_bar), jax.nn.sigmoid(z_f_bar)  # ī, f̄ = σ(W[h(t), x] + b)
        g = jnp.tanh(z_g)  # g (the paper's z) = tanh(W_g[h(t), x] + b_g)
        delta = jax.nn.softplus(z_delta)  # δ = softplus(W_δ[h(t), x] + b_δ) ≥ 0
        c_BxH = f * c_t_BxH + i * g  # C_t = f ⊙ C(t) + i ⊙ g
        c_bar_new_BxH = f_bar * c_bar_BxH + i_bar * g  # C̄_t = f̄ ⊙ C̄ + ī ⊙ g
        h_BxH = o * jnp.tanh(c_BxH)  # h_t = o ⊙ tanh(C_t)
        return pack(c_BxH, c_bar_new_BxH, delta, o), h_BxH
