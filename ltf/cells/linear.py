"""Gated linear recurrences: cells whose step is linear and diagonal in the state,

    h_t = a_t ⊙ h_{t-1} + b_t,   a_t, b_t from x_t (and Δt_t) alone, never from h_{t-1},

so that T steps can run as one associative scan (`ltf.linear_scan`, which `ltf.rnn.scan_layer`
uses for them). The forget gate a_t is the classic LSTM's f_t with its recurrent weights cut.

rglru — the Real-Gated Linear Recurrent Unit of Griffin (De et al. 2024):

    u_t = x_t W_u + b_u                    the layer's input, projected to H
    r_t = σ(x_t W_r + b_r)                 recurrence gate
    i_t = σ(x_t W_i + b_i)                 input gate
    log a_t = −c r_t softplus(Λ),  c = 8   i.e. a_t = a^{c r_t}, a = exp(−softplus(Λ)) ∈ (0, 1)
    h_t = a_t ⊙ h_{t-1} + √(1 − a_t²) ⊙ (i_t ⊙ u_t)

As in the reference implementation (google-deepmind/recurrentgemma): Λ is initialised on a ring,
a² ~ U[0.9², 0.999²] (uniform in the ring's area; `ring_min`, `ring_max` move it); the gate
biases start at zero, W_x LeCun normal; √(1 − a_t²) is computed as √(−expm1(2 log a_t)) and its
derivative is bounded by 1000 (the square root's gradient at x is taken at max(x, 1/(4·1000²))),
finite where a_t → 1; and at a document start (ltf's reset) the carry is dropped and the
multiplier is 1, h_t = i_t ⊙ u_t, so a new sequence's first input enters whole. A window that
starts from `state=None` without a reset flag scales its first input by √(1 − a²) like any
other step (the layer cannot tell a zero carry from a carried one): flag resets[:, 0] = 1 for
Griffin's first step.
Where ltf's cell differs from Griffin's recurrent block: Griffin feeds the RG-LRU the output of a
Conv1D over a linear branch of width H and forms r_t, i_t from it by block-diagonal maps; here
u_t, r_t and i_t are dense maps of the layer's input x_t (d_in ≠ H), one D x 3H matmul as the LSTM
cells project their gates. The Conv1D, the GeLU gating branch and the output projection belong to
the hybrid block, not to the cell.

linear_decay — time-aware linear forgetting (issue 18: Mamba's selective step, literal for
irregular series):

    u_t = x_t W_u + b_u                    where the state relaxes to
    λ_t = softplus(x_t W_λ + b_λ)          the rate, per unit and per step
    a_t = exp(−Δt_t λ_t)                   Δt_t: the real time since the previous input
    h_t = a_t ⊙ h_{t-1} + (1 − a_t) ⊙ u_t

the zero-order hold of the leaky integrator dh/dτ = λ_t (u_t − h) over the gap Δt_t (u_t, λ_t
held): Mamba's dh/dτ = A h + B x with A = −λ_t, B x = λ_t u_t, whose learned step Δ is here the
data's own gap, and whose learned softplus is the rate. Δt_t is the first column of the layer's
Δt input, untransformed (no log1p: the decay must compose over gaps, exp(−λ(Δ₁ + Δ₂)) =
exp(−λΔ₁) exp(−λΔ₂)); text has Δt = 1, where a_t = exp(−λ_t) is the plain selective decay. With
several Δt columns (physionet's per-variable gaps) it reads the first: give it the event gaps.
Special cases: Δt = 0 leaves h unchanged (the input, too, enters with weight 1 − a = 0; so does
the first input of a sequence whose data give it Δt = 0); Δt → ∞ gives h_t = u_t; constant λ and
Δt give an exponential moving average with weight 1 − e^{−λΔt}. At a reset the carry is zeroed,
as for every ltf cell: h_t = (1 − a_t) ⊙ u_t. b_λ: see `LinearDecay.init_extra`.

Both cells keep ltf's carry `LSTMState(c, h)` with c = h (one state vector, as the GRU); masks
and resets treat c and h alike, and a given initial c is never read. `project` is the affine
x W_x + b (so per-vocabulary projection works); `coefficients` turns z_t (and Δt_t) into
(a_t, b_t) elementwise; `step` (the base class's, which skips the recurrent matmul for `linear`
cells) applies one step. There is no W_h: `recurrent_weight` fails, so the matmul scans of
`ltf.fast_rnn` (and its custom backward pass) refuse these cells.
`form` chooses how `ltf.linear_scan` runs them: "sequential" (lax.scan), "parallel"
(associative scan) or "auto" (per backend, see `ltf.linear_scan.resolve_form`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp

from ltf.cells.base import LSTM, Array, Params, split_gates
from ltf.shapes import lead

FORMS = ("auto", "sequential", "parallel")
C = 8.0  # Griffin's c: log a_t = −c r_t softplus(Λ)
RING = (0.9, 0.999)  # Λ's initial a = exp(−softplus(Λ)): a² ~ U[0.9², 0.999²]
MAX_SQRT_GRADIENT = 1000.0  # recurrentgemma's bound on d√x/dx in √(1 − a_t²)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bounded_gradient(x, max_gradient: float):
    """√x whose derivative 1/(2√x) is bounded by `max_gradient` (finite at x = 0)."""
    del max_gradient
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
    return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
    # 1/(2√x) <= max_gradient  <=>  x >= 1/(4 max_gradient²)
    floor = jnp.maximum(x, 1.0 / (4.0 * max_gradient ** 2))
    return (g * 0.5 / jnp.sqrt(floor),)


sqrt_bounded_gradient.defvjp(_sqrt_fwd, _sqrt_bwd)


def inverse_softplus(y):
    """softplus⁻¹(y) = log(eʸ − 1), y > 0."""
    return jnp.log(jnp.expm1(y))


@dataclasses.dataclass(frozen=True)
class LinearCell(LSTM):
    """The shared part: options, init, the step as h_t = a_t ⊙ h_{t-1} + b_t; a cell adds
    `coefficients` (and `init_extra` for parameters besides W_x, b)."""

    form: str = "auto"  # how ltf.linear_scan runs it: auto | sequential | parallel

    name: ClassVar[str] = "linear"  # the registry's name, for messages
    linear: ClassVar[bool] = True
    reads_h_prev: ClassVar[bool] = True  # gate_update forms a_t ⊙ h' itself

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"form={self.form!r}: allowed values are {FORMS}.")
        self.refuse_weight_init(self.name)
        if self.forget_init != "constant" or self.forget_bias != 1.0:
            raise ValueError(f"{self.name} has no LSTM forget gate: forget_init/forget_bias do not apply (its "
                             "decay a_t has an initialisation of its own); leave them at their defaults.")
        if self.decay:
            raise ValueError(f"decay=True does not apply to {self.name}: GRU-D's decay of the carry before the "
                             "step is a recurrent matmul cell's option; this cell's a_t is its decay.")
        if self.d_time < 1:
            raise ValueError(f"d_time={self.d_time}: the width of the Δt input must be >= 1.")

    def init(self, key, d_in: int, d_hidden: int) -> Params:
        """W_x (D x G·H) LeCun normal, b (G·H) from `init_bias`, and `init_extra`'s parameters."""
        if d_in < 1 or d_hidden < 1:
            raise ValueError(f"d_in={d_in}, d_hidden={d_hidden}: sizes must be positive.")
        k_x, k_b, k_extra = jax.random.split(key, 3)
        params = {"w_x": jax.nn.initializers.lecun_normal()(k_x, (d_in, len(self.gates) * d_hidden)),
                  "b": self.init_bias(k_b, d_hidden)}
        params.update(self.init_extra(k_extra, d_in, d_hidden))
        return params

    def hidden_size(self, params: Params) -> int:
        return params["b"].shape[0] // len(self.gates)

    def coefficients(self, params: Params, zs, dts, resets=None) -> tuple[Array, Array]:
        """(a_...xH, b_...xH) of h_t = a_t ⊙ h_{t-1} + b_t from zs_...xG = `project`(x, Δt) and
        dts_...xK, elementwise over any leading shape; resets_... (1 where a sequence starts) for
        the cells that treat a start apart (rglru); the caller zeroes the carry there."""
        raise NotImplementedError

    def recurrent_weight(self, params: Params) -> Array:
        raise NotImplementedError(
                f"{self.name} is a linear recurrence (h_t = a_t ⊙ h_{{t-1}} + b_t, a_t and b_t "
                "from the inputs): it has no recurrent weight W_h, so ltf.fast_rnn's matmul scans do not "
                "apply; ltf.rnn.scan_layer runs it with ltf.linear_scan.")

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """(h_t, h_t): c is h."""
        del c_prev_BxH
        a_BxH, b_BxH = self.coefficients(params, z_BxG, dt_BxK)
        h_BxH = a_BxH * h_prev_BxH + b_BxH  # h_t = a_t ⊙ h_{t-1} + b_t
        return h_BxH, h_BxH


