"""The recurrence of `ltf.rnn` with a hand-written backward pass, for speed on CPU.

`jax.grad` of `lax.scan` accumulates dW_h = Σ_t h_{t-1}ᵀ dz_t with one small (B x H)ᵀ(B x G)
matmul inside every reverse step. Here the reverse scan carries only (dh, dc) (and the
gradients of the few small parameters that `gate_update` reads), emits dz_t at every step,
and dW_h is one large (T·B x H)ᵀ(T·B x G) matmul after the scan.

    final, hs_TxBxH = recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0)
    final, hs_TxBxH = layer(cell, params, xs_TxBxD, dts_TxBxK, masks_TxB, state0, remat=...)

Both hand `lstm`, `adaptive`, `time_aware` (with or without GRU-D's decay), `phased` and `tlstm` in float32 on CPU to
`ltf.cpu_kernel`, with remat `ltf.kernel_remat` (`kernel="off"` or LTF_CPU_KERNEL=off keeps them here): the rest is XLA.

Resets (`resets_TxB`, 1 where a new sequence starts at step t inside the window: an external
reset at a string boundary) zero the carry before the step: (C, h)_{t-1} <- (1 - r_t)(C, h)_{t-1}.
The residuals and dW_h use the carry after the reset, and the reverse scan multiplies the
cotangents of the carry by (1 - r_t), so nothing flows back across a reset.

Forward: the scan of `ltf.rnn` ((C', h') = before_step(C_{t-1}, h_{t-1}, Δt), the identity for
most cells; z_t = zs_t + h' W_h; (C_t, h_t) = gate_update(z_t, C', h', Δt); a masked step keeps
the carry and emits the carried h). `layer` projects the inputs without the bias b and adds b to
z_t inside the step, where the add fuses with the step's own (d b = Σ_t dz_t after the scan),
instead of making a pass over the T x B x G projection for it. Residuals of `recurrence`: the full
pre-activations z_t (T x B x G, so that the backward pass does not redo the recurrent matmul
step by step), C_{t-1} and the emitted h_t (T x B x H each): 6H numbers per token, what the
per-step `jax.checkpoint` of the autodiff path stores too.

Backward, step t from T down to 1, with (dh, dc) the cotangents of the carry after step t:
    dh += dhs_t
    dz_t, dC', dh'^direct, dΔt_t, dθ_t = vjp of (z_t, C', h', Δt_t, θ)
                                              -> (C_t, h_t) after the mask's where
    dh' = dh'^direct + dz_t W_hᵀ                (direct: what gate_update reads of h' itself)
    dC_{t-1}, dh_{t-1} = vjp of before_step with (dC', dh'), plus the masked step's pass-through
then dW_h = Σ_t h'ᵀ dz_t, dzs = (dz_t)_t, d state0 = the final (dC, dh). θ are the parameters
besides w_x, b, w_h (peepholes u_*, T-LSTM's w_d, b_d, ...), found generically by `jax.vjp` of
`cell.gate_update` and summed in the carry; w_x, b (and w_Δt) enter only `cell.project`, so they
get zero here and their gradient flows by ordinary autodiff through dzs. Masks get no cotangent.

Both scans take step t's inputs from their carry (`carried_scan`, which says why: XLA's CPU
fusions read a plain buffer ~3.5x faster than a dynamic slice of the scanned inputs). The
autodiff path keeps the plain scan (the carried slice would make `jax.grad` accumulate a T-long
cotangent buffer at every step).

`layer(..., remat=True)` stores only C_{t-1} and h_t (2H per token; the inputs xs are the previous
layer's output, stored anyway). It projects and runs the steps a chunk at a time, then goes back
through chunks of `remat_chunk` (REMAT_CHUNK = 256) steps, last first: per chunk it recomputes
zs = project(xs) and z = zs + h_{t-1} W_h as two large matmuls (not by rerunning the scan), runs
the reverse scan from the carried (dC, dh), and adds the chunk's share of dW_h, dW_x, ... and dxs:
pre-activations and their cotangents (4H per token each) live for one chunk at a time (2 x 8 MiB, not 2 x 512, at
B, T, H = 8, 16,384, 256).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ltf import cpu_kernel, kernel_remat
from ltf.cells.base import LSTM, LSTMState, Params
from ltf.shapes import previous_steps

# Read only by `cell.project` (w_x, b) or by the recurrent matmul (w_h): not differentiated per step.
NOT_PER_STEP = ("w_x", "b", "w_h")
# Steps per chunk of the remat backward pass: long enough that the per-chunk matmuls stay large
# (chunk·B rows), short enough that chunk x B x G pre-activations are small.
REMAT_CHUNK = 256


def recurrence(cell: LSTM, params: Params, zs_TxBxG, dts_TxBxK, masks_TxB, state0: LSTMState,
               *, unroll: int = 1, resets_TxB=None, kernel: str | None = None):
    """Runs the recurrent part of `cell` over T steps (time-major). Returns (final LSTMState, hs_TxBxH).

    `zs_TxBxG` = cell.project(params, xs, dts); `masks_TxB`, `resets_TxB` may be None (every step
    real; no reset). Differentiable in params, zs, dts and state0 with the custom backward pass above.
    kernel: "auto" (None: $LTF_CPU_KERNEL, else "auto") or "off" (`ltf.cpu_kernel.applies`).
    """
    if cpu_kernel.applies(cell, zs_TxBxG, kernel):  # (b is in zs already)
        return cpu_kernel.cell_recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0,
                                          bias_in_step=False)
    return _recurrence(cell, unroll, False, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0)


def layer(cell: LSTM, params: Params, xs_TxBxD, dts_TxBxK, masks_TxB, state0: LSTMState,
          *, unroll: int = 1, remat: bool = False, remat_chunk: int = REMAT_CHUNK, resets_TxB=None,
          kernel: str | None = None):
    """`cell.project` for all steps, then `recurrence`. Returns (final LSTMState, hs_TxBxH).

    remat: store C_{t-1}, h_t (the scans) or each chunk's first carry (the kernel: `ltf.kernel_remat`)
    and recompute the rest in the backward pass, `remat_chunk` steps at a time.
    """
    if remat:
        if remat_chunk < 1:
            raise ValueError(f"remat_chunk={remat_chunk}: must be a positive number of steps.")
        zs_like = jax.ShapeDtypeStruct(xs_TxBxD.shape[:2] + params["b"].shape, jnp.result_type(xs_TxBxD, params["b"]))
        if cpu_kernel.applies(cell, zs_like, kernel):
            return kernel_remat.layer(cell, project_without_bias, remat_chunk, params, xs_TxBxD, dts_TxBxK,
                                      masks_TxB, resets_TxB, state0)
        return _remat_layer(cell, unroll, remat_chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0)
    # the bias joins z_t inside the step (fused into the step's own add), not in a pass over zs
    zs_TxBxG = project(cell, without_bias(params), xs_TxBxD, dts_TxBxK)
    if cpu_kernel.applies(cell, zs_TxBxG, kernel):  # the kernel adds b inside its step too
        return cpu_kernel.cell_recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0,
                                          bias_in_step=True)
    return _recurrence(cell, unroll, True, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0)


def without_bias(params: Params) -> Params:
    """params with b = 0: `cell.project` then gives the pre-activations without the bias (every
    cell adds b to z as its last term; XLA drops the add of zeros)."""
    return {**params, "b": jnp.zeros_like(params["b"])}


def project_without_bias(cell: LSTM, params: Params, xs_TxBxD, dts_TxBxK):
    return project(cell, without_bias(params), xs_TxBxD, dts_TxBxK)


def project(cell: LSTM, params: Params, xs_TxBxD, dts_TxBxK):
    """cell.project on T·B rows: its backward matmuls then contract one axis, not (T, B), which
    XLA on CPU runs about twice as fast."""
    zs_NxG = cell.project(params, xs_TxBxD.reshape(-1, xs_TxBxD.shape[-1]),
                          dts_TxBxK.reshape(-1, dts_TxBxK.shape[-1]))
    return zs_NxG.reshape(xs_TxBxD.shape[:2] + zs_NxG.shape[-1:])


def _keep(m_B, new, old):
    """A masked step (m = 0) keeps the old value."""
    return jnp.where(m_B[:, None] > 0, new, old)


def _kept(r_B, x_BxH):
    """The carry after a reset: zero in the rows that start a new sequence (r = 1)."""
    return x_BxH if r_B is None else x_BxH * (1 - r_B)[:, None].astype(x_BxH.dtype)


def transposed(w_HxG):
    """w.T materialised (G x H, row-major; the barrier keeps it a copy). XLA would otherwise fold the
    transpose into the dot, and on CPU a small matmul against a transposed operand in a loop runs
    slower (177–252 vs 143–159 µs per step with a tanh at B = 32, H = 256: `bench_profile.py scan`)."""
    return jax.lax.optimization_barrier(jnp.transpose(w_HxG))


def carried_scan(body, init, xs, *, reverse: bool = False, unroll: int = 1, overwrite: bool = False):
    """`jax.lax.scan(body, init, xs, reverse=reverse)`, with each step's slice of `xs` handed to
    `body` from the loop carry: step t copies the inputs of the next step (t + 1, or t − 1 in
    reverse) into the carry, so that the fused kernels of step t + 1 read a plain buffer, not a
    dynamic slice (the LSTM gate math: 31 against 108 µs per step at B = 32, H = 256;
    `scripts/bench_profile.py scan`). For the custom-VJP scans only (not for `jax.grad`).

    overwrite: `xs[0]` is a T-long buffer that step t reads at t and then overwrites with its
    first output, `ys[0]` (the forward writes the full z_t over the projection zs_t, the backward
    dz_t over z_t). That output then needs no buffer of its own, which a scan would fill with
    zeros first; XLA updates the dead input in place.
    """
    n_steps = jax.tree.leaves(xs)[0].shape[0]
    take = lambda xs, i: jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), xs)

    def carried_body(state, t):
        carry, x_t, buffer = state
        carry, y_t = body(carry, x_t)
        if overwrite:  # write step t's output over its input, then read step t ± 1 from the result
            buffer = jax.lax.dynamic_update_index_in_dim(buffer, y_t[0], t, 0)
            y_t = y_t[1:]
        inputs = (buffer,) + tuple(xs[1:]) if overwrite else xs
        x_next = take(inputs, jnp.clip(t - 1 if reverse else t + 1, 0, n_steps - 1))  # the last one is unused
        return (carry, x_next, buffer), y_t

    buffer0 = xs[0] if overwrite else None
    (carry, _, buffer), ys = jax.lax.scan(carried_body, (init, take(xs, n_steps - 1 if reverse else 0), buffer0),
                                          jnp.arange(n_steps), reverse=reverse, unroll=unroll)
    return carry, ((buffer,) + tuple(ys) if overwrite else ys)


def forward(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0, *, emit, remat=False,
            resets_TxB=None, carried: bool = False, bias_in_step: bool = False, overwrite: bool = False):
    """The forward scan; `emit` picks what each step outputs from (h_t, z_t, C_{t-1}), with
    C_{t-1} after the step's reset (and before the cell's `before_step`). `bias_in_step`: zs
    come without the bias (`without_bias`), and each step adds params["b"] to z_t.

    Also the whole of the autodiff path of `ltf.rnn` (differentiated by `jax.grad`, with
    `remat` checkpointing each step there). `carried`: inputs through the carry
    (`carried_scan`), for the custom-VJP paths, which `jax.grad` never differentiates;
    `overwrite` (with `carried`): `emit`'s first output is z_t, written over zs in place.
    """
    w_rec_HxG = cell.recurrent_weight(params)
    bias_1xG = params["b"][None] if bias_in_step else None

    def body(carry: LSTMState, step_in):
        z_BxG, dt_BxK, m_B, r_B = step_in
        c_prev, h_prev_BxH = _kept(r_B, carry.c), _kept(r_B, carry.h)
        c_in, h_in_BxH = carry_in(cell, params, c_prev, h_prev_BxH, dt_BxK)
        z_BxG = z_BxG + h_in_BxH @ w_rec_HxG  # the one recurrent matmul, H x G
        if bias_1xG is not None:
            z_BxG = z_BxG + bias_1xG
        c_BxH, h_BxH = cell.gate_update(params, z_BxG, c_in, h_in_BxH, dt_BxK)
        if m_B is not None:  # a masked step keeps the carry (after its reset, before any decay)
            c_BxH, h_BxH = _keep(m_B, c_BxH, c_prev), _keep(m_B, h_BxH, h_prev_BxH)
        return LSTMState(c_BxH, h_BxH), emit(h_BxH, z_BxG, c_prev)

    if remat:
        body = jax.checkpoint(body)
    steps = (zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB)
    if carried:
        return carried_scan(body, state0, steps, unroll=unroll, overwrite=overwrite)
    return jax.lax.scan(body, state0, steps, unroll=unroll)


def carry_in(cell, params, c_prev, h_prev_BxH, dt_BxK):
    """(C', h'): the carry as the step's gates see it, after `cell.before_step` (GRU-D's decay,
    the continuous-time LSTM's relaxation over Δt); the carry itself for the cells without one."""
    if not cell.changes_carry:
        return c_prev, h_prev_BxH
    return cell.before_step(params, c_prev, h_prev_BxH, dt_BxK)


