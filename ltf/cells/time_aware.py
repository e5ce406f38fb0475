"""Cells that read the time since the previous input: the time-aware gates and T-LSTM."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ltf.cells.base import LSTM, TIME_TRANSFORMS, Array, Params, lstm_update
from ltf.cells.classic import Adaptive
from ltf.shapes import lead


@dataclasses.dataclass(frozen=True)
class TimeAware(LSTM):
    """Δt, the time since the previous input, enters every gate: σ(W[h_{t-1}, x_t, φ(Δt)] + b).

    φ is `time_transform`: "log1p" (default) or "identity". log1p because Δt spans orders of
    magnitude in irregular data (ms to days) and raw Δt saturates the gates; log1p keeps
    Δt = 0 at zero, grows like Δt for small gaps and like log Δt for large ones.
    `adaptive=True` adds U_f ⊙ C_{t-1} to the forget gate, the full form
    f_t = σ(W_f[h_{t-1}, x_t, φ(Δt)] + U_f ⊙ C_{t-1} + b_f) (and `peepholes=True` those on i, o).
    Data without time gives Δt = 1, where φ(Δt) W_Δt is a learned constant.
    """

    time_transform: str = "log1p"
    adaptive: bool = False
    peepholes: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.time_transform not in TIME_TRANSFORMS:
            raise ValueError(
                    f"time_transform={self.time_transform!r}: allowed values are {tuple(TIME_TRANSFORMS)}.")
        if self.peepholes and not self.adaptive:
            raise ValueError("peepholes=True needs adaptive=True for time_aware (the peepholes on i and "
                                              "o extend the adaptive forget gate).")

    def _adaptive_part(self) -> Adaptive | None:
        return Adaptive(peepholes=self.peepholes) if self.adaptive else None

    def init_extra(self, key, d_in, d_hidden) -> Params:
        extra = {"w_dt": jnp.zeros((self.d_time, len(self.gates) * d_hidden))}
        if self.adaptive:
            extra.update(self._adaptive_part().init_extra(key, d_in, d_hidden))
        return extra

    def peephole_weights(self, params: Params) -> dict[str, Array]:
        return self._adaptive_part().peephole_weights(params) if self.adaptive else {}

    def project(self, params: Params, xs, dts) -> Array:
        phi = TIME_TRANSFORMS[self.time_transform]
        z = xs @ params["w_x"] + phi(dts) @ params["w_dt"]
        return z + lead(params["b"], z)


@dataclasses.dataclass(frozen=True)
class TLSTM(LSTM):
    """T-LSTM (Baytas et al., KDD 2017): discount the short-term memory by the elapsed time.

    C^S_{t-1} = tanh(W_d C_{t-1} + b_d)               short-term part of the memory
    C*_{t-1}  = C_{t-1} − C^S_{t-1} + g(Δt) C^S_{t-1},  g(Δt) = 1 / log(e + Δt)
    then the LSTM update from C*_{t-1}. With Δt = 0, g = 1 and T-LSTM is the LSTM. Uses the
    first column of Δt when K > 1.
    """

    def init_extra(self, key, d_in, d_hidden) -> Params:
        del d_in
        return {"w_d": jax.nn.initializers.orthogonal()(key, (d_hidden, d_hidden)),
                        "b_d": jnp.zeros((d_hidden,))}

    @staticmethod
    def elapsed_discount(dts_xK):
        """g(Δt) = 1 / log(e + Δt) from the first column of Δt: ... x 1."""
        return 1.0 / jnp.log(jnp.e + dts_xK[..., :1])

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
        del h_prev_BxH
        c_short = jnp.tanh(c_prev_BxH @ params["w_d"] + lead(params["b_d"], c_prev_BxH))  # C^S_{t-1}
        decay = self.elapsed_discount(dt_BxK)  # g(Δt), B x 1
        c_adjusted = c_prev_BxH - c_short + decay * c_short  # C*_{t-1}
        return lstm_update(z_BxG, c_adjusted)