@dataclasses.dataclass(frozen=True)
class RGLRU(LinearCell):
    """Griffin's RG-LRU (De et al. 2024); see the module docstring for the equations, the
    initialisation and where it differs from Griffin's block."""

    # The ring Λ starts on: a² ~ U[ring_min², ring_max²] (Griffin's 0.9, 0.999). With r_t near its
    # initial 1/2, a_t = a^{c/2} holds a unit's state for about −2/(c log a) steps: 250 at a =
    # 0.999. A longer lag wants ring_max nearer 1 (chrono initialisation's argument): 1 − 2/(c T)
    # for T steps, e.g. 0.99975 for T = 1,000.
    ring_min: float = RING[0]
    ring_max: float = RING[1]

    name: ClassVar[str] = "rglru"
    gates: ClassVar[tuple[str, ...]] = ("u", "r", "i")  # z's blocks: x W + b of u_t, r_t, i_t

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.ring_min <= self.ring_max < 1.0:
            raise ValueError(f"ring_min={self.ring_min}, ring_max={self.ring_max}: need 0 < ring_min <= ring_max < 1 "
                             f"(the initial a = exp(−softplus(Λ)); Griffin's ring is {RING}).")

    def init_extra(self, key, d_in: int, d_hidden: int) -> Params:
        """Λ (H) with a = exp(−softplus(Λ)) on the ring a² ~ U[ring_min², ring_max²]."""
        del d_in
        lo, hi = self.ring_min, self.ring_max
        a_squared = jax.random.uniform(key, (d_hidden,), minval=lo ** 2, maxval=hi ** 2)
        return {"a_param": inverse_softplus(-0.5 * jnp.log(a_squared))}  # softplus(Λ) = −log a

    def coefficients(self, params: Params, zs, dts, resets=None) -> tuple[Array, Array]:
        del dts
        z_u, z_r, z_i = split_gates(zs, 3)  # z_u = u_t = x_t W_u + b_u
        r = jax.nn.sigmoid(z_r)  # r_t = σ(x_t W_r + b_r)
        i = jax.nn.sigmoid(z_i)  # i_t = σ(x_t W_i + b_i)
        log_a = -C * r * lead(jax.nn.softplus(params["a_param"]), r)  # log a_t = −c r_t softplus(Λ)
        a = jnp.exp(log_a)  # a_t = a^{c r_t}
        multiplier = sqrt_bounded_gradient(-jnp.expm1(2.0 * log_a), MAX_SQRT_GRADIENT)  # √(1 − a_t²)
        if resets is not None:  # a document's first step: its input enters whole (recurrentgemma)
            multiplier = jnp.where(resets[..., None] > 0, jnp.ones_like(multiplier), multiplier)
        return a, multiplier * (i * z_u)  # b_t = √(1 − a_t²) ⊙ (i_t ⊙ u_t)