def _recurrent_weight_grad(cell, params, dw_rec_HxG) -> dict:
    """d params of dW = Σ_t h'ᵀ dz_t, through `cell.recurrent_weight` (W_h itself for most cells)."""
    if type(cell).recurrent_weight is LSTM.recurrent_weight:
        return {"w_h": dw_rec_HxG}
    _, vjp = jax.vjp(cell.recurrent_weight, params)
    (d_params,) = vjp(dw_rec_HxG)
    return d_params


def _backward(cell, unroll, params, zfull_TxBxG, c_prev_TxBxH, h_prev_TxBxH, dts_TxBxK, masks_TxB,
              resets_TxB, d_final, dhs_TxBxH):
    """The reverse scan and dW_h after it. Returns (d params, dzs, d dts, d state0).

    `c_prev`, `h_prev` are the carries before each step, after its reset and before any
    `before_step`; `zfull` are the pre-activations from the carry after `before_step`."""
    w_rec = cell.recurrent_weight(params)
    w_rec_t = transposed(w_rec)  # G x H, row-major: the per-step dz_t W_hᵀ as a plain matmul
    small = {k: v for k, v in params.items() if k not in NOT_PER_STEP}
    # The plain LSTM step without a mask: h_{t-1} reaches (C_t, h_t) only through z_t.
    plain = masks_TxB is None and not cell.changes_carry and not cell.reads_h_prev

    def carry_in_small(small, c_prev, h_prev_BxH, dt_BxK):
        return carry_in(cell, {**params, **small}, c_prev, h_prev_BxH, dt_BxK)

    def after_matmul(small, z_BxG, c_in, h_in_BxH, c_prev, h_prev_BxH, dt_BxK, m_B):
        """(C_t, h_t) as the forward step computes them from z_t and the carry (C', h')."""
        c_BxH, h_BxH = cell.gate_update({**params, **small}, z_BxG, c_in, h_in_BxH, dt_BxK)
        if m_B is None:
            return c_BxH, h_BxH
        return _keep(m_B, c_BxH, c_prev), _keep(m_B, h_BxH, h_prev_BxH)

    def body(carry, step_in):
        dh_BxH, dc_BxH, d_small = carry
        z_BxG, c_prev, h_prev_BxH, dt_BxK, m_B, r_B, dh_out_BxH = step_in
        dh_BxH = dh_BxH + dh_out_BxH
        if plain:
            _, vjp = jax.vjp(lambda s, z, c, dt: after_matmul(s, z, c, None, None, None, dt, None),
                             small, z_BxG, c_prev, dt_BxK)
            ds, dz_BxG, dc_prev, ddt_BxK = vjp((dc_BxH, dh_BxH))
            dh_prev_BxH = dz_BxG @ w_rec_t
            h_in_BxH = None
        else:
            (c_in, h_in_BxH), before_vjp = jax.vjp(carry_in_small, small, c_prev, h_prev_BxH, dt_BxK)
            _, vjp = jax.vjp(lambda *a: after_matmul(*a, m_B), small, z_BxG, c_in, h_in_BxH, c_prev,
                             h_prev_BxH, dt_BxK)
            ds, dz_BxG, dc_in, dh_in_BxH, dc_direct, dh_direct_BxH, ddt_BxK = vjp((dc_BxH, dh_BxH))
            dh_in_BxH = dh_in_BxH + dz_BxG @ w_rec_t
            ds_in, dc_prev, dh_prev_BxH, ddt_in = before_vjp((dc_in, dh_in_BxH))
            ds = jax.tree.map(jnp.add, ds, ds_in)
            dc_prev, dh_prev_BxH, ddt_BxK = dc_prev + dc_direct, dh_prev_BxH + dh_direct_BxH, ddt_BxK + ddt_in
            h_in_BxH = h_in_BxH if cell.changes_carry else None
        d_small = jax.tree.map(jnp.add, d_small, ds)
        # the cotangents of the carry before the reset (zero across it)
        return (_kept(r_B, dh_prev_BxH), _kept(r_B, dc_prev), d_small), (dz_BxG, ddt_BxK, h_in_BxH)

    carry0 = (d_final.h, d_final.c, jax.tree.map(jnp.zeros_like, small))
    # h_{t-1} is read in the reverse scan only by the general step (masks, before_step, h' read).
    h_prev_in = None if plain else h_prev_TxBxH
    # dz_t is written over z_t, which no later (earlier in time) step reads
    (dh0_BxH, dc0, d_small), (dzs_TxBxG, ddts_TxBxK, h_in_TxBxH) = carried_scan(
            body, carry0, (zfull_TxBxG, c_prev_TxBxH, h_prev_in, dts_TxBxK, masks_TxB, resets_TxB, dhs_TxBxH),
            reverse=True, unroll=unroll, overwrite=True)

    if h_in_TxBxH is None:  # no before_step: the matmul read the carried h itself
        h_in_TxBxH = h_prev_TxBxH
    d_hidden, n_gates_x_h = w_rec.shape
    # dW_h = Σ_t h'_{t-1}ᵀ dz_t: one (T·B x H)ᵀ(T·B x G) matmul after the scan
    dw_rec = h_in_TxBxH.reshape(-1, d_hidden).T @ dzs_TxBxG.reshape(-1, n_gates_x_h)
    d_params = {k: jnp.zeros_like(v) for k, v in params.items()}
    d_params.update(d_small)
    for k, v in _recurrent_weight_grad(cell, params, dw_rec).items():
        d_params[k] = d_params[k] + v
    return d_params, dzs_TxBxG, ddts_TxBxK, LSTMState(c=dc0, h=dh0_BxH)


