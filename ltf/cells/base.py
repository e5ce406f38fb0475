"""The cell protocol and the forget-gate LSTM that every other cell builds on.

Every cell is a small frozen dataclass of static options with pure methods over a plain dict
of parameters:

    params     = cell.init(key, d_in, d_hidden)                 # plain dict of arrays
    feats      = cell.time_features(params, dts_...xK)          # what the steps read of time
    zs         = cell.project(params, xs_...xD, feats)           # what does not depend on the carry
    carry, h_t = cell.step(params, carry, StepInputs(z_t, dt_t))  # dt_t: the raw Δt_t

What the steps read of time is `time_features`, computed for all steps at once before the scan
(the identity for most cells: the gaps Δt themselves; Phased LSTM's time gate k_t, a function of
the absolute time and the parameters alone). `project`, `before_step` and `gate_update` read
those features; `step` takes the raw Δt and computes them itself.

`step` is three parts, which `ltf.fast_rnn` runs (and differentiates) separately:

    C', h' = cell.before_step(params, C_{t-1}, h_{t-1}, Δt_t)    # the carry's decay over the gap
    z_t    = zs_t + h' @ cell.recurrent_weight(params)           # the one recurrent matmul, H x G
    C_t, h_t = cell.gate_update(params, z_t, C', h', Δt_t)      # the elementwise gate math

`before_step` is the identity unless the cell decays its carry (`changes_carry`: GRU-D's decay
option, the continuous-time LSTM), and `gate_update` reads h' beyond z_t only when the cell
says so (`reads_h_prev`: Phased LSTM's blend, the GRU). Both flags are static, so the LSTM pays
nothing for them. Gate blocks of z are laid out in `cell.gates` order.

The carry is `LSTMState(c, h)` for every cell; `c` may be wider than H where a cell carries more
than one vector (the continuous-time LSTM carries C, its target C̄, the decay rate and o).
Where things are: this module (the protocol, `lstm`), `classic.py` (`lstm_noforget`,
`adaptive`), `time_aware.py` (`time_aware`, `tlstm`), `decay.py` (GRU-D's decay), one module
per further cell, and `registry.py` (`CELLS`, `make_cell`), where a new cell is registered.

The cells of `linear.py` (`rglru`, `linear_decay`) keep this protocol but have no recurrent
matmul (`linear`): their step is h_t = a_t ⊙ h_{t-1} + b_t with a_t, b_t from z_t and Δt_t alone
(`coefficients`), which `ltf.linear_scan` runs over all T steps at once. `mlstm.py`'s cell
(`matrix_memory`) has none either: its carry packs a d x d memory per head, which
`ltf.mlstm_scan` runs step by step or chunkwise (attention-like matmuls within a chunk).

Parameters that a variant adds over `lstm` (peepholes U, Δt weights W_Δt) start at zero, so
every arm starts from the same function and differs only in what it can learn.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from ltf.cells import decay as decay_lib
from ltf.shapes import lead

Array = jax.Array
Params = dict[str, Array]

FORGET_INITS = ("constant", "chrono")
WEIGHT_INITS = ("default", "normal")  # LSTM.weight_init
TIME_TRANSFORMS = {"log1p": jnp.log1p, "identity": lambda dt: dt}


class LSTMState(NamedTuple):
    c: Array  # c_BxH, the cell state C_t
    h: Array  # h_BxH, the output h_t


class StepInputs(NamedTuple):
    z: Array  # z_BxG: the h-independent gate pre-activations from `project`
    dt: Array  # dt_BxK: time since the previous input (ones for data without time)


def split_gates(z, n):
    return jnp.split(z, n, axis=-1)


def resolve_form(form: str, forms: tuple[str, ...], cpu_form: str, accelerator_form: str,
                 backend: str | None = None) -> str:
    """The form a cell's `form` option runs in (the cells with several, `ltf.linear_scan` and
    `ltf.mlstm_scan`): `form` itself, or for "auto" the default of `backend` (JAX's default when None)."""
    if form not in forms:
        raise ValueError(f"form={form!r}: allowed values are {forms}.")
    if form != "auto":
        return form
    return cpu_form if (backend or jax.default_backend()) == "cpu" else accelerator_form


@dataclasses.dataclass(frozen=True)
class LSTM:
    """LSTM with forget gate (Gers, Schmidhuber & Cummins 2000).

    i, f, o = σ(W[h_{t-1}, x_t] + b),  g = tanh(W_g[h_{t-1}, x_t] + b_g),
    C_t = f ⊙ C_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(C_t).

    Options:
        forget_init: "constant" (b_f = forget_bias; 1.0 after Jozefowicz et al. 2015) or "chrono"
            (Tallec & Ollivier 2018: b_f ~ log U[1, chrono_t_max − 1], b_i = −b_f).
        d_time: width K of the Δt input (only the time-aware cells use it).
        decay: GRU-D's hidden decay (Che et al. 2018) before every step: the carried C and h are
            scaled by γ_t = exp(−max(0, δ_t W_γ + b_γ)), δ_t the K columns of Δt (`ltf.cells.decay`).
        weight_init: "default" (W_x LeCun normal, W_h orthogonal per gate block, peepholes zero)
            or "normal" (every one of them ~ N(0, weight_std²): Lasagne's default, which the
            Phased LSTM authors' code trained with, at weight_std = 0.1).
    """

    forget_init: str = "constant"
    forget_bias: float = 1.0
    chrono_t_max: float | None = None
    d_time: int = 1
    decay: bool = False
    weight_init: str = "default"
    weight_std: float = 0.1

    gates: ClassVar[tuple[str, ...]] = ("i", "f", "g", "o")
    # gate_update reads h' itself, not only through z_t (Phased LSTM's blend, the GRU's update)
    reads_h_prev: ClassVar[bool] = False
    # the cell reads the absolute time of each step: the model appends it to the Δt input as its
    # last column (so d_time counts it), from the batch's `times` or the window's own clock
    uses_times: ClassVar[bool] = False
    # the recurrence is linear and diagonal in the state, h_t = a_t ⊙ h_{t-1} + b_t with a_t, b_t
    # from the inputs alone (`ltf.cells.linear`): `ltf.linear_scan` runs it, not the matmul scans
    linear: ClassVar[bool] = False
    # the carry is a matrix memory per head, updated with gates from the inputs alone and no
    # recurrent matmul (`ltf.cells.mlstm`): `ltf.mlstm_scan` runs it, sequentially or chunkwise
    matrix_memory: ClassVar[bool] = False

    @property
    def has_recurrent_matmul(self) -> bool:
        """The step adds h' W_h to z_t (every cell but the linear and matrix-memory ones)."""
        return not (self.linear or self.matrix_memory)

    @property
    def changes_carry(self) -> bool:
        """before_step is not the identity: the custom backward pass differentiates it per step."""
        return self.decay

    def __post_init__(self):
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init={self.weight_init!r}: allowed values are {WEIGHT_INITS}.")
        if not self.weight_std > 0:
            raise ValueError(f"weight_std={self.weight_std}: the weights' standard deviation must be > 0.")
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
        """W_x (D x G·H), W_h (H x G·H) from `gate_weights`, b (G·H)."""
        if d_in < 1 or d_hidden < 1:
            raise ValueError(f"d_in={d_in}, d_hidden={d_hidden}: sizes must be positive.")
        k_x, k_h, k_b, k_extra = jax.random.split(key, 4)
        w_x, w_h = self.gate_weights(k_x, k_h, d_in, d_hidden, len(self.gates))
        params = {"w_x": w_x, "w_h": w_h, "b": self.init_bias(k_b, d_hidden)}
        params.update(self.init_extra(k_extra, d_in, d_hidden))
        if self.decay:
            params.update(decay_lib.init_hidden_decay(jax.random.fold_in(k_extra, 1), self.d_time, d_hidden))
        return params

    def refuse_weight_init(self, cell_name: str) -> None:
        """For a cell without W_h (`has_recurrent_matmul` False), whose input weights keep their own
        initialisation: weight_init="normal" would change none of them, so it is an error."""
        if self.weight_init != "default":
            raise ValueError(f"weight_init={self.weight_init!r} does not apply to {cell_name}: it has no W_h and "
                             "its input weights keep their own initialisation; leave weight_init at 'default'.")

    def gate_weights(self, k_x, k_h, d_in: int, d_hidden: int, n_blocks: int) -> tuple[Array, Array]:
        """W_x (D x n·H) LeCun normal from k_x and W_h (H x n·H) orthogonal per block from k_h;
        with weight_init="normal" every entry of both ~ N(0, weight_std²)."""
        if self.weight_init == "normal":
            return (self.weight_std * jax.random.normal(k_x, (d_in, n_blocks * d_hidden)),
                    self.weight_std * jax.random.normal(k_h, (d_hidden, n_blocks * d_hidden)))
        orthogonal = jax.nn.initializers.orthogonal()
        return (jax.nn.initializers.lecun_normal()(k_x, (d_in, n_blocks * d_hidden)),
                jnp.concatenate([orthogonal(k, (d_hidden, d_hidden)) for k in jax.random.split(k_h, n_blocks)],
                                axis=1))

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

    def for_evaluation(self) -> "LSTM":
        """The cell as it runs outside training (the model calls this when no dropout rng is
        given): itself, unless the cell behaves differently in training (Phased LSTM's leak)."""
        return self

    def hidden_size(self, params: Params) -> int:
        """H, the width of h, read from the parameters (every cell answers it)."""
        return params["w_h"].shape[0]

    def initial_state(self, batch_size: int, d_hidden: int, dtype=jnp.float32) -> LSTMState:
        zeros = jnp.zeros((batch_size, d_hidden), dtype)
        return LSTMState(c=zeros, h=zeros)

    # -- the h-independent part, for all steps at once -----------------------------------

    def time_features(self, params: Params, dts):
        """What the steps read of time, for any leading shape: dts_...xK (the model's Δt input,
        with the absolute time as its last column for a cell that `uses_times`) -> ..._xK'. The
        identity here. A cell whose per-step time features depend on the parameters and the
        times alone computes them here, for all steps at once outside the scan, so that the
        scan's steps (and the custom backward pass's reverse steps) do not; their gradient
        then flows by ordinary autodiff through the cotangent of the scan's Δt input."""
        del params
        return dts

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
        """One step from the raw Δt_t (`inputs.dt`, dt_BxK): the time features are computed here."""
        c, h = carry
        dt = self.time_features(params, inputs.dt)
        if self.changes_carry:
            c, h = self.before_step(params, c, h, dt)
        z = inputs.z  # x_t W_x + b: all that the linear cells and mlstm's gates read
        if self.has_recurrent_matmul:
            z = z + h @ self.recurrent_weight(params)  # the one recurrent matmul, H x G·H
        c, h = self.gate_update(params, z, c, h, dt)
        return LSTMState(c, h), h

    def recurrent_weight(self, params: Params) -> Array:
        """W_h (H x G·H), the matrix of the step's one recurrent matmul."""
        return params["w_h"]

    def before_step(self, params: Params, c_prev, h_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """The carry as the step sees it after the gap Δt_t: with `decay`, GRU-D's
        C' = γ_t ⊙ C_{t-1}, h' = γ_t ⊙ h_{t-1}, γ_t = exp(−max(0, δ_t W_γ + b_γ)); else unchanged."""
        if not self.decay:
            return c_prev, h_prev_BxH
        gamma_BxH = decay_lib.hidden_decay(params, dt_BxK)
        return gamma_BxH * c_prev, gamma_BxH * h_prev_BxH

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """(C_t, h_t) from the full pre-activations z_t = x_t W_x + h' W_h + b (+ φ(Δt) W_Δt) and
        the carry (C', h') after `before_step`.

        Everything of the step but the recurrent matmul: what a custom backward pass
        differentiates per step, while it computes dW_h for all steps at once.
        """
        del h_prev_BxH, dt_BxK
        return lstm_update(z_BxG, c_prev_BxH, **self.peephole_weights(params))


def lstm_update(z_BxG: Array, c_prev_BxH: Array, u_f=None, u_i=None, u_o=None):
    """The gate math of the forget-gate LSTM, with the diagonal peepholes given (H each).

    U_f ⊙ C_{t-1} enters f (the adaptive forget gate), U_i ⊙ C_{t-1} enters i and U_o ⊙ C_t
    enters o (Gers, Schraudolph & Schmidhuber 2002). Returns (C_t, h_t).
    """
    z_i, z_f, z_g, z_o = split_gates(z_BxG, 4)
    if u_f is not None:
        z_f = z_f + lead(u_f, c_prev_BxH) * c_prev_BxH  # f_t = σ(W_f[h_{t-1}, x_t] + U_f ⊙ C_{t-1} + b_f)
    if u_i is not None:
        z_i = z_i + lead(u_i, c_prev_BxH) * c_prev_BxH  # i_t = σ(W_i[h_{t-1}, x_t] + U_i ⊙ C_{t-1} + b_i)
    c = jax.nn.sigmoid(z_f) * c_prev_BxH + jax.nn.sigmoid(z_i) * jnp.tanh(z_g)  # C_t = f⊙C_{t-1} + i⊙g
    if u_o is not None:
        z_o = z_o + lead(u_o, c) * c  # o_t = σ(W_o[h_{t-1}, x_t] + U_o ⊙ C_t + b_o)
    h = jax.nn.sigmoid(z_o) * jnp.tanh(c)  # h_t = o ⊙ tanh(C_t)
    return c, h
