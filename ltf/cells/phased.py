"""Phased LSTM (Neil, Pfeiffer & Liu, NeurIPS 2016): a unit updates only while its clock is open.

Every unit j has a rhythm: a period τ_j > 0, a shift s_j and an open ratio r_on,j ∈ (0, 1). At
the absolute time t of a step (not the gap Δt: the model appends t to the Δt input as its last
column, `uses_times`) the unit is at phase

    φ_t = ((t − s) mod τ) / τ                                   ∈ [0, 1)

and its time gate opens linearly up to the middle of the open window and closes again:

    k_t = 2φ/r_on        φ < r_on/2                     rising
          2 − 2φ/r_on    r_on/2 ≤ φ < r_on              falling (k = 1 at φ = r_on/2)
          α φ            otherwise                      closed, with a leak α in training only

k blends the peephole LSTM's update (c̃_t, h̃_t: `lstm_update` with U_f, U_i, U_o, as
`adaptive` with peepholes=True) with the carry it would replace:

    c_t = k_t ⊙ c̃_t + (1 − k_t) ⊙ c_{t−1},    h_t = k_t ⊙ h̃_t + (1 − k_t) ⊙ h_{t−1}

so a closed unit (k = 0) keeps c and h exactly, and gradients pass it unchanged. With k ≡ 1 the
cell is `adaptive` with peepholes=True (tests/test_cells_phased.py).

k_t depends on t and the rhythm alone, never on the carry: `time_features` computes it for all
T steps at once before the scan, and the steps (and the custom backward pass's reverse steps)
only blend with it; τ, s and r_on get their gradients by autodiff through that one computation.

Parameters beside the LSTM's: log τ (so τ = exp(log τ) > 0 always; the authors' code takes |τ|),
the shift s (unconstrained; only s mod τ matters) and, with `learn_r_on` (default, as the
authors' frequency-task code, which trains τ, s and r_on), logit r_on (r_on = σ(ρ) ∈ (0, 1)
always, where the authors' code takes |r_on|, which can pass 1; σ keeps a gradient at every
value where a clip would zero it). `learn_r_on=False` holds r_on at `r_on_init`.
`time_params="raw"` trains τ and r_on as the authors' code does instead: parameters τ and r_on
themselves, read as |τ| and |r_on| (floored at 1e-6). Adam moves a parameter by about its
learning rate per step whatever its scale, so the two choices learn at different speeds: from
r_on = 0.05, a step of 1e-3 moves the raw r_on by 1e-3 and the logit's by 5e-5; a step moves log
τ by 0.1% of τ and the raw τ by 1e-3 time units. On the frequency task at the paper's budget the
raw form learns faster and scores higher (98.2% against 97.0%, asynchronous; results/README.md);
on PhysioNet it over-fits sooner (0.819 against 0.827 test AUROC).

Initialisation: τ log-uniform in [`period_init_min`, `period_init_max`] per unit, default
[e, e⁶] ≈ [2.7, 403] time units: the frequency task's periods (1 to 100 ms) and windows (15 to
125 ms) lie inside it, so some units tick several times within a window and some less than once
(the authors' frequency-task code draws exp U[1, 3]; their README suggests exp U[1, 5]). s ~ U(0, τ)
(every phase equally likely, so no instant of time goes unwatched), r_on = 0.05, leak α = 1e-3;
the peepholes start at zero as in `adaptive`. `for_evaluation()` sets the leak to 0: the model
calls it when no dropout rng is given, i.e. outside training.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from ltf.cells.base import LSTM, Array, Params, lstm_update
from ltf.cells.classic import Adaptive
from ltf.shapes import lead


TIME_PARAMS = ("log", "raw")  # how τ and r_on are parameterised (Phased.time_params)
RAW_FLOOR = 1e-6  # time_params="raw": |τ| and |r_on| at least this (no division by zero)


def time_gate(phi_BxH: Array, r_on_H: Array, leak: float) -> Array:
    """k_t from the phase φ_t: the open window's rise and fall, α φ while closed."""
    r_on_BxH = lead(r_on_H, phi_BxH)
    ramp_BxH = 2.0 * phi_BxH / r_on_BxH
    return jnp.where(phi_BxH < 0.5 * r_on_BxH, ramp_BxH,  # k = 2φ/r_on,  φ < r_on/2
                     jnp.where(phi_BxH < r_on_BxH, 2.0 - ramp_BxH,  # k = 2 − 2φ/r_on,  φ < r_on
                               leak * phi_BxH))  # k = α φ, closed