# -- recurrence: zs in, residuals z, C_{t-1}, h_t --------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _recurrence(cell, unroll, bias_in_step, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0):
    return forward(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0,
                   emit=lambda h, z, c_prev: h, resets_TxB=resets_TxB, carried=True, bias_in_step=bias_in_step)


def _recurrence_fwd(cell, unroll, bias_in_step, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0):
    final, (zfull_TxBxG, hs_TxBxH, c_prev_TxBxH) = forward(
            cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0, emit=lambda h, z, c_prev: (z, h, c_prev),
            resets_TxB=resets_TxB, carried=True, bias_in_step=bias_in_step, overwrite=True)
    residuals = (params, zfull_TxBxG, c_prev_TxBxH, hs_TxBxH, dts_TxBxK, masks_TxB, resets_TxB, state0.h)
    return (final, hs_TxBxH), residuals


def _recurrence_bwd(cell, unroll, bias_in_step, residuals, cotangents):
    params, zfull_TxBxG, c_prev_TxBxH, hs_TxBxH, dts_TxBxK, masks_TxB, resets_TxB, h0_BxH = residuals
    d_final, dhs_TxBxH = cotangents
    d_params, dzs_TxBxG, ddts_TxBxK, d_state0 = _backward(
            cell, unroll, params, zfull_TxBxG, c_prev_TxBxH, previous_steps(h0_BxH, hs_TxBxH, resets_TxB),
            dts_TxBxK, masks_TxB, resets_TxB, d_final, dhs_TxBxH)
    if bias_in_step:  # d b = Σ_t dz_t, as for any addend of z_t
        d_params["b"] = d_params["b"] + jnp.sum(dzs_TxBxG, axis=(0, 1))
    return d_params, dzs_TxBxG, ddts_TxBxK, None, None, d_state0


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


