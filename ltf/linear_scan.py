"""The diagonal linear recurrence h_t = a_t ⊙ h_{t-1} + b_t over T steps, in two forms equal to
float rounding, with the layer semantics of `ltf.rnn.scan_layer` (which runs the cells of
`ltf.cells.linear` here):

    final, hs_TxBxH = layer(cell, params, xs_TxBxD, dts_TxBxK, masks_TxB, state0, resets_TxB=...)
    final, hs_TxBxH = recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0, resets_TxB=...)
    hs_TxBxH = scan(a_TxBxH, b_TxBxH, h0_BxH, form="parallel")

Forms (the cell's `form` option):
  sequential  `jax.lax.scan`, one step after another; gradients by autodiff (its reverse pass is
              again a linear scan, dh_{t-1} = a_t ⊙ dh_t).
  parallel    `jax.lax.associative_scan` over the pairs (a_t, b_t) with
              (a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂), the initial state folded into the first
              pair (b₁ ← a₁h₀ + b₁): depth O(log T), about three times the work of the loop.
  auto        `resolve_form`: "parallel" on GPU and TPU; CPU_FORM on CPU, from the measurement
              of scripts/bench_recurrences.py (benchmarks/bench_recurrences_cpu.md).

Layer semantics, folded into (a_t, b_t) before either form runs, so that both share them:
  - a masked step (mask 0) leaves the carry untouched and emits the carried h: a_t = 1, b_t = 0;
  - a reset (1 at step t) zeroes the carry before step t: a_t = 0, so no gradient crosses it
    (at a masked step: a_t = 0, b_t = 0, the zeros kept). The cell's `coefficients` sees the
    resets as well: rglru's first step of a document takes its input whole, as Griffin's;
  - the final carry is h after the last real step, and c = h; a row with no real step and no
    reset keeps the c it was given, as the LSTM paths do.
There is no custom backward pass: without a recurrent matmul there is no dW_h to hoist out of the
reverse scan, so `backward` ("custom"/"autodiff") does not apply to these cells.

`remat`: the layer runs in chunks of `remat_chunk` steps (REMAT_CHUNK) under `jax.checkpoint`, a
`lax.scan` over the chunks carrying h. The backward pass keeps the inputs and one h per chunk and
recomputes each chunk's projection, (a_t, b_t) and scan, so the per-step intermediates (z_t: G
numbers, a_t, b_t, h_t and what the nonlinearities keep) are live for one chunk at a time. The
parallel form is then parallel within a chunk and sequential across chunks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ltf.cells import base
from ltf.cells.base import LSTMState, Params
from ltf.cells.linear import FORMS, LinearCell
from ltf.fast_rnn import project
from ltf.shapes import time_chunks

# "auto" on CPU: the faster form there, per token, forward and backward (scripts/bench_recurrences.py):
# the sequential scan (see benchmarks/bench_recurrences_cpu.md).
CPU_FORM = "sequential"
ACCELERATOR_FORM = "parallel"
# Steps per remat chunk: as in ltf.fast_rnn, long enough for large per-chunk matmuls (chunk·B rows).
REMAT_CHUNK = 256


def resolve_form(form: str, backend: str | None = None) -> str:
    """"sequential" or "parallel": `form` itself, or for "auto" the default of `backend`."""
    return base.resolve_form(form, FORMS, CPU_FORM, ACCELERATOR_FORM, backend)


# -- the recurrence alone ---------------------------------------------------------------------

def sequential(a_TxBxH, b_TxBxH, h0_BxH, *, unroll: int = 1):
    """hs_TxBxH of h_t = a_t ⊙ h_{t-1} + b_t from h0, one step at a time."""
    def step(h_BxH, ab):
        a_BxH, b_BxH = ab
        h_BxH = a_BxH * h_BxH + b_BxH  # h_t = a_t ⊙ h_{t-1} + b_t
        return h_BxH, h_BxH

    return jax.lax.scan(step, h0_BxH, (a_TxBxH, b_TxBxH), unroll=unroll)[1]


def _compose(earlier, later):
    """(a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂): step 1 then step 2, as one affine map of h."""
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def parallel(a_TxBxH, b_TxBxH, h0_BxH):
    """The same hs_TxBxH by an associative scan: h_t is the b of the composition of steps 1..t,
    with h0 folded into the first step (b₁ ← a₁h₀ + b₁)."""
    b_TxBxH = b_TxBxH.at[0].add(a_TxBxH[0] * h0_BxH)
    _, hs_TxBxH = jax.lax.associative_scan(_compose, (a_TxBxH, b_TxBxH), axis=0)
    return hs_TxBxH


def scan(a_TxBxH, b_TxBxH, h0_BxH, *, form: str = "auto", unroll: int = 1):
    """hs_TxBxH in the form `form` (`resolve_form`); `unroll` for the sequential one."""
    if resolve_form(form) == "sequential":
        return sequential(a_TxBxH, b_TxBxH, h0_BxH, unroll=unroll)
    return parallel(a_TxBxH, b_TxBxH, h0_BxH)


# -- the layer's semantics --------------------------------------------------------------------

def gated(a_TxBxH, b_TxBxH, masks_TxB=None, resets_TxB=None):
    """(a, b) with masks and resets folded in (see the module docstring)."""
    if masks_TxB is not None:  # a masked step: h_t = h_{t-1}
        real_TxBx1 = masks_TxB[..., None] > 0
        a_TxBxH = jnp.where(real_TxBx1, a_TxBxH, jnp.ones_like(a_TxBxH))
        b_TxBxH = jnp.where(real_TxBx1, b_TxBxH, jnp.zeros_like(b_TxBxH))
    if resets_TxB is not None:  # the carry zeroed before the step
        a_TxBxH = jnp.where(resets_TxB[..., None] > 0, jnp.zeros_like(a_TxBxH), a_TxBxH)
    return a_TxBxH, b_TxBxH


def final_state(state0: LSTMState, hs_TxBxH, masks_TxB=None, resets_TxB=None) -> LSTMState:
    """The carry after the last step: (c, h) = (h_T, h_T), h_T after the last real step; a row
    with no real step and no reset keeps its c (the LSTM paths' rule, where c is carried apart)."""
    h_BxH = hs_TxBxH[-1]
    if masks_TxB is None:  # every step real
        return LSTMState(h_BxH, h_BxH)
    touched_B = jnp.any(masks_TxB > 0, axis=0)
    if resets_TxB is not None:
        touched_B = touched_B | jnp.any(resets_TxB > 0, axis=0)
    return LSTMState(jnp.where(touched_B[:, None], h_BxH, state0.c.astype(h_BxH.dtype)), h_BxH)


def _check(cell):
    if not getattr(cell, "linear", False):
        raise ValueError(f"{type(cell).__name__}: ltf.linear_scan runs the linear cells of ltf.cells.linear "
                         "(cell.linear); a cell with a recurrent matmul runs in ltf.rnn / ltf.fast_rnn.")


def recurrence(cell: LinearCell, params: Params, zs_TxBxG, dts_TxBxK, masks_TxB, state0: LSTMState,
               *, unroll: int = 1, resets_TxB=None):
    """From the projections zs = cell.project(params, xs, dts) (time-major). Returns
    (final LSTMState, hs_TxBxH). `masks_TxB`, `resets_TxB` may be None."""
    _check(cell)
    a_TxBxH, b_TxBxH = gated(*cell.coefficients(params, zs_TxBxG, dts_TxBxK, resets_TxB), masks_TxB, resets_TxB)
    hs_TxBxH = scan(a_TxBxH, b_TxBxH, state0.h, form=cell.form, unroll=unroll)
    return final_state(state0, hs_TxBxH, masks_TxB, resets_TxB), hs_TxBxH


def layer(cell: LinearCell, params: Params, xs_TxBxD, dts_TxBxK, masks_TxB, state0: LSTMState,
          *, unroll: int = 1, remat: bool = False, remat_chunk: int = REMAT_CHUNK, resets_TxB=None):
    """`cell.project` for all steps (one T·B-row matmul), then `recurrence`; with `remat`, chunk
    by chunk under `jax.checkpoint` (see the module docstring). Returns (final LSTMState, hs_TxBxH)."""
    _check(cell)
    if not remat:
        zs_TxBxG = project(cell, params, xs_TxBxD, dts_TxBxK)
        return recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0, unroll=unroll,
                          resets_TxB=resets_TxB)
    if remat_chunk < 1:
        raise ValueError(f"remat_chunk={remat_chunk}: must be a positive number of steps.")
    n_steps, batch = xs_TxBxD.shape[:2]
    chunk = min(remat_chunk, n_steps)
    n_chunks = -(-n_steps // chunk)
    # T padded to whole chunks with masked steps (mask 0), which leave the carry as it is
    masks = jnp.ones((n_steps, batch), xs_TxBxD.dtype) if masks_TxB is None else masks_TxB
    pieces = jax.tree.map(lambda v: time_chunks(v, n_chunks, chunk), (xs_TxBxD, dts_TxBxK, masks, resets_TxB))

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def chunk_step(h_BxH, piece):
        xs_LxBxD, dts_LxBxK, masks_LxB, resets_LxB = piece
        zs_LxBxG = project(cell, params, xs_LxBxD, dts_LxBxK)
        a_LxBxH, b_LxBxH = gated(*cell.coefficients(params, zs_LxBxG, dts_LxBxK, resets_LxB), masks_LxB, resets_LxB)
        hs_LxBxH = scan(a_LxBxH, b_LxBxH, h_BxH, form=cell.form, unroll=unroll)
        return hs_LxBxH[-1], hs_LxBxH

    _, hs_NxLxBxH = jax.lax.scan(chunk_step, state0.h, pieces)
    hs_TxBxH = hs_NxLxBxH.reshape((n_chunks * chunk,) + hs_NxLxBxH.shape[2:])[:n_steps]
    return final_state(state0, hs_TxBxH, masks_TxB, resets_TxB), hs_TxBxH
