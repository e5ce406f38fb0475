"""The mLSTM layer (`ltf.cells.mlstm`) over T steps, in two forms equal to float rounding, with the
layer semantics of `ltf.rnn.scan_layer` (which runs the cell here):

    final, hs_TxBxH = recurrence(cell, zs_TxBxG, masks_TxB, state0, resets_TxB=..., remat=...)

Forms (the cell's `form` option):
  sequential  `jax.lax.scan` over the steps, the cell's own step (C_t = f'C_{t−1} + i' v kᵀ ...).
  chunkwise   T split into chunks of L = `chunk_size` steps; within a chunk the attention-like
              form (L x L matmuls per head), across chunks a `lax.scan` over the chunk-boundary
              states (C, n, m, h). L ≥ T is the fully parallel form; L = 1 is the sequential one.
  auto        `resolve_form`: "chunkwise" on GPU and TPU; CPU_FORM on CPU (measured).
Gradients by autodiff in both forms (no custom backward pass: there is no W_h to hoist).

Within a chunk (per head; s ≤ t steps of the chunk, b_t = Σ_{j≤t} log σ(f̃_j) from the chunk's
start, (C₀, n₀, m₀) the state carried into the chunk):
    D̃_ts = b_t − b_s + ĩ_s                       (log weight of step s's write at t)
    G_t  = b_t + m₀                               (log scale of the carried state at t)
    m_t  = max(G_t, max_s D̃_ts)                  the sequential recurrence's m_t, unrolled
    S_ts = exp(D̃_ts − m_t),  w_t = exp(G_t − m_t)
    C_t q_t = Σ_s S_ts (q_t·k_s) v_s + w_t C₀ q_t,   n_tᵀq_t = Σ_s S_ts (q_t·k_s) + w_t n₀ᵀq_t
    h̃_t = C_t q_t / max(|n_tᵀ q_t|, exp(−m_t)),   and at the chunk's end C_L, n_L, m_L the same sums.
Since m_t is the sequential form's m_t (to rounding), the two forms carry the same (C, n, m), not
only the same h (h̃ itself does not depend on m: see `ltf.cells.mlstm`).

Layer semantics, in both forms:
  - a masked step (mask 0) leaves the carry untouched and emits the carried h. Its inputs are
    zeroed before any arithmetic (so padding, however large, cannot overflow an exp and turn a
    discarded branch's gradient into NaN), and in the chunk it writes nothing (no D̃ column) and
    forgets nothing (log σ(f̃) := 0); its output is the last real step's h (forward fill), or the
    carried h when the chunk has none yet;
  - a reset (1 at step t) zeroes the carry (C, n, m, h) before step t: in the chunk, steps of
    different segments (a segment: from a reset to the next) never see each other (D̃ = −∞
    between them, not a −∞ log forget gate, whose differences would be −∞ − (−∞) = NaN), and a
    segment that starts with a reset has G_t = b_t − b_{r−1} + 0 and no carried term: the state
    it starts from is the zero state with m = 0. No gradient crosses a reset;
  - the final carry is the state after the last real step.

`remat` (`layer`): the layer runs in pieces of `remat_chunk` steps (REMAT_CHUNK; chunkwise:
rounded down to whole chunks of L) under `jax.checkpoint`, a `lax.scan` over the pieces carrying
(C, n, m, h); each piece projects its own inputs. The backward pass keeps the inputs and one state per piece and
recomputes each piece, so the projections (4H + 2·heads numbers per token), the per-step states
of the sequential form (a d x d matrix per head and step: what `jax.grad` of the plain scan
stores) and the chunkwise form's L x L weights are live for one piece at a time. One layer's
train step at B = 8, T = 65,536, H = 256: peak RSS 3.8 GB, where checkpointing the chunks alone
(the projection made outside, for all T) took 10.3 GB (benchmarks/bench_long_mlstm_remat_cpu.md).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ltf.cells import base
from ltf.cells.base import LSTMState
from ltf.cells.mlstm import FORMS, MLSTM, pack, read_out, split_projection, step, unpack
from ltf.fast_rnn import project
from ltf.shapes import time_chunks

# "auto" on CPU: the faster form there, per token, forward and backward: chunkwise (L = 64) was 1.95 to
# 2.3x faster than sequential at B = 4, H = 64, 4 heads, T = 256 and 1,024 (with and without remat),
# on 2 CPU cores busy with other work: indicative only (benchmarks/bench_recurrences_cpu.md,
# scripts/bench_recurrences.py).
CPU_FORM = "chunkwise"
ACCELERATOR_FORM = "chunkwise"
# Steps per remat piece (chunkwise: rounded down to whole chunks), as in ltf.fast_rnn and ltf.linear_scan.
REMAT_CHUNK = 256


def resolve_form(form: str, backend: str | None = None) -> str:
    """"sequential" or "chunkwise": `form` itself, or for "auto" the default of `backend`."""
    return base.resolve_form(form, FORMS, CPU_FORM, ACCELERATOR_FORM, backend)


def _along(flag, like):
    """flag_B... with unit axes appended to broadcast against like_B...x... ."""
    return flag.reshape(flag.shape + (1,) * (like.ndim - flag.ndim))


# -- the sequential form: one step at a time -------------------------------------------------

def _sequential_step(carry, inputs, *, head_norm: bool = False):
    """carry (C_BxNxDxD, n_BxNxD, m_BxN, h_BxH); inputs of step t, time-major slices."""
    q, k, v, o_BxH, i_pre, f_pre, real_B, reset_B = inputs
    carry = tuple(jnp.where(_along(reset_B, a), jnp.zeros_like(a), a) for a in carry)  # zeroed before step t
    (c, n, m), h_tilde_BxNxD = step(*carry[:3], q, k, v, i_pre, f_pre)
    h_BxH = read_out(o_BxH, h_tilde_BxNxD, head_norm)  # h_t = σ(o_t) ⊙ h̃_t (per-head norm: the cell's)
    carry = tuple(jnp.where(_along(real_B, old), new, old) for new, old in zip((c, n, m, h_BxH), carry))
    return carry, carry[3]


def sequential(carry, steps_T, *, unroll: int = 1, head_norm: bool = False):
    """(final carry, hs_TxBxH) of `lax.scan` over the time-major steps
    (q, k, v, o, ĩ, f̃, real, reset)."""
    return jax.lax.scan(functools.partial(_sequential_step, head_norm=head_norm), carry, steps_T, unroll=unroll)


# -- the chunkwise form: one chunk at a time ----------------------------------------------------

def chunk_parallel(carry, chunk, *, head_norm: bool = False):
    """One chunk of L steps in the attention-like form (see the module docstring).

    carry (C₀_BxNxDxD, n₀_BxNxD, m₀_BxN, h₀_BxH); chunk (q, k, v _BxNxLxD, o_BxLxH, ĩ_BxNxL,
    log σ(f̃)_BxNxL with 0 at masked steps, real_BxL, reset_BxL). Returns (carry after the
    chunk's last step, hs_BxLxH)."""
    c0, n0, m0_BxN, h0_BxH = carry
    q, k, v, o_BxLxH, i_pre_BxNxL, log_f_BxNxL, real_BxL, reset_BxL = chunk
    n_steps = real_BxL.shape[-1]
    t_L = jnp.arange(n_steps)
    # the step whose reset starts t's segment (−1: the segment that continues the carried state)
    start_BxL = jax.lax.cummax(jnp.where(reset_BxL, t_L[None], -1), axis=1)
    carried_BxL = start_BxL < 0
    carried_Bx1xL = carried_BxL[:, None]
    b_BxNxL = jnp.cumsum(log_f_BxNxL, axis=-1)  # b_t = Σ_{j ≤ t} log σ(f̃_j)
    # b_{r−1} of t's segment start r: the forgetting before the reset does not reach t
    before_BxNxL = jnp.take_along_axis(b_BxNxL - log_f_BxNxL,
                                       jnp.broadcast_to(jnp.maximum(start_BxL, 0)[:, None], b_BxNxL.shape), axis=-1)
    m0_BxNx1 = m0_BxN[..., None]
    g_BxNxL = jnp.where(carried_Bx1xL, b_BxNxL + m0_BxNx1, b_BxNxL - before_BxNxL)  # G_t (+ 0: a reset's m)
    # s ≤ t, the same segment, s real; −∞ elsewhere (before the exp, so no gradient reaches it)
    valid_Bx1xLxL = ((t_L[:, None] >= t_L[None, :])[None]
                     & (start_BxL[:, :, None] == start_BxL[:, None, :]) & real_BxL[:, None, :])[:, None]
    d_BxNxLxL = b_BxNxL[..., :, None] - b_BxNxL[..., None, :] + i_pre_BxNxL[..., None, :]  # D̃_ts
    d_BxNxLxL = jnp.where(valid_Bx1xLxL, d_BxNxLxL, jnp.asarray(-jnp.inf, d_BxNxLxL.dtype))
    m_BxNxL = jnp.maximum(g_BxNxL, jnp.max(d_BxNxLxL, axis=-1))  # m_t = max(G_t, max_s D̃_ts)
    s_BxNxLxL = jnp.exp(d_BxNxLxL - m_BxNxL[..., None])  # S_ts = exp(D̃_ts − m_t) ≤ 1
    # w_t = exp(G_t − m_t) for the carried segment (double where: exp never sees the other branch)
    w_BxNxL = jnp.where(carried_Bx1xL, jnp.exp(jnp.where(carried_Bx1xL, g_BxNxL - m_BxNxL, 0.0)), 0.0)
    scores_BxNxLxL = s_BxNxLxL * jnp.einsum("bntd,bnsd->bnts", q, k)  # S_ts (q_t·k_s)
    num_BxNxLxD = (jnp.einsum("bnts,bnsd->bntd", scores_BxNxLxL, v)
                   + w_BxNxL[..., None] * jnp.einsum("bnij,bntj->bnti", c0, q))  # C_t q_t
    den_BxNxL = jnp.sum(scores_BxNxLxL, axis=-1) + w_BxNxL * jnp.einsum("bnj,bntj->bnt", n0, q)  # n_tᵀ q_t
    h_tilde_BxNxLxD = num_BxNxLxD / jnp.maximum(jnp.abs(den_BxNxL), jnp.exp(-m_BxNxL))[..., None]
    h_BxLxH = read_out(o_BxLxH, jnp.swapaxes(h_tilde_BxNxLxD, 1, 2), head_norm)  # h_t = σ(o_t) ⊙ h̃_t
    # a masked step emits the last real step's h of its segment, else the carried h (0 after a reset)
    last_BxL = jax.lax.cummax(jnp.where(real_BxL, t_L[None], -1), axis=1)
    filled_BxLxH = jnp.take_along_axis(h_BxLxH, jnp.maximum(last_BxL, 0)[..., None], axis=1)
    before_any_BxLxH = jnp.where(carried_BxL[..., None], h0_BxH[:, None], jnp.zeros_like(h_BxLxH))
    hs_BxLxH = jnp.where((last_BxL >= jnp.maximum(start_BxL, 0))[..., None], filled_BxLxH, before_any_BxLxH)
    # the state after the chunk's last step: the same sums at t = L
    s_end_BxNxL, w_end_BxN = s_BxNxLxL[..., -1, :], w_BxNxL[..., -1]
    c_end = jnp.einsum("bns,bnsi,bnsj->bnij", s_end_BxNxL, v, k) + w_end_BxN[..., None, None] * c0
    n_end = jnp.einsum("bns,bnsj->bnj", s_end_BxNxL, k) + w_end_BxN[..., None] * n0
    return (c_end, n_end, m_BxNxL[..., -1], hs_BxLxH[:, -1]), hs_BxLxH


# -- the layer -------------------------------------------------------------------------------

def _check(cell):
    if not isinstance(cell, MLSTM):
        raise ValueError(f"{type(cell).__name__}: ltf.mlstm_scan runs the mlstm cell (ltf.cells.mlstm); "
                         "other cells run in ltf.rnn / ltf.fast_rnn / ltf.linear_scan.")


def _run(cell: MLSTM, form: str, carry, zs_TxBxG, real_TxB, reset_TxB, unroll: int):
    """(carry after the last real step, hs_TxBxH) of the steps of zs (time-major, any length) in
    `form`, from carry (C, n, m, h) unpacked: the sequential scan, or chunks of L = chunk_size."""
    n_steps = zs_TxBxG.shape[0]
    # a masked step's input never enters the arithmetic (see the module docstring)
    zs_TxBxG = jnp.where(real_TxB[..., None], zs_TxBxG, jnp.zeros_like(zs_TxBxG))
    q, k, v, o, i_pre, f_pre = split_projection(zs_TxBxG, cell.heads)
    if form == "sequential":
        return sequential(carry, (q, k, v, o, i_pre, f_pre, real_TxB, reset_TxB), unroll=unroll,
                          head_norm=cell.head_norm)
    chunk = min(cell.chunk_size, n_steps)
    pieces = functools.partial(time_chunks, n_chunks=-(-n_steps // chunk), chunk=chunk)
    log_f = jnp.where(real_TxB[..., None], jax.nn.log_sigmoid(f_pre), 0.0)  # a masked step forgets nothing
    # batch-major within a chunk, L beside D, for the L x L matmuls per head
    per_head = lambda a: jnp.moveaxis(pieces(a), 1, 3)  # noqa: E731  N_c x B x N x L x D
    per_gate = lambda a: jnp.moveaxis(pieces(a), 1, -1)  # noqa: E731  N_c x B x N x L
    batch_first = lambda a: jnp.moveaxis(pieces(a), 1, 2)  # noqa: E731  N_c x B x L (x H)
    steps = (per_head(q), per_head(k), per_head(v), batch_first(o), per_gate(i_pre), per_gate(log_f),
             batch_first(real_TxB), batch_first(reset_TxB))
    carry, hs_NcxBxLxH = jax.lax.scan(functools.partial(chunk_parallel, head_norm=cell.head_norm), carry, steps)
    hs_NcxLxBxH = jnp.moveaxis(hs_NcxBxLxH, 1, 2)
    return carry, hs_NcxLxBxH.reshape((-1,) + hs_NcxLxBxH.shape[2:])[:n_steps]


def _flags(masks_TxB, resets_TxB, n_steps: int, batch: int):
    real_TxB = jnp.ones((n_steps, batch), bool) if masks_TxB is None else masks_TxB > 0
    reset_TxB = jnp.zeros((n_steps, batch), bool) if resets_TxB is None else resets_TxB > 0
    return real_TxB, reset_TxB


def _initial(cell: MLSTM, state0: LSTMState, dtype):
    """(C, n, m, h) unpacked from a layer's initial LSTMState, in the inputs' dtype."""
    return (*unpack(state0.c.astype(dtype), cell.heads), state0.h.astype(dtype))


def _final(carry) -> LSTMState:
    c, n, m, h = carry
    return LSTMState(pack(c, n, m), h)


def recurrence(cell: MLSTM, zs_TxBxG, masks_TxB, state0: LSTMState, *, resets_TxB=None, unroll: int = 1):
    """From the projections zs = cell.project(params, xs, dts) (time-major: q, k, v, o, ĩ, f̃).
    Returns (final LSTMState, hs_TxBxH). `masks_TxB`, `resets_TxB` may be None; `unroll` unrolls
    the sequential form's scan over the steps (the scan over chunks is not unrolled)."""
    _check(cell)
    real_TxB, reset_TxB = _flags(masks_TxB, resets_TxB, *zs_TxBxG.shape[:2])
    carry, hs_TxBxH = _run(cell, resolve_form(cell.form), _initial(cell, state0, zs_TxBxG.dtype), zs_TxBxG,
                           real_TxB, reset_TxB, unroll)
    return _final(carry), hs_TxBxH


def layer(cell: MLSTM, params, xs_TxBxD, dts_TxBxK, masks_TxB, state0: LSTMState, *, resets_TxB=None,
          unroll: int = 1, remat: bool = False, remat_chunk: int = REMAT_CHUNK):
    """`cell.project` for all steps (one T·B-row matmul), then `recurrence`; with `remat`, a scan
    over pieces of `remat_chunk` steps (chunkwise: rounded down to whole chunks) under `jax.checkpoint`,
    each projecting its own inputs (see the module docstring). Returns (final LSTMState, hs_TxBxH)."""
    _check(cell)
    if not remat:
        return recurrence(cell, project(cell, params, xs_TxBxD, dts_TxBxK), masks_TxB, state0,
                          resets_TxB=resets_TxB, unroll=unroll)
    if remat_chunk < 1:
        raise ValueError(f"remat_chunk={remat_chunk}: must be a positive number of steps.")
    n_steps, batch = xs_TxBxD.shape[:2]
    form = resolve_form(cell.form)
    whole = cell.chunk_size if form == "chunkwise" else 1  # pieces of whole chunks
    piece = min(n_steps, max(whole, remat_chunk // whole * whole))
    n_pieces = -(-n_steps // piece)
    real_TxB, reset_TxB = _flags(masks_TxB, resets_TxB, n_steps, batch)
    pieces = tuple(time_chunks(a, n_pieces, piece) for a in (xs_TxBxD, dts_TxBxK, real_TxB, reset_TxB))

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def run_piece(carry, inputs):
        xs_LxBxD, dts_LxBxK, real_LxB, reset_LxB = inputs
        zs_LxBxG = project(cell, params, xs_LxBxD, dts_LxBxK)
        return _run(cell, form, carry, zs_LxBxG, real_LxB, reset_LxB, unroll)

    carry, hs_NxLxBxH = jax.lax.scan(run_piece, _initial(cell, state0, xs_TxBxD.dtype), pieces)
    return _final(carry), hs_NxLxBxH.reshape((n_pieces * piece,) + hs_NxLxBxH.shape[2:])[:n_steps]
