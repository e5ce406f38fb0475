"""The recurrence of `ltf.rnn` with a hand-written backward pass, for speed on CPU.

`jax.grad` of `lax.scan` accumulates dW_h = Σ_t h_{t-1}ᵀ dz_t with one small (B x H)ᵀ(B x G)
matmul inside every reverse step. Here the reverse scan carries only (dh, dc) (and the
gradients of the few small parameters that `gate_update` reads), emits dz_t at every step,
and dW_h is one large (T·B x H)ᵀ(T·B x G) matmul after the scan.

    final, hs_TxBxH = recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0)
    final, hs_TxBxH = layer(cell, params, xs_TxBxD, dts_TxBxK, masks_TxB, state0, remat=...)

Resets (`resets_TxB`, 1 where a new sequence starts at step t inside the window: an external
reset at a string boundary) zero the carry before the step: (C, h)_{t-1} <- (1 - r_t)(C, h)_{t-1}.
The residuals and dW_h use the carry after the reset, and the reverse scan multiplies the
cotangents of the carry by (1 - r_t), so nothing flows back across a reset.

Forward: the scan of `ltf.rnn` (z_t = zs_t + h_{t-1} W_h; (C_t, h_t) = gate_update(z_t, C_{t-1}, Δt);
a masked step keeps the carry and emits the carried h). Residuals of `recurrence`: the full
pre-activations z_t (T x B x G, so that the backward pass does not redo the recurrent matmul
step by step), C_{t-1} and the emitted h_t (T x B x H each): 6H numbers per token, what the
per-step `jax.checkpoint` of the autodiff path stores too.

Backward, step t from T down to 1, with (dh, dc) the cotangents of the carry after step t:
    dh += dhs_t
    dz_t, dC_{t-1}, dh_{t-1}^direct, dΔt_t, dθ_t = vjp of (z_t, C_{t-1}, h_{t-1}, Δt_t, θ)
                                                      -> (C_t, h_t) after the mask's where
    dh_{t-1} = dh_{t-1}^direct + dz_t W_hᵀ             (direct: the masked step's pass-through)
then dW_h = Σ_t h_{t-1}ᵀ dz_t, dzs = (dz_t)_t, d state0 = the final (dC, dh). θ are the parameters
besides w_x, b, w_h (peepholes u_*, T-LSTM's w_d, b_d, ...), found generically by `jax.vjp` of
`cell.gate_update` and summed in the carry; w_x, b (and w_Δt) enter only `cell.project`, so they
get zero here and their gradient flows by ordinary autodiff through dzs. Masks get no cotangent.

`layer(..., remat=True)` stores only C_{t-1} and h_t (2H per token; the inputs xs are the
previous layer's output, stored anyway) and recomputes zs = project(xs) and z = zs + h_{t-1} W_h
in the backward pass as two large matmuls over all steps, not by rerunning the scan.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ltf.cells import LSTM, LSTMState, Params

# Read only by `cell.project` (w_x, b) or by the recurrent matmul (w_h): not differentiated per step.
NOT_PER_STEP = ("w_x", "b", "w_h")


def recurrence(cell: LSTM, params: Params, zs_TxBxG, dts_TxBxK, masks_TxB, state0: LSTMState,
               *, unroll: int = 1, resets_TxB=None):
    """Runs the recurrent part of `cell` over T steps (time-major). Returns (final LSTMState, hs_TxBxH).

    `zs_TxBxG` = cell.project(params, xs, dts); `masks_TxB`, `resets_TxB` may be None (every step
    real; no reset). Differentiable in params, zs, dts and state0 with the custom backward pass above.
    """
    return _recurrence(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0)


def layer(cell: LSTM, params: Params, xs_TxBxD, dts_TxBxK, masks_TxB, state0: LSTMState,
          *, unroll: int = 1, remat: bool = False, resets_TxB=None):
    """`cell.project` for all steps, then `recurrence`. Returns (final LSTMState, hs_TxBxH).

    remat: store only C_{t-1}, h_t and recompute the pre-activations in the backward pass.
    """
    if remat:
        return _remat_layer(cell, unroll, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0)
    zs_TxBxG = project(cell, params, xs_TxBxD, dts_TxBxK)
    return _recurrence(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0)


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


def forward(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0, *, emit, remat=False,
            resets_TxB=None):
    """The forward scan; `emit` picks what each step outputs from (h_t, z_t, C_{t-1}), with
    C_{t-1} after the step's reset.

    Also the whole of the autodiff path of `ltf.rnn` (differentiated by `jax.grad`, with
    `remat` checkpointing each step there).
    """
    def body(carry: LSTMState, step_in):
        z_BxG, dt_BxK, m_B, r_B = step_in
        carry = LSTMState(_kept(r_B, carry.c), _kept(r_B, carry.h))
        z_BxG = z_BxG + carry.h @ params["w_h"]  # the one recurrent matmul, H x G
        c_BxH, h_BxH = cell.gate_update(params, z_BxG, carry.c, dt_BxK)
        if m_B is not None:
            c_BxH, h_BxH = _keep(m_B, c_BxH, carry.c), _keep(m_B, h_BxH, carry.h)
        return LSTMState(c_BxH, h_BxH), emit(h_BxH, z_BxG, carry.c)

    if remat:
        body = jax.checkpoint(body)
    return jax.lax.scan(body, state0, (zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB), unroll=unroll)


def _previous(h0_BxH, hs_TxBxH, resets_TxB):
    """h_{t-1} for every step, after its reset: h0, h_1, ..., h_{T-1}."""
    h_prev_TxBxH = jnp.concatenate([h0_BxH[None], hs_TxBxH[:-1]], axis=0)
    if resets_TxB is None:
        return h_prev_TxBxH
    return h_prev_TxBxH * (1 - resets_TxB)[..., None].astype(h_prev_TxBxH.dtype)


def _backward(cell, unroll, params, zfull_TxBxG, c_prev_TxBxH, h_prev_TxBxH, dts_TxBxK, masks_TxB,
              resets_TxB, d_final, dhs_TxBxH):
    """The reverse scan and dW_h after it. Returns (d params, dzs, d dts, d state0)."""
    w_h = params["w_h"]
    small = {k: v for k, v in params.items() if k not in NOT_PER_STEP}

    def step(small, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK, m_B):
        """(C_t, h_t) as the forward step computes them, from the full pre-activations z_t."""
        c_BxH, h_BxH = cell.gate_update({**params, **small}, z_BxG, c_prev_BxH, dt_BxK)
        if m_B is None:
            return c_BxH, h_BxH
        return _keep(m_B, c_BxH, c_prev_BxH), _keep(m_B, h_BxH, h_prev_BxH)

    def body(carry, step_in):
        dh_BxH, dc_BxH, d_small = carry
        z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK, m_B, r_B, dh_out_BxH = step_in
        dh_BxH = dh_BxH + dh_out_BxH
        if m_B is None:  # h_{t-1} reaches (C_t, h_t) only through z_t
            _, vjp = jax.vjp(lambda s, z, c, dt: step(s, z, c, None, dt, None),
                             small, z_BxG, c_prev_BxH, dt_BxK)
            ds, dz_BxG, dc_prev_BxH, ddt_BxK = vjp((dc_BxH, dh_BxH))
            dh_prev_BxH = dz_BxG @ w_h.T
        else:
            _, vjp = jax.vjp(lambda s, z, c, h, dt: step(s, z, c, h, dt, m_B),
                             small, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK)
            ds, dz_BxG, dc_prev_BxH, dh_direct_BxH, ddt_BxK = vjp((dc_BxH, dh_BxH))
            dh_prev_BxH = dh_direct_BxH + dz_BxG @ w_h.T
        d_small = jax.tree.map(jnp.add, d_small, ds)
        # the cotangents of the carry before the reset (zero across it)
        return (_kept(r_B, dh_prev_BxH), _kept(r_B, dc_prev_BxH), d_small), (dz_BxG, ddt_BxK)

    carry0 = (d_final.h, d_final.c, jax.tree.map(jnp.zeros_like, small))
    # h_{t-1} is read in the reverse scan only for the pass-through of masked steps.
    h_prev_in = None if masks_TxB is None else h_prev_TxBxH
    (dh0_BxH, dc0_BxH, d_small), (dzs_TxBxG, ddts_TxBxK) = jax.lax.scan(
            body, carry0, (zfull_TxBxG, c_prev_TxBxH, h_prev_in, dts_TxBxK, masks_TxB, resets_TxB, dhs_TxBxH),
            reverse=True, unroll=unroll)

    d_hidden, n_gates_x_h = w_h.shape
    # dW_h = Σ_t h_{t-1}ᵀ dz_t: one (T·B x H)ᵀ(T·B x G) matmul after the scan
    dw_h = h_prev_TxBxH.reshape(-1, d_hidden).T @ dzs_TxBxG.reshape(-1, n_gates_x_h)
    d_params = {k: jnp.zeros_like(v) for k, v in params.items()}
    d_params.update(d_small, w_h=dw_h)
    return d_params, dzs_TxBxG, ddts_TxBxK, LSTMState(c=dc0_BxH, h=dh0_BxH)


# -- recurrence: zs in, residuals z, C_{t-1}, h_t --------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _recurrence(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0):
    return forward(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0,
                    emit=lambda h, z, c_prev: h, resets_TxB=resets_TxB)


def _recurrence_fwd(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, resets_TxB, state0):
    final, (hs_TxBxH, zfull_TxBxG, c_prev_TxBxH) = forward(
            cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0, emit=lambda *out: out,
            resets_TxB=resets_TxB)
    residuals = (params, zfull_TxBxG, c_prev_TxBxH, hs_TxBxH, dts_TxBxK, masks_TxB, resets_TxB, state0.h)
    return (final, hs_TxBxH), residuals


def _recurrence_bwd(cell, unroll, residuals, cotangents):
    params, zfull_TxBxG, c_prev_TxBxH, hs_TxBxH, dts_TxBxK, masks_TxB, resets_TxB, h0_BxH = residuals
    d_final, dhs_TxBxH = cotangents
    d_params, dzs_TxBxG, ddts_TxBxK, d_state0 = _backward(
            cell, unroll, params, zfull_TxBxG, c_prev_TxBxH, _previous(h0_BxH, hs_TxBxH, resets_TxB),
            dts_TxBxK, masks_TxB, resets_TxB, d_final, dhs_TxBxH)
    return d_params, dzs_TxBxG, ddts_TxBxK, None, None, d_state0


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


# -- remat layer: xs in, residuals C_{t-1}, h_t only --------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _remat_layer(cell, unroll, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0):
    zs_TxBxG = project(cell, params, xs_TxBxD, dts_TxBxK)
    return forward(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0,
                    emit=lambda h, z, c_prev: h, resets_TxB=resets_TxB)


def _remat_layer_fwd(cell, unroll, params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, state0):
    zs_TxBxG = project(cell, params, xs_TxBxD, dts_TxBxK)
    final, (hs_TxBxH, c_prev_TxBxH) = forward(
            cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state0,
            emit=lambda h, z, c_prev: (h, c_prev), resets_TxB=resets_TxB)
    residuals = (params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, c_prev_TxBxH, hs_TxBxH, state0.h)
    return (final, hs_TxBxH), residuals


def _remat_layer_bwd(cell, unroll, residuals, cotangents):
    params, xs_TxBxD, dts_TxBxK, masks_TxB, resets_TxB, c_prev_TxBxH, hs_TxBxH, h0_BxH = residuals
    d_final, dhs_TxBxH = cotangents
    zs_TxBxG, project_vjp = jax.vjp(functools.partial(project, cell), params, xs_TxBxD, dts_TxBxK)
    h_prev_TxBxH = _previous(h0_BxH, hs_TxBxH, resets_TxB)
    zfull_TxBxG = zs_TxBxG + h_prev_TxBxH @ params["w_h"]  # all steps at once
    d_params, dzs_TxBxG, ddts_TxBxK, d_state0 = _backward(
            cell, unroll, params, zfull_TxBxG, c_prev_TxBxH, h_prev_TxBxH, dts_TxBxK, masks_TxB,
            resets_TxB, d_final, dhs_TxBxH)
    d_params_project, dxs_TxBxD, ddts_project = project_vjp(dzs_TxBxG)
    d_params = jax.tree.map(jnp.add, d_params, d_params_project)
    return d_params, dxs_TxBxD, ddts_TxBxK + ddts_project, None, None, d_state0


_remat_layer.defvjp(_remat_layer_fwd, _remat_layer_bwd)
