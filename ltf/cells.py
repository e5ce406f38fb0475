"""Forgetting cells: one recurrent step each, pure functions over plain parameter pytrees.

Every cell is a small frozen dataclass of static options with three pure methods:

    params = cell.init(key, d_in, d_hidden)                  # plain dict of arrays
    zs     = cell.project(params, xs_...xD, dts_...xK)        # what does not depend on h_{t-1}
    carry, h_t = cell.step(params, carry, StepInputs(z_t, dt_t))

`project` computes x_t W_x + φ(Δt) W_Δt + b for all steps at once (one large matmul outside
the scan, see `ltf.rnn`); `step` does the one fused recurrent matmul h_{t-1} W_h (H x G·H)
and the elementwise gate math. Gate blocks are laid out in `cell.gates` order.

The carry is `LSTMState(c, h)` for every cell. The registry `CELLS` maps a name to its
class; `make_cell(name, **options)` builds one and validates the options.

Parameters that a variant adds over `lstm` (peepholes U, Δt weights W_Δt) start at zero, so
every arm starts from the same function and differs only in what it can learn.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ltf.shapes import lead

Array = jax.Array
Params = dict[str, Array]

FORGET_INITS = ("constant", "chrono")
TIME_TRANSFORMS = {"log1p": jnp.log1p, "identity": lambda dt: dt}


class LSTMState(NamedTuple):
    c: Array  # c_BxH, the cell state C_t
    h: Array  # h_BxH, the output h_t


class StepInputs(NamedTuple):
    z: Array  # z_BxG: the h-independent gate pre-activations from `project`
    dt: Array  # dt_BxK: time since the previous input (ones for data without time)


def _split_gates(z, n):
    return jnp.split(z, n, axis=-1)


@dataclasses.dataclass(frozen=True)
class LSTM:
    """LSTM with forget gate (Gers, Schmidhuber & Cummins 2000).

    i, f, o = σ(W[h_{t-1}, x_t] + b),  g = tanh(W_g[h_{t-1}, x_t] + b_g),
    C_t = f ⊙ C_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(C_t).

    Options:
        forget_init: "constant" (b_f = forget_bias; 1.0 after Jozefowicz et al. 2015) or "chrono"
            (Tallec & Ollivier 2018: b_f ~ log U[1, chrono_t_max − 1], b_i = −b_f).
        d_time: width K of the Δt input (only the time-aware cells use it).
    """

    forget_init: str = "constant"
    forget_bias: float = 1.0
    chrono_t_max: float | None = None
    d_time: int = 1

    gates: ClassVar[tuple[str, ...]] = ("i", "f", "g", "o")

    def __post_init__(self):
        if "f" not in self.gates:
            return
        if self.forget_init not in FORGET_INITS:
            raise ValueError(f"forget_init={self.forget_init!r}: allowed values are {FORGET_INITS}.")
        if self.forget_init == "chrono" and (self.chrono_t_max is None or self.chrono_t_max <= 2):
            raise ValueError(
                    f"chrono_t_max={self.chrono_t_max!r}: chrono initialisation draws b_f ~ log U[1, T_max − 1] "
                    "and needs T_max > 2, the longest dependency expected (for example the BPTT length).")
        if self.d_time < 1:
            raise ValueError(f"d_time={self.d_time}: the width of the Δt input must be >= 1.")

    # -- parameters ------------------------------------------------------------------------

    def init(self, key, d_in: int, d_hidden: int) -> Params:
        """W_x (D x G·H) LeCun normal, W_h (H x G·H) orthogonal per gate block, b (G·H)."""
        if d_in < 1 or d_hidden < 1:
            raise ValueError(f"d_in={d_in}, d_hidden={d_hidden}: sizes must be positive.")
        k_x, k_h, k_b, k_extra = jax.random.split(key, 4)
        n = len(self.gates)
        w_h_blocks = jax.random.split(k_h, n)
        orthogonal = jax.nn.initializers.orthogonal()
        params = {
                "w_x": jax.nn.initializers.lecun_normal()(k_x, (d_in, n * d_hidden)),
                "w_h": jnp.concatenate([orthogonal(k, (d_hidden, d_hidden)) for k in w_h_blocks], axis=1),
                "b": self.init_bias(k_b, d_hidden),
        }
        params.update(self.init_extra(k_extra, d_in, d_hidden))
        return params

    def init_extra(self, key, d_in: int, d_hidden: int) -> Params:
        """Parameters a variant adds over the gate weights; none for the plain LSTM."""
        del key, d_in, d_hidden
        return {}

    def init_bias(self, key, d_hidden: int) -> Array:
        b = {name: jnp.zeros((d_hidden,)) for name in self.gates}
        if "f" in self.gates:
            if self.forget_init == "constant":
                b["f"] = jnp.full((d_hidden,), self.forget_bias)
            else:  # chrono: b_f ~ log U[1, T_max − 1], b_i = −b_f
                u = jax.random.uniform(key, (d_hidden,), minval=1.0, maxval=self.chrono_t_max - 1.0)
                b["f"] = jnp.log(u)
                b["i"] = -b["f"]
        return jnp.concatenate([b[name] for name in self.gates])

    def initial_state(self, batch_size: int, d_hidden: int, dtype=jnp.float32) -> LSTMState:
        zeros = jnp.zeros((batch_size, d_hidden), dtype)
        return LSTMState(c=zeros, h=zeros)

    # -- the h-independent part, for all steps at once -----------------------------------

    def project(self, params: Params, xs, dts) -> Array:
        """z = x W_x + b for any leading shape: xs_...xD, dts_...xK -> z_...xG."""
        del dts
        z = xs @ params["w_x"]
        return z + lead(params["b"], z)

    # -- one step --------------------------------------------------------------------------

    def peephole_weights(self, params: Params) -> dict[str, Array]:
        """The diagonal peephole weights this cell uses, by name (u_f, u_i, u_o); none here."""
        del params
        return {}

    def step(self, params: Params, carry: LSTMState, inputs: StepInputs):
        z = inputs.z + carry.h @ params["w_h"]  # the one recurrent matmul, H x G·H
        c, h = self.gate_update(params, z, carry.c, inputs.dt)
        return LSTMState(c, h), h

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """(C_t, h_t) from the full pre-activations z_t = x_t W_x + h_{t-1} W_h + b (+ φ(Δt) W_Δt).

        Everything of the step but the W_h matmul: what a custom backward pass differentiates
        per step, while it computes dW_h for all steps at once.
        """
        del dt_BxK
        return _lstm_update(z_BxG, c_prev_BxH, **self.peephole_weights(params))


def _lstm_update(z_BxG: Array, c_prev_BxH: Array, u_f=None, u_i=None, u_o=None):
    """The gate math of the forget-gate LSTM, with the diagonal peepholes given (H each).

    U_f ⊙ C_{t-1} enters f (the adaptive forget gate), U_i ⊙ C_{t-1} enters i and U_o ⊙ C_t
    enters o (Gers, Schraudolph & Schmidhuber 2002). Returns (C_t, h_t).
    """
    z_i, z_f, z_g, z_o = _split_gates(z_BxG, 4)
    if u_f is not None:
        z_f = z_f + lead(u_f, c_prev_BxH) * c_prev_BxH  # f_t = σ(W_f[h_{t-1}, x_t] + U_f ⊙ C_{t-1} + b_f)
    if u_i is not None:
        z_i = z_i + lead(u_i, c_prev_BxH) * c_prev_BxH  # i_t = σ(W_i[h_{t-1}, x_t] + U_i ⊙ C_{t-1} + b_i)
    c = jax.nn.sigmoid(z_f) * c_prev_BxH + jax.nn.sigmoid(z_i) * jnp.tanh(z_g)  # C_t = f⊙C_{t-1} + i⊙g
    if u_o is not None:
        z_o = z_o + lead(u_o, c) * c  # o_t = σ(W_o[h_{t-1}, x_t] + U_o ⊙ C_t + b_o)
    h = jax.nn.sigmoid(z_o) * jnp.tanh(c)  # h_t = o ⊙ tanh(C_t)
    return c, h


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

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, dt_BxK):
        del params, dt_BxK
        z_i, z_g, z_o = _split_gates(z_BxG, 3)
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
        del key, d_in
        return {name: jnp.zeros((d_hidden,)) for name in self._peephole_names()}

    def peephole_weights(self, params: Params) -> dict[str, Array]:
        return {name: params[name] for name in self._peephole_names()}


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

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, dt_BxK):
        c_short = jnp.tanh(c_prev_BxH @ params["w_d"] + lead(params["b_d"], c_prev_BxH))  # C^S_{t-1}
        decay = 1.0 / jnp.log(jnp.e + dt_BxK[:, :1])  # g(Δt), B x 1
        c_adjusted = c_prev_BxH - c_short + decay * c_short  # C*_{t-1}
        return _lstm_update(z_BxG, c_adjusted)


CELLS: dict[str, type[LSTM]] = {
        "lstm": LSTM,
        "lstm_noforget": LSTMNoForget,
        "adaptive": Adaptive,
        "time_aware": TimeAware,
        "tlstm": TLSTM,
}


def make_cell(name: str, **options: Any) -> LSTM:
    """Builds the cell `name` with its options; errors name the allowed names and options."""
    if name not in CELLS:
        raise ValueError(f"cell={name!r}: unknown cell; allowed values are {tuple(CELLS)}.")
    cls = CELLS[name]
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"cell options {unknown} do not apply to cell={name!r}; "
                                          f"its options are {sorted(allowed)}.")
    return cls(**options)


def has_forget_gate(cell: LSTM) -> bool:
    return "f" in cell.gates


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
