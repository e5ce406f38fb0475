"""The continuous-time LSTM's recurrence (`ltf.cells.ctlstm`, Mei & Eisner 2017) as one compiled
CPU kernel (`ltf/kernels/ctlstm_cpu.cc`), forward and backward, called through `jax.ffi`:

    final, hs_TxBxH = recurrence(w_h_HxG, b_G, zs_TxBxG, dt_TxB, masks_TxB, resets_TxB, state0)

G = 7H (the gates i, f, g, o, ī, f̄, δ), state0 = LSTMState(c_Bx4H = [C, C̄, δ, o], h_BxH) as the
cell packs it, dt_TxB the gap before each step (the first column of the cell's Δt). The same
function and gradients as the XLA scans of `ltf.fast_rnn` (tests/test_ctlstm_kernel.py), faster
on CPU for the reasons `ltf.cpu_kernel` gives; that module decides where it runs
(`cpu_kernel.applies`), and `ltf.kernel_build` builds the shared library and registers its targets.

What the kernel leaves to XLA: dW_h = Σ_t h(t)ᵀ dz_t (h(t) = o ⊙ tanh(C(t)), the matmul's input,
which the forward pass returns for it), d b = Σ_t dz_t and dΔt = Σ_units of the per-unit terms
the kernel writes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ltf.cells.base import LSTMState
from ltf.cells.ctlstm import CTLSTM, N_CARRIED
from ltf.kernel_build import (CTLSTM_BACKWARD_TARGET, CTLSTM_FORWARD_TARGET, f32_like, packed_weight, packed_weight_t,
                              step_flags)

N_GATES = len(CTLSTM.gates)  # i, f, g, o, ī, f̄, δ: kGates in ltf/kernels/ctlstm_cpu.cc


def recurrence(w_h_HxG, b_G, zs_TxBxG, dt_TxB, masks_TxB, resets_TxB, state0: LSTMState):
    """The continuous-time LSTM over T steps (time-major): z_t = zs_t + b + h(t) W_h, with the
    carry relaxed over dt_TxB before each step (the module doc of ltf/kernels/ctlstm_cpu.cc has
    the equations). `masks_TxB` and `resets_TxB` may be None. Returns (final LSTMState, hs_TxBxH);
    differentiable in w_h, b, zs, dt and state0 (masks and resets get no cotangent)."""
    n_steps, batch, n_gates_x_h = zs_TxBxG.shape
    if n_gates_x_h != N_GATES * w_h_HxG.shape[0] or state0.c.shape[-1] != N_CARRIED * w_h_HxG.shape[0]:
        raise ValueError(f"ctlstm kernel: zs {zs_TxBxG.shape} and state0.c {state0.c.shape} must have "
                         f"{N_GATES}H and {N_CARRIED}H columns for W_h {w_h_HxG.shape}.")
    masks, resets = step_flags(masks_TxB, resets_TxB, n_steps, batch)
    return _recurrence(w_h_HxG, b_G, zs_TxBxG, dt_TxB.astype(jnp.float32), masks, resets, state0)


def _forward_call(w_h_HxG, b_G, zs_TxBxG, dt_TxB, masks_TxB, resets_TxB, state0):
    n_steps, batch, n_gates_x_h = zs_TxBxG.shape
    d_hidden = n_gates_x_h // N_GATES
    hidden = jax.ShapeDtypeStruct((n_steps, batch, d_hidden), jnp.float32)
    carried = jax.ShapeDtypeStruct((n_steps, batch, N_CARRIED * d_hidden), jnp.float32)
    gates = jax.ShapeDtypeStruct(zs_TxBxG.shape, jnp.float32)
    # the gates of step t are written over zs_t (aliased), as in `ltf.cpu_kernel`
    return jax.ffi.ffi_call(CTLSTM_FORWARD_TARGET, (gates, carried, hidden, hidden), vmap_method="sequential",
                            input_output_aliases={0: 0})(
            zs_TxBxG, b_G, packed_weight(w_h_HxG, N_GATES), state0.h, state0.c, dt_TxB, masks_TxB, resets_TxB)


@jax.custom_vjp
def _recurrence(w_h_HxG, b_G, zs_TxBxG, dt_TxB, masks_TxB, resets_TxB, state0):
    _, cs_TxBx4H, hs_TxBxH, _ = _forward_call(w_h_HxG, b_G, zs_TxBxG, dt_TxB, masks_TxB, resets_TxB, state0)
    return LSTMState(cs_TxBx4H[-1], hs_TxBxH[-1]), hs_TxBxH


def _recurrence_fwd(w_h_HxG, b_G, zs_TxBxG, dt_TxB, masks_TxB, resets_TxB, state0):
    gates_TxBxG, cs_TxBx4H, hs_TxBxH, hds_TxBxH = _forward_call(w_h_HxG, b_G, zs_TxBxG, dt_TxB, masks_TxB,
                                                                resets_TxB, state0)
    residuals = (w_h_HxG, gates_TxBxG, cs_TxBx4H, hds_TxBxH, dt_TxB, masks_TxB, resets_TxB, state0)
    return (LSTMState(cs_TxBx4H[-1], hs_TxBxH[-1]), hs_TxBxH), residuals


def _recurrence_bwd(residuals, cotangents):
    w_h_HxG, gates_TxBxG, cs_TxBx4H, hds_TxBxH, dt_TxB, masks_TxB, resets_TxB, state0 = residuals
    d_final, dhs_TxBxH = cotangents
    # dz_t is written over the gates of step t, which it reads at step t only
    backward = jax.ffi.ffi_call(CTLSTM_BACKWARD_TARGET, (f32_like(gates_TxBxG), f32_like(state0.h),
                                                         f32_like(state0.c), f32_like(hds_TxBxH)),
                                vmap_method="sequential", input_output_aliases={0: 0})
    dzs_TxBxG, dh0_BxH, dc0_Bx4H, d_dt_TxBxH = backward(
            gates_TxBxG, cs_TxBx4H, state0.c, dt_TxB, masks_TxB, resets_TxB, packed_weight_t(w_h_HxG), dhs_TxBxH,
            d_final.h, d_final.c)
    d_hidden, n_gates_x_h = w_h_HxG.shape
    dw_h_HxG = hds_TxBxH.reshape(-1, d_hidden).T @ dzs_TxBxG.reshape(-1, n_gates_x_h)  # Σ_t h(t)ᵀ dz_t
    return (dw_h_HxG, jnp.sum(dzs_TxBxG, axis=(0, 1)), dzs_TxBxG, jnp.sum(d_dt_TxBxH, axis=-1), None, None,
            LSTMState(c=dc0_Bx4H, h=dh0_BxH))


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
