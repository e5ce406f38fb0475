"""The forget-gate LSTM's recurrence as one compiled CPU kernel (`ltf/kernels/lstm_cpu.cc`),
forward and backward, called through `jax.ffi`: with its peepholes, GRU-D's decay before the step,
Phased LSTM's time gate after it, or T-LSTM's discounted short-term memory. The continuous-time
LSTM has a kernel of its own (`ltf/kernels/ctlstm_cpu.cc`, `ltf.ctlstm_kernel`), built into the
same library; `cell_recurrence` runs whichever is the cell's.

    final, hs_TxBxH = recurrence(w_h_HxG, b_G, zs_TxBxG, masks_TxB, resets_TxB, state0, peepholes,
                                 decay_TxBxH=None, blend_TxBxH=None, short_term=None)
    final, hs_TxBxH = cell_recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0,
                                      bias_in_step=...)

The same function and gradients as `ltf.fast_rnn`'s custom backward pass (tested to
float32 rounding in tests/test_cpu_kernel.py), faster on CPU: XLA runs each step of a scan as
several fused ops with thread-pool waits between them, where the kernel computes a block's gates
from the matmul's accumulators while they are in registers and meets the other threads once per
step. dW_h = Σ_t h'ᵀ dz_t and d b = Σ_t dz_t stay one large matmul in XLA after the kernel's
reverse pass, as in `ltf.fast_rnn` (and T-LSTM's dW_d = Σ_t C_{t-1}ᵀ dS~_t likewise). The decay
γ_t, the time gate k_t and T-LSTM's g(Δt) depend on the times and the parameters alone: they are
computed for all steps before the call, and their parameters get gradients by autodiff through
the cotangents the kernel returns for them.

`applies(cell, zs, kernel)` says whether it runs: with `kernel="auto"` (the default of
`ltf.fast_rnn` and so of every layer and model above it, unless the environment sets
LTF_CPU_KERNEL=off) for the cells `kernel_step` names (`lstm`, `adaptive`, `time_aware`, each
with or without `decay`, `phased`, `tlstm` and `ctlstm`) in float32 on the CPU backend with one
device, when H is a multiple of 16 and the kernel is built; with "off" never. Remat layers run
on it chunk by chunk (`ltf.kernel_remat`); data-parallel programs and the other cells (the GRUs,
...) run the XLA path.

The first use compiles the kernels (`ltf.kernel_build`: the system's C++ compiler, a few seconds,
cached). Without a compiler, or if the build fails, "auto" warns once (naming the reason and the
fix) and runs the XLA path.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from ltf import ctlstm_kernel
from ltf.cells import decay as decay_lib
from ltf.cells.base import LSTM, LSTMState
from ltf.cells.ctlstm import CTLSTM
from ltf.cells.phased import Phased
from ltf.cells.time_aware import TLSTM
from ltf.kernel_build import (BACKWARD_TARGET, FORWARD_TARGET, LANES, available, f32_like, packed_weight,
                              packed_weight_t, step_flags)
from ltf.shapes import previous_steps

KERNELS = ("auto", "off")
ENV = "LTF_CPU_KERNEL"  # the default of `kernel`: "auto" or "off"


def applies(cell, zs_TxBxG, kernel: str | None = None) -> bool:
    """The kernel runs this recurrence: `kernel="auto"` (None: $LTF_CPU_KERNEL, else "auto"), a
    cell whose step it has (`kernel_step`), float32, H a multiple of 16, the CPU backend with one
    device, and the kernel built."""
    source = "kernel"
    if kernel is None:
        kernel, source = os.environ.get(ENV, "auto"), ENV
    if kernel not in KERNELS:
        raise ValueError(f"{source}={kernel!r}: allowed values are {KERNELS}.")
    if kernel == "off" or kernel_step(cell) is None:
        return False
    n_gates = len(cell.gates)  # G = n_gates·H, H a multiple of 16
    if zs_TxBxG.dtype != jnp.float32 or zs_TxBxG.shape[-1] % (n_gates * LANES) or jax.default_backend() != "cpu":
        return False
    # one device only: the custom calls have no sharding rule, so under data parallelism
    # (`ltf.parallel`) XLA would gather every shard's batch to run them whole on each device
    return jax.device_count() == 1 and available()


def kernel_step(cell) -> str | None:
    """Which of the kernel's steps is the cell's own, or None (the XLA scans):

    "plain": z_t = zs_t + h_{t-1} W_h, then `lstm_update` (with its diagonal peepholes, if
        any): `lstm` (any initialisation), `adaptive` (with or without the peepholes on i and
        o), `time_aware` (whose Δt enters through the projection);
    "decay": one of those with GRU-D's decay (`decay=True`), C', h' = γ_t ⊙ (C, h)_{t-1} first;
    "blend": `phased`, whose time gate k_t blends the peephole LSTM's update with the carry;
    "short_term": `tlstm` (without decay), whose memory's short-term part is discounted by g(Δt);
    "ctlstm": the continuous-time LSTM, its own kernel (`ltf.ctlstm_kernel`).
    A subclass that overrides any part of the step is not recognised."""
    kind = type(cell)
    if kind is CTLSTM:
        return "ctlstm"
    if not (isinstance(cell, LSTM) and cell.gates == LSTM.gates and cell.has_recurrent_matmul
            and kind.recurrent_weight is LSTM.recurrent_weight and kind.before_step is LSTM.before_step):
        return None
    if kind.gate_update is Phased.gate_update and not cell.changes_carry:
        return "blend"
    if kind.gate_update is TLSTM.gate_update and not cell.changes_carry:
        return "short_term"
    if kind.gate_update is not LSTM.gate_update or cell.reads_h_prev or kind.changes_carry is not LSTM.changes_carry:
        return None
    return "decay" if cell.decay else "plain"


def cell_recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0: LSTMState, *,
                    bias_in_step: bool):
    """`recurrence` for a cell that `applies`, as `ltf.fast_rnn.recurrence` takes it: zs with the
    bias (`bias_in_step=False`) or without (True: the kernel adds b), and the time features
    dts_TxBxK (`cell.time_features`), from which γ_t (`decay`), k_t (`phased`: the features are
    k_t itself) or g(Δt) (`tlstm`) come for all steps at once."""
    step = kernel_step(cell)
    bias = params["b"] if bias_in_step else jnp.zeros_like(params["b"])
    if step == "ctlstm":
        return ctlstm_kernel.recurrence(params["w_h"], bias, zs_TxBxG, dts_TxBxK[..., 0], masks_TxB, resets_TxB,
                                        state0)
    decay = decay_lib.hidden_decay(params, dts_TxBxK) if step == "decay" else None
    blend = dts_TxBxK if step == "blend" else None
    short_term = None
    if step == "short_term":
        g_TxBxH = jnp.broadcast_to(cell.elapsed_discount(dts_TxBxK), zs_TxBxG.shape[:2] + params["b_d"].shape)
        short_term = (params["w_d"], params["b_d"], g_TxBxH)
    return recurrence(params["w_h"], bias, zs_TxBxG, masks_TxB, resets_TxB, state0, cell.peephole_weights(params),
                      decay_TxBxH=decay, blend_TxBxH=blend, short_term=short_term)


# -- the recurrence: forward and backward kernels; dW_h, d b and d u in XLA------------------------

def recurrence(w_h_HxG, b_G, zs_TxBxG, masks_TxB, resets_TxB, state0: LSTMState,
               peepholes: dict | None = None, *, decay_TxBxH=None, blend_TxBxH=None, short_term=None):
    """The LSTM recurrence z_t = zs_t + b + h'_{t-1} W_h over T steps (time-major), with the
    diagonal peepholes in `peepholes` (u_f, u_i, u_o: H each, any of them; as
    `cell.peephole_weights` gives them), GRU-D's decay γ_t of the carry before each step
    (`decay_TxBxH`), Phased LSTM's blend with the time gate k_t after it (`blend_TxBxH`) or
    T-LSTM's discounted short-term memory (`short_term` = (w_d_HxH, b_d_H, g_TxBxH)); the module
    doc of ltf/kernels/lstm_cpu.cc has the equations. `masks_TxB`, `resets_TxB`, the decay, the
    blend and the short-term memory may be None. Returns (final LSTMState, hs_TxBxH);
    differentiable in w_h, b, zs, the peepholes, state0, γ, k, W_d, b_d and g (masks and resets
    get no cotangent)."""
    n_steps, batch, n_gates_x_h = zs_TxBxG.shape
    masks, resets = step_flags(masks_TxB, resets_TxB, n_steps, batch)
    peepholes = peepholes or {}
    zero = jnp.zeros((n_gates_x_h // 4,), jnp.float32)
    u_3xH = jnp.stack([peepholes.get(name, zero) for name in ("u_i", "u_f", "u_o")])
    none = jnp.ones((1,), jnp.float32)  # the kernel reads a one-element operand as "this cell has none"
    w_d, b_d, g = short_term if short_term is not None else (none, none, none)
    factors = {"gamma": none if decay_TxBxH is None else decay_TxBxH, "k": none if blend_TxBxH is None else blend_TxBxH,
               "w_d": w_d, "b_d": b_d, "g": g}
    return _recurrence(w_h_HxG, b_G, u_3xH, zs_TxBxG, masks, resets, state0, factors)


def _present(a) -> bool:
    return a.size > 1


def _forward_call(w_h_HxG, b_G, u_3xH, zs_TxBxG, masks_TxB, resets_TxB, state0, factors):
    n_steps, batch, n_gates_x_h = zs_TxBxG.shape
    hidden = jax.ShapeDtypeStruct((n_steps, batch, n_gates_x_h // 4), jnp.float32)
    gates = jax.ShapeDtypeStruct(zs_TxBxG.shape, jnp.float32)
    short_term = hidden if _present(factors["w_d"]) else jax.ShapeDtypeStruct((1,), jnp.float32)
    # W_d's columns per block of 16 units, as W_h's: packed_weight_t of W_dᵀ is [U][k][16]
    w_d_packed = packed_weight_t(factors["w_d"].T) if _present(factors["w_d"]) else factors["w_d"]
    # zs are read at step t only: the gates of step t are written over them (aliased), so XLA has
    # no T x B x 4H buffer of their own to allocate (page faults) and fill
    return jax.ffi.ffi_call(FORWARD_TARGET, (gates, hidden, hidden, short_term), vmap_method="sequential",
                            input_output_aliases={0: 0})(
            zs_TxBxG, b_G, u_3xH, packed_weight(w_h_HxG), state0.h, state0.c, masks_TxB, resets_TxB,
            factors["gamma"], factors["k"], w_d_packed, factors["b_d"], factors["g"])


@jax.custom_vjp
def _recurrence(w_h_HxG, b_G, u_3xH, zs_TxBxG, masks_TxB, resets_TxB, state0, factors):
    _, cs_TxBxH, hs_TxBxH, _ = _forward_call(w_h_HxG, b_G, u_3xH, zs_TxBxG, masks_TxB, resets_TxB, state0, factors)
    return LSTMState(cs_TxBxH[-1], hs_TxBxH[-1]), hs_TxBxH


def _recurrence_fwd(w_h_HxG, b_G, u_3xH, zs_TxBxG, masks_TxB, resets_TxB, state0, factors):
    gates_TxBxG, cs_TxBxH, hs_TxBxH, short_TxBxH = _forward_call(w_h_HxG, b_G, u_3xH, zs_TxBxG, masks_TxB,
                                                                 resets_TxB, state0, factors)
    residuals = (w_h_HxG, u_3xH, gates_TxBxG, cs_TxBxH, hs_TxBxH, masks_TxB, resets_TxB, state0, factors,
                 short_TxBxH)
    return (LSTMState(cs_TxBxH[-1], hs_TxBxH[-1]), hs_TxBxH), residuals


def _recurrence_bwd(residuals, cotangents):
    w_h_HxG, u_3xH, gates_TxBxG, cs_TxBxH, hs_TxBxH, masks_TxB, resets_TxB, state0, factors, short_TxBxH = residuals
    d_final, dhs_TxBxH = cotangents
    gammas, ks, w_d, g = factors["gamma"], factors["k"], factors["w_d"], factors["g"]
    # dz_t is written over the gates of step t, dγ_t over γ_t, dk_t over k_t, dS~_t over S_t and
    # dg_t over g_t: each is read at step t only
    backward = jax.ffi.ffi_call(BACKWARD_TARGET, (f32_like(gates_TxBxG), f32_like(gammas), f32_like(ks),
                                                  f32_like(state0.h), f32_like(state0.c), f32_like(u_3xH),
                                                  f32_like(short_TxBxH), f32_like(g)),
                                vmap_method="sequential", input_output_aliases={0: 0, 7: 1, 8: 2, 14: 6, 15: 7})
    dzs_TxBxG, d_gammas, d_ks, dh0_BxH, dc0_BxH, d_u_3xH, d_short_TxBxH, d_g = backward(
            gates_TxBxG, cs_TxBxH, hs_TxBxH, state0.h, state0.c, masks_TxB, resets_TxB, gammas, ks,
            packed_weight_t(w_h_HxG), u_3xH, dhs_TxBxH, d_final.h, d_final.c, short_TxBxH, g,
            packed_weight_t(w_d) if _present(w_d) else w_d)
    d_hidden, n_gates_x_h = w_h_HxG.shape
    h_prev_TxBxH = previous_steps(state0.h, hs_TxBxH, resets_TxB)
    if _present(gammas):  # h' = γ ⊙ h_{t-1}: what the step's matmul read
        h_prev_TxBxH = h_prev_TxBxH * gammas
    dw_h_HxG = h_prev_TxBxH.reshape(-1, d_hidden).T @ dzs_TxBxG.reshape(-1, n_gates_x_h)  # Σ_t h'ᵀ dz_t
    # a one-element operand stands for none: its "cotangent" is zero
    d_factors = {name: jnp.zeros_like(a) for name, a in factors.items()}
    if _present(gammas):
        d_factors["gamma"] = d_gammas
    if _present(ks):
        d_factors["k"] = d_ks
    if _present(w_d):  # S~ = C_{t-1} W_d + b_d: dW_d = Σ_t C_{t-1}ᵀ dS~_t, d b_d = Σ_t dS~_t
        c_prev_TxBxH = previous_steps(state0.c, cs_TxBxH, resets_TxB)
        d_factors["w_d"] = c_prev_TxBxH.reshape(-1, d_hidden).T @ d_short_TxBxH.reshape(-1, d_hidden)
        d_factors["b_d"] = jnp.sum(d_short_TxBxH, axis=(0, 1))
        d_factors["g"] = d_g
    return (dw_h_HxG, jnp.sum(dzs_TxBxG, axis=(0, 1)), d_u_3xH, dzs_TxBxG, None, None,
            LSTMState(c=dc0_BxH, h=dh0_BxH), d_factors)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