# -- remat layer: xs in, residuals C_{t-1}, h_t only; the backward pass chunk by chunk ----------

def _chunked_forward(cell, unroll, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0, emit):
    """The forward pass `chunk` steps at a time, each chunk projected on its own: the
    pre-activations are never live for all T steps at once (projected whole, the T x B x G zs
    alone outweighed what remat saves)."""
    def run(state, piece):
        xs_LxBxD, dts_LxBxK, masks_LxB, resets_LxB = piece
        zs_LxBxG = project(cell, params, xs_LxBxD, dts_LxBxK)
        return forward(cell, unroll, params, zs_LxBxG, dts_LxBxK, masks_LxB, state, emit=emit,
                       resets_TxB=resets_LxB, carried=True)

    steps = (xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB)
    n_full, tail = divmod(xs_TxBxD.shape[0], chunk)
    state, outputs = state0, []
    if n_full:
        chunks = jax.tree.map(lambda a: a[:n_full * chunk].reshape((n_full, chunk) + a.shape[1:]), steps)
        state, full = jax.lax.scan(run, state, chunks)
        outputs.append(jax.tree.map(lambda a: a.reshape((n_full * chunk,) + a.shape[2:]), full))
    if tail:
        state, last = run(state, jax.tree.map(lambda a: a[n_full * chunk:], steps))
        outputs.append(last)
    return state, jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=0), *outputs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _remat_layer(cell, unroll, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0):
    return _chunked_forward(cell, unroll, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0,
                            emit=lambda h, z, c_prev: h)