@dataclasses.dataclass(frozen=True)
class Phased(LSTM):
    """Phased LSTM: the peephole LSTM's update gated per unit by a learned rhythm k_t of the
    absolute time t (the last column of Δt). See the module doc for the equations.

    Options:
        leak: α, the closed gate's slope in training (0 under `for_evaluation()`).
        r_on_init: the open ratio r_on at init (the paper: 0.05).
        learn_r_on: train r_on (as logit r_on); False holds it at r_on_init.
        period_init_min, period_init_max: the range of τ at init, drawn log-uniformly.
        time_params: "log" (log τ and logit r_on are the parameters) or "raw" (τ and r_on, read
            as |τ| and |r_on|, as the authors' code); see the module doc.
    """

    leak: float = 1e-3
    r_on_init: float = 0.05
    learn_r_on: bool = True
    period_init_min: float = math.e
    period_init_max: float = math.exp(6.0)
    time_params: str = "log"

    reads_h_prev: ClassVar[bool] = True  # h_t = k ⊙ h̃_t + (1 − k) ⊙ h_{t−1}
    uses_times: ClassVar[bool] = True  # φ_t reads the absolute time t

    def __post_init__(self):
        super().__post_init__()
        if self.decay:
            raise ValueError("decay=True does not apply to phased: its Δt input ends in absolute times, "
                             "which GRU-D's decay would read as gaps; the time gate already holds the "
                             "carry between updates. Leave decay=False.")
        if not 0.0 < self.r_on_init < 1.0:
            raise ValueError(f"r_on_init={self.r_on_init}: the open ratio must lie in (0, 1) (the paper: 0.05).")
        if not 0.0 <= self.leak <= 1.0:
            raise ValueError(f"leak={self.leak}: α must lie in [0, 1] (the paper: 1e-3).")
        if self.time_params not in TIME_PARAMS:
            raise ValueError(f"time_params={self.time_params!r}: allowed values are {TIME_PARAMS} "
                             "(log τ and logit r_on, or τ and r_on as the authors' code).")
        if not 0.0 < self.period_init_min <= self.period_init_max:
            raise ValueError(f"period_init_min={self.period_init_min}, period_init_max={self.period_init_max}: "
                             "need 0 < min <= max (τ is drawn log-uniformly between them).")

    def for_evaluation(self) -> "Phased":
        """Outside training the closed gate does not leak (α = 0)."""
        return dataclasses.replace(self, leak=0.0)

    def init_extra(self, key, d_in: int, d_hidden: int) -> Params:
        """u_f, u_i, u_o zero; log τ ~ U[log min, log max]; s ~ U(0, τ); logit r_on_init (or, with
        time_params="raw", τ and r_on_init themselves)."""
        k_tau, k_shift, k_peep = jax.random.split(key, 3)
        log_tau = jax.random.uniform(k_tau, (d_hidden,), minval=math.log(self.period_init_min),
                                     maxval=math.log(self.period_init_max))
        tau = jnp.exp(log_tau)
        r = self.r_on_init
        params = Adaptive(peepholes=True, weight_init=self.weight_init, weight_std=self.weight_std).init_extra(
                k_peep, d_in, d_hidden)
        params["shift"] = tau * jax.random.uniform(k_shift, (d_hidden,))  # s ~ U(0, τ)
        if self.time_params == "raw":
            params["tau"], r_on_name, r_on_value = tau, "r_on", r
        else:
            params["log_tau"], r_on_name, r_on_value = log_tau, "r_on_logit", math.log(r / (1.0 - r))
        if self.learn_r_on:
            # of a set dtype: a weak-typed leaf changes type at the first update, and the step compiles again
            params[r_on_name] = jnp.full((d_hidden,), r_on_value, log_tau.dtype)
        return params

    def peephole_weights(self, params: Params) -> dict[str, Array]:
        return {name: params[name] for name in ("u_f", "u_i", "u_o")}

    def period(self, params: Params) -> Array:
        """τ_H = exp(log τ), or |τ| (floored) with time_params="raw"."""
        if self.time_params == "raw":
            return jnp.maximum(jnp.abs(params["tau"]), RAW_FLOOR)
        return jnp.exp(params["log_tau"])

    def open_ratio(self, params: Params) -> Array:
        """r_on_H = σ(ρ) when learned (|r_on|, floored, with time_params="raw"), else r_on_init."""
        if self.learn_r_on and self.time_params == "raw":
            return jnp.maximum(jnp.abs(params["r_on"]), RAW_FLOOR)
        if self.learn_r_on:
            return jax.nn.sigmoid(params["r_on_logit"])
        return jnp.full(params["shift"].shape, self.r_on_init, params["shift"].dtype)

    def phase(self, params: Params, t_B: Array) -> Array:
        """φ_...xH = ((t − s) mod τ) / τ, in [0, 1), at the absolute times t_... (any leading shape)."""
        tau_H = self.period(params)
        t_x1 = t_B[..., None]
        # mod(t − s, τ) as t − s − nτ with n = floor((t − s)/τ), not XLA's float remainder, a
        # scalar libm call per element (11 ms of the char LM's ~100 ms step). Subtracting nτ
        # before dividing keeps φ as exact as the remainder's for the first periods (φ − floor φ
        # after dividing would round φ to the spacing of (t − s)/τ, which the steep open window,
        # slope 2/r_on, magnifies); the two `where`s mend an n that rounding put one off.
        gap = t_x1 - lead(params["shift"], t_x1)
        tau_x = lead(tau_H, t_x1)
        rest = gap - tau_x * jnp.floor(gap / tau_x)
        rest = jnp.where(rest < 0, rest + tau_x, rest)
        rest = jnp.where(rest >= tau_x, rest - tau_x, rest)
        return rest / tau_x

    def time_gate(self, params: Params, t_B: Array) -> Array:
        """k_...xH at the absolute times t_... (any leading shape)."""
        return time_gate(self.phase(params, t_B), self.open_ratio(params), self.leak)

    def time_features(self, params: Params, dts):
        """k_...xH at every step's absolute time (the last column of Δt), for all steps at once:
        the time gate depends on t and the rhythm alone, so the scan's steps only blend with it."""
        return self.time_gate(params, dts[..., -1])

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK):
        """`dt_BxK` holds the time features: k_BxH (`time_features`)."""
        c_tilde_BxH, h_tilde_BxH = lstm_update(z_BxG, c_prev_BxH, **self.peephole_weights(params))  # c̃_t, h̃_t
        k_BxH = dt_BxK  # k_t at t
        c_BxH = k_BxH * c_tilde_BxH + (1.0 - k_BxH) * c_prev_BxH  # c_t = k ⊙ c̃_t + (1 − k) ⊙ c_{t−1}
        h_BxH = k_BxH * h_tilde_BxH + (1.0 - k_BxH) * h_prev_BxH  # h_t = k ⊙ h̃_t + (1 − k) ⊙ h_{t−1}
        return c_BxH, h_BxH
