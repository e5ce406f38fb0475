"""The remat layer of `ltf.fast_rnn` on the compiled CPU kernel (`ltf.cpu_kernel`): for long
sequences, memory for compute, with the kernel's speed.

    final, hs_TxBxH = layer(cell, project, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0)

`project(cell, params, xs, dts)` gives a chunk's pre-activations without the bias (the kernel adds
b in its step): `fast_rnn.project_without_bias`, passed in because `ltf.fast_rnn` imports this.

Forward: `chunk` steps at a time, each chunk projected and run through the kernel; what is kept
for the backward pass is the inputs (stored anyway: the previous layer's output) and the carry
(C, h) at the start of each chunk, 2·B·H numbers per chunk. Backward: the last chunk first, each
run forward again by the kernel from its starting carry (its gates, C_t, h_t for `chunk` steps),
then back through the kernel's reverse pass from the cotangent of its final carry (the chunk
after it hands that over): the vjp of the chunk. So the pre-activations, gates and their
cotangents (4H per token each) are live for one chunk at a time, and the forward steps run twice.

The scans' remat path (`fast_rnn._remat_layer`) keeps C_{t-1} and h_t for every step instead and
recomputes a chunk's pre-activations as two large matmuls, not step by step; its reverse scan
then runs as XLA ops per step, which the kernel outpaces (benchmarks/bench_remat_kernel_cpu.md).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ltf import cpu_kernel


def _run_chunk(cell, project, params, xs_LxBxD, dts_LxBxK, masks_LxB, resets_LxB, state):
    """(final carry, hs) of L steps from `state`, on the kernel."""
    zs_LxBxG = project(cell, params, xs_LxBxD, dts_LxBxK)
    return cpu_kernel.cell_recurrence(cell, params, zs_LxBxG, dts_LxBxK, masks_LxB, resets_LxB, state,
                                      bias_in_step=True)


def _split(steps, chunk: int):
    """The T-long arrays of `steps` (None stays None) as n full chunks (n x chunk x ...) and the
    shorter tail (or None when chunk divides T)."""
    n_steps = jax.tree.leaves(steps)[0].shape[0]
    n_full, tail = divmod(n_steps, chunk)
    full = jax.tree.map(lambda a: a[:n_full * chunk].reshape((n_full, chunk) + a.shape[1:]), steps) if n_full else None
    return full, (jax.tree.map(lambda a: a[n_full * chunk:], steps) if tail else None)


def _unsplit(full, tail):
    """T-long arrays again from per-chunk outputs (either part may be None)."""
    parts = []
    if full is not None:
        parts.append(jax.tree.map(lambda a: a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]), full))
    if tail is not None:
        parts.append(tail)
    return jax.tree.map(lambda *p: jnp.concatenate(p, axis=0), *parts) if len(parts) > 1 else parts[0]


def _forward(cell, project, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0):
    """(final, hs_TxBxH, starts): starts are the carries each chunk began from (full chunks
    stacked; the tail's alone)."""
    def run(state, piece):
        final, hs_LxBxH = _run_chunk(cell, project, params, *piece, state)
        return final, (hs_LxBxH, state)

    full, tail = _split((xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB), chunk)
    state, full_out, tail_out = state0, None, None
    if full is not None:
        state, full_out = jax.lax.scan(run, state, full)
    if tail is not None:
        state, tail_out = run(state, tail)
    hs_TxBxH = _unsplit(None if full_out is None else full_out[0], None if tail_out is None else tail_out[0])
    starts = (None if full_out is None else full_out[1], None if tail_out is None else tail_out[1])
    return state, hs_TxBxH, starts


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def layer(cell, project, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0):
    final, hs_TxBxH, _ = _forward(cell, project, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0)
    return final, hs_TxBxH


def _layer_fwd(cell, project, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0):
    final, hs_TxBxH, starts = _forward(cell, project, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB,
                                       state0)
    return (final, hs_TxBxH), (params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, starts)


def _layer_bwd(cell, project, chunk, residuals, cotangents):
    params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, (full_starts, tail_start) = residuals
    d_final, dhs_TxBxH = cotangents

    def chunk_backward(carry, piece):
        """The vjp of one chunk, from the cotangent of its final carry: the kernel's forward again,
        then its reverse pass."""
        d_state, d_params = carry
        (xs_LxBxD, dts_LxBxK, masks_LxB, resets_LxB, dhs_LxBxH), start = piece
        _, vjp = jax.vjp(lambda p, x, dt, s: _run_chunk(cell, project, p, x, dt, masks_LxB, resets_LxB, s),
                         params, xs_LxBxD, dts_LxBxK, start)
        d_chunk, dxs_LxBxD, ddts_LxBxK, d_start = vjp((d_state, dhs_LxBxH))
        return (d_start, jax.tree.map(jnp.add, d_params, d_chunk)), (dxs_LxBxD, ddts_LxBxK)

    full, tail = _split((xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, dhs_TxBxH), chunk)
    carry = (d_final, jax.tree.map(jnp.zeros_like, params))
    full_grads = tail_grads = None
    if tail is not None:  # the last, shorter chunk first
        carry, tail_grads = chunk_backward(carry, (tail, tail_start))
    if full is not None:
        carry, full_grads = jax.lax.scan(chunk_backward, carry, (full, full_starts), reverse=True)
    d_state0, d_params = carry
    dxs_TxBxD, ddts_TxBxK = _unsplit(full_grads, tail_grads)
    return d_params, dxs_TxBxD, ddts_TxBxK, None, None, d_state0


layer.defvjp(_layer_fwd, _layer_bwd)