def _remat_layer_fwd(cell, unroll, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0):
    final, (hs_TxBxH, c_prev_TxBxH) = _chunked_forward(
            cell, unroll, chunk, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0,
            emit=lambda h, z, c_prev: (h, c_prev))
    residuals = (params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, c_prev_TxBxH, hs_TxBxH, state0.h)
    return (final, hs_TxBxH), residuals


def _remat_layer_bwd(cell, unroll, chunk, residuals, cotangents):
    params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, c_prev_TxBxH, hs_TxBxH, h0_BxH = residuals
    d_final, dhs_TxBxH = cotangents
    steps = (xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, c_prev_TxBxH,
             previous_steps(h0_BxH, hs_TxBxH, resets_TxB), dhs_TxBxH)  # each T x ... (None stays None)

    def chunk_backward(carry, piece):
        """The backward pass over one chunk of L steps, from the cotangents of its last carry."""
        d_state, d_params = carry
        xs_LxBxD, dts_LxBxK, masks_LxB, resets_LxB, c_prev_LxBxH, h_prev_LxBxH, dhs_LxBxH = piece
        zs_LxBxG, project_vjp = jax.vjp(functools.partial(project, cell), params, xs_LxBxD, dts_LxBxK)
        h_in_LxBxH = h_prev_LxBxH
        if cell.changes_carry:  # h' of every step of the chunk, from the stored carries
            h_in_LxBxH = jax.vmap(lambda c, h, dt: carry_in(cell, params, c, h, dt)[1])(
                    c_prev_LxBxH, h_prev_LxBxH, dts_LxBxK)
        zfull_LxBxG = zs_LxBxG + h_in_LxBxH @ cell.recurrent_weight(params)  # the chunk's steps at once
        d_chunk, dzs_LxBxG, ddts_LxBxK, d_state = _backward(
                cell, unroll, params, zfull_LxBxG, c_prev_LxBxH, h_prev_LxBxH, dts_LxBxK, masks_LxB,
                resets_LxB, d_state, dhs_LxBxH)
        d_project, dxs_LxBxD, ddts_project = project_vjp(dzs_LxBxG)
        d_params = jax.tree.map(lambda a, b, c: a + b + c, d_params, d_chunk, d_project)
        return (d_state, d_params), (dxs_LxBxD, ddts_LxBxK + ddts_project)

    n_steps = xs_TxBxD.shape[0]
    n_full, tail = divmod(n_steps, chunk)
    carry = (d_final, jax.tree.map(jnp.zeros_like, params))
    grads = []  # (dxs, ddts) of the tail, then of the full chunks: put back in time order below
    if tail:  # the last, shorter chunk first
        carry, tail_grads = chunk_backward(carry, jax.tree.map(lambda a: a[n_full * chunk:], steps))
        grads.append(tail_grads)
    if n_full:
        chunks = jax.tree.map(lambda a: a[:n_full * chunk].reshape((n_full, chunk) + a.shape[1:]), steps)
        carry, full_grads = jax.lax.scan(chunk_backward, carry, chunks, reverse=True)
        grads.insert(0, jax.tree.map(lambda a: a.reshape((n_full * chunk,) + a.shape[2:]), full_grads))
    (d_state0, d_params) = carry
    dxs_TxBxD, ddts_TxBxK = (jnp.concatenate(parts, axis=0) for parts in zip(*grads))
    return d_params, dxs_TxBxD, ddts_TxBxK, None, None, d_state0


_remat_layer.defvjp(_remat_layer_fwd, _remat_layer_bwd)