@dataclasses.dataclass(frozen=True)
class LinearDecay(LinearCell):
    """Time-aware linear forgetting: the state relaxes towards u_t at a learned rate λ_t over the
    real gap Δt_t (the first column of Δt); see the module docstring."""

    timescale_min: float = 1.0  # b_λ: initial time scales 1/λ ~ log U[min, max], in Δt's unit
    timescale_max: float = 1000.0

    name: ClassVar[str] = "linear_decay"
    gates: ClassVar[tuple[str, ...]] = ("u", "lambda")  # z's blocks: x W + b of u_t, λ_t's pre-activation

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.timescale_min <= self.timescale_max:
            raise ValueError(f"timescale_min={self.timescale_min}, timescale_max={self.timescale_max}: "
                             "need 0 < timescale_min <= timescale_max (the initial 1/λ, in Δt's unit).")

    def init_bias(self, key, d_hidden: int) -> Array:
        """b_u = 0; b_λ = softplus⁻¹(1/τ), τ ~ log U[timescale_min, timescale_max] per unit.

        Why: each unit then forgets at its own time scale, spread evenly over the decades from
        one unit of Δt (characters, hours) to a thousand, so that at initialisation some units
        follow the last input and others hold what came long before (chrono initialisation's
        argument, Tallec & Ollivier 2018; Mamba draws its step Δ log-uniformly for the same reason).
        A single constant would start every unit at one scale and leave the rest to be learned."""
        log_tau = jax.random.uniform(key, (d_hidden,), minval=jnp.log(self.timescale_min),
                                     maxval=jnp.log(self.timescale_max))
        return jnp.concatenate([jnp.zeros((d_hidden,)), inverse_softplus(jnp.exp(-log_tau))])

    def coefficients(self, params: Params, zs, dts, resets=None) -> tuple[Array, Array]:
        del params, resets  # a reset zeroes the carry only: h_t = (1 − a_t) ⊙ u_t
        z_u, z_lambda = split_gates(zs, 2)  # z_u = u_t = x_t W_u + b_u
        rate = jax.nn.softplus(z_lambda)  # λ_t = softplus(x_t W_λ + b_λ)
        decay_exponent = -dts[..., :1].astype(rate.dtype) * rate  # −Δt_t λ_t
        a = jnp.exp(decay_exponent)  # a_t = exp(−Δt_t λ_t)
        return a, -jnp.expm1(decay_exponent) * z_u  # b_t = (1 − a_t) ⊙ u_t, exact 0 at Δt = 0
