"""The classic forgetting cells beside `lstm` (in `base.py`): the 1997 LSTM without a forget gate
and the adaptive forget gate with peepholes."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from ltf.cells.base import LSTM, Array, Params, split_gates


@dataclasses.dataclass(frozen=True)
class LSTMNoForget(LSTM):
    """The 1997 LSTM (Hochreiter & Schmidhuber), no forget gate: C_t = C_{t-1} + i ⊙ g.

    Without a way to reset, C grows without bound on a continual stream: the failure that
    forget gates fix.
    """

    gates: ClassVar[tuple[str, ...]] = ("i", "g", "o")

    def __post_init__(self):
        if self.forget_init != "constant" or self.forget_bias != 1.0:
            raise ValueError(
                    "lstm_noforget has no forget gate: forget_init/forget_bias do not apply; "
                    "leave them at their defaults or choose a cell with a forget gate.")
        super().__post_init__()

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
        del params, h_prev_BxH, dt_BxK
        z_i, z_g, z_o = split_gates(z_BxG, 3)
        c = c_prev_BxH + jax.nn.sigmoid(z_i) * jnp.tanh(z_g)  # C_t = C_{t-1} + i ⊙ g
        h = jax.nn.sigmoid(z_o) * jnp.tanh(c)  # h_t = o ⊙ tanh(C_t)
        return c, h


@dataclasses.dataclass(frozen=True)
class Adaptive(LSTM):
    """Adaptive forget gate: f_t = σ(W_f[h_{t-1}, x_t] + U_f ⊙ C_{t-1} + b_f), U_f diagonal.

    The forget gate sees the cell state it is about to scale (the peephole of Gers,
    Schraudolph & Schmidhuber 2002). `peepholes=True` adds the standard peepholes on i
    (U_i ⊙ C_{t-1}) and o (U_o ⊙ C_t) too.
    """

    peepholes: bool = False

    def _peephole_names(self) -> tuple[str, ...]:
        return ("u_f", "u_i", "u_o") if self.peepholes else ("u_f",)

    def init_extra(self, key, d_in, d_hidden) -> Params:
        """The peepholes: zero, or ~ N(0, weight_std²) with weight_init="normal"."""
        del d_in
        names = self._peephole_names()
        if self.weight_init == "normal":
            return {name: self.weight_std * jax.random.normal(k, (d_hidden,))
                    for name, k in zip(names, jax.random.split(key, len(names)))}
        return {name: jnp.zeros((d_hidden,)) for name in names}

    def peephole_weights(self, params: Params) -> dict[str, Array]:
        return {name: params[name] for name in self._peephole_names()}
