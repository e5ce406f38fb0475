"""The "+attention" arm: attention of each h_t over the earlier hidden states, after the scan.

For every step t, over the allowed keys i (causal i ≤ t; optionally a local window i ≥ t − w;
padded steps excluded, but i = t always allowed so that no row is empty):

    e_{t,i} = vᵀ tanh(q_t + k_i),   q = h W_q + b_a,  k = h W_k    "additive" (Bahdanau et al. 2015,
                                                                     W_a[h_t, h_i] split in two)
    e_{t,i} = (h_t W_q)·(h_i W_k) / sqrt(A)                          "dot" (scaled, cheaper)
    α_{t,·} = normalise(e_{t,·})    softmax | sparsemax | entmax15 | topk (ltf.normalisers)
    c_t     = Σ_i α_{t,i} h_i
    h̃_t     = tanh(W_c[h_t, c_t] + b_c)

The output does not feed back into the recurrence, so all T steps run in parallel. Memory:
the additive scores need a B x T x K x A tensor (K keys per query). Two ways to bound it:

* `window=w` computes only the band: each query gathers its own w + 1 keys (K = w + 1).
* `query_chunk=C` runs blocks of C queries one after another (`lax.map`) with each block
  rematerialised in the backward pass (`jax.checkpoint`), so only B x C x K x A is live.
  Without remat the backward pass would keep every block's tanh and undo the saving.
  Without a window every block scores all T keys (the future ones masked): simple static
  shapes at up to twice the arithmetic of the causal triangle.

Both combine. Dot-product scores with a window run in local blocks instead (`_attend_local`):
query block j (C = max(w, 16) steps) scores the C + w keys from jC − w in one batched matmul,
so scores cost B x T x (C + w), not B x T x T (at T = 1,024, w = 64: an eighth); live memory
is that too, and `query_chunk` is not needed there. Outputs at padded steps are finite but
meaningless; mask them downstream.

A model that reads only the last step (a per-sequence head) passes `last_only=True`: one query,
h̃ of step T − 1 alone, the same values as the last row of the full computation at 1/T of the cost.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp

from ltf.shapes import lead
from ltf.normalisers import NORMALISERS, entmax15, sparsemax  # noqa: F401  (re-exported)

Array = jax.Array
SCORES = ("additive", "dot")
LOCAL_BLOCK_MIN = 16  # smallest query block of the local dot-product path (keeps the matmuls useful)


def _choice(field: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"{field}={value!r}: allowed values are {tuple(allowed)}.")


def _positive(field: str, value, *, allow_none: bool = True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{field}={value!r}: must be a positive integer{' or None' if allow_none else ''}.")


def init(key, d_hidden: int, d_attn: int | None = None, *, score: str = "additive") -> dict:
    """Parameters: w_q, w_k (H x A); additive adds b_a, v (A); w_c (2H x H), b_c (H)."""
    _choice("score", score, SCORES)
    d_attn = d_hidden if d_attn is None else d_attn
    _positive("d_hidden", d_hidden, allow_none=False)
    _positive("d_attn", d_attn)
    k_q, k_k, k_v, k_c = jax.random.split(key, 4)
    normal = jax.random.normal
    params = {
        "w_q": normal(k_q, (d_hidden, d_attn)) / math.sqrt(d_hidden),
        "w_k": normal(k_k, (d_hidden, d_attn)) / math.sqrt(d_hidden),
        "w_c": normal(k_c, (2 * d_hidden, d_hidden)) / math.sqrt(2 * d_hidden),
        "b_c": jnp.zeros((d_hidden,)),
    }
    if score == "additive":
        params["b_a"] = jnp.zeros((d_attn,))
        params["v"] = normal(k_v, (d_attn,)) / math.sqrt(d_attn)
    return params


def _attend_block(params, start, q_BxTxA, k_BxSxA, hs_BxSxH, valid_BxS, *, chunk: int,
                  window: int | None, band: bool, score: str, normalise, with_weights: bool):
    """Queries t ∈ [start, start + chunk). Returns (h̃_BxCxH, α_BxCxS or None).

    Without `band` the keys are all S = T steps (a window is then a mask). With it they are
    front-padded by w (S = T + w), and query t gathers the w + 1 keys at padded indices t .. t + w.
    """
    front = window if band else 0
    q_BxCxA = jax.lax.dynamic_slice_in_dim(q_BxTxA, start, chunk, axis=1)
    h_BxCxH = jax.lax.dynamic_slice_in_dim(hs_BxSxH, start + front, chunk, axis=1)
    t_C = start + jnp.arange(chunk)
    if not band:
        pos_CxK = jnp.broadcast_to(jnp.arange(k_BxSxA.shape[1])[None, :], (chunk, k_BxSxA.shape[1]))
        keys_BxCxKxA, vals_BxKxH = k_BxSxA[:, None], hs_BxSxH  # C = 1: shared by the block
        key_valid_BxCxK = jnp.broadcast_to(valid_BxS[:, None, :], (valid_BxS.shape[0],) + pos_CxK.shape)
    else:
        idx_CxK = t_C[:, None] + jnp.arange(window + 1)[None, :]  # padded index of key t − w + j
        pos_CxK = idx_CxK - window
        keys_BxCxKxA = k_BxSxA[:, idx_CxK]  # B x C x K x A: the band only
        vals_BxCxKxH = hs_BxSxH[:, idx_CxK]
        key_valid_BxCxK = valid_BxS[:, idx_CxK]
    diag_CxK = pos_CxK == t_C[:, None]
    oldest_C = t_C - window if window is not None else jnp.zeros_like(t_C)
    causal_CxK = (pos_CxK <= t_C[:, None]) & (pos_CxK >= jnp.maximum(oldest_C, 0)[:, None])
    allowed_BxCxK = causal_CxK[None] & (key_valid_BxCxK | diag_CxK[None])

    if score == "additive":  # e_{t,i} = vᵀ tanh(q_t + k_i)
        e_BxCxK = jnp.einsum("bcka,a->bck", jnp.tanh(q_BxCxA[:, :, None, :] + keys_BxCxKxA), params["v"])
    elif not band:  # e_{t,i} = q_t·k_i / sqrt(A)
        e_BxCxK = jnp.einsum("bca,bka->bck", q_BxCxA, k_BxSxA) / math.sqrt(q_BxCxA.shape[-1])
    else:
        e_BxCxK = jnp.einsum("bca,bcka->bck", q_BxCxA, keys_BxCxKxA) / math.sqrt(q_BxCxA.shape[-1])

    alpha_BxCxK = normalise(e_BxCxK, allowed_BxCxK)
    if not band:  # c_t = Σ_i α_{t,i} h_i
        c_BxCxH = jnp.einsum("bck,bkh->bch", alpha_BxCxK, vals_BxKxH)
    else:
        c_BxCxH = jnp.einsum("bck,bckh->bch", alpha_BxCxK, vals_BxCxKxH)
    h_tilde_BxCxH = _output(params, h_BxCxH, c_BxCxH)

    if not with_weights:
        return h_tilde_BxCxH, None
    if band:  # scatter the band back into rows over all S padded steps
        idx_BxCxK = jnp.broadcast_to((pos_CxK + window)[None], alpha_BxCxK.shape)
        alpha_BxCxK = jnp.put_along_axis(jnp.zeros(alpha_BxCxK.shape[:2] + (hs_BxSxH.shape[1],), alpha_BxCxK.dtype),
                                         idx_BxCxK, alpha_BxCxK, axis=-1, inplace=False)[:, :, window:]
    return h_tilde_BxCxH, alpha_BxCxK


def _output(params, h_BxCxH, c_BxCxH):
    """h̃_t = tanh(W_c[h_t, c_t] + b_c), without materialising the concat."""
    d_hidden = h_BxCxH.shape[-1]
    w_c = params["w_c"]
    pre_BxCxH = h_BxCxH @ w_c[:d_hidden] + c_BxCxH @ w_c[d_hidden:]
    return jnp.tanh(pre_BxCxH + lead(params["b_c"], pre_BxCxH))


def _attend_local(params, q_BxTxA, k_BxTxA, hs_BxTxH, valid_BxT, *, window: int, normalise,
                  with_weights: bool):
    """Dot-product scores over a window, in blocks of C = max(w, 16) queries: block j (steps
    jC .. jC + C − 1) scores the K = C + w keys from step jC − w. Returns (h̃_BxTxH, α_BxTxT or None)."""
    batch, steps, d_attn = q_BxTxA.shape
    size = max(window, LOCAL_BLOCK_MIN)
    n_blocks = -(-steps // size)
    tail = n_blocks * size - steps  # queries past T are computed and dropped
    pad = lambda x, front: jnp.pad(x, ((0, 0), (front, tail)) + ((0, 0),) * (x.ndim - 2))
    k_BxSxA, hs_BxSxH, valid_BxS = pad(k_BxTxA, window), pad(hs_BxTxH, window), pad(valid_BxT, window)
    q_BxNxCxA = pad(q_BxTxA, 0).reshape(batch, n_blocks, size, d_attn)

    idx_NxK = (jnp.arange(n_blocks) * size)[:, None] + jnp.arange(size + window)[None, :]  # padded index
    keys_BxNxKxA, vals_BxNxKxH = k_BxSxA[:, idx_NxK], hs_BxSxH[:, idx_NxK]
    pos_NxK = idx_NxK - window  # the step of each key (negative: before step 0)
    t_NxC = (jnp.arange(n_blocks) * size)[:, None] + jnp.arange(size)[None, :]
    lag_NxCxK = t_NxC[:, :, None] - pos_NxK[:, None, :]
    band_NxCxK = (lag_NxCxK >= 0) & (lag_NxCxK <= window) & (pos_NxK[:, None, :] >= 0)
    allowed_BxNxCxK = band_NxCxK[None] & (valid_BxS[:, idx_NxK][:, :, None, :] | (lag_NxCxK == 0)[None])

    e_BxNxCxK = jnp.einsum("bnca,bnka->bnck", q_BxNxCxA, keys_BxNxKxA) / math.sqrt(d_attn)
    alpha_BxNxCxK = normalise(e_BxNxCxK, allowed_BxNxCxK)
    c_BxNxCxH = jnp.einsum("bnck,bnkh->bnch", alpha_BxNxCxK, vals_BxNxKxH)
    c_BxTxH = c_BxNxCxH.reshape(batch, n_blocks * size, -1)[:, :steps]
    h_tilde_BxTxH = _output(params, hs_BxTxH, c_BxTxH)
    if not with_weights:
        return h_tilde_BxTxH, None
    # scatter each block's K weights back into rows over all padded steps
    idx_BxNxCxK = jnp.broadcast_to(idx_NxK[None, :, None, :], alpha_BxNxCxK.shape)
    rows = jnp.zeros(alpha_BxNxCxK.shape[:3] + (hs_BxSxH.shape[1],), alpha_BxNxCxK.dtype)
    alpha_BxNxCxS = jnp.put_along_axis(rows, idx_BxNxCxK, alpha_BxNxCxK, axis=-1, inplace=False)
    alpha_BxTxT = alpha_BxNxCxS.reshape(batch, n_blocks * size, -1)[:, :steps, window:window + steps]
    return h_tilde_BxTxH, alpha_BxTxT


def apply(params: dict, hs_BxTxH, mask_BxT=None, *, score: str = "additive", normaliser: str = "softmax",
          window: int | None = None, top_k: int | None = None, query_chunk: int | None = None,
          return_weights: bool = False, last_only: bool = False):
    """h̃_BxTxH, or (h̃_BxTxH, α_BxTxT) when `return_weights` (materialises T x T: small T only).

    Args:
        mask_BxT: 1 for real steps, 0 for padding (never attended to, except by itself).
        window: attend to i ∈ [t − window, t] only; computes just the band.
        top_k: k for normaliser="topk" (ignored by the others).
        query_chunk: queries per block; bounds live memory to B x chunk x keys x A (see module doc);
            no effect on dot-product scores with a window (local blocks, already bounded).
        last_only: the query of the last step only: h̃_Bx1xH (and α_Bx1xT), equal to
            `apply(...)[:, -1:]`; for heads that read the last step alone.
    """
    _choice("score", score, SCORES)
    _choice("normaliser", normaliser, tuple(NORMALISERS))
    _positive("window", window)
    _positive("query_chunk", query_chunk)
    if normaliser == "topk":
        if top_k is None:
            raise ValueError("top_k=None: normaliser='topk' needs a positive integer top_k.")
        _positive("top_k", top_k, allow_none=False)
    missing = {"w_q", "w_k", "w_c", "b_c"} | ({"v", "b_a"} if score == "additive" else set())
    if missing - set(params):
        raise ValueError(f"params lack {sorted(missing - set(params))} for score={score!r}: "
                         "init and apply must use the same score.")
    if hs_BxTxH.ndim != 3:
        raise ValueError(f"hs_BxTxH has shape {hs_BxTxH.shape}: expected (batch, time, hidden).")
    batch, steps, _ = hs_BxTxH.shape
    if mask_BxT is not None and tuple(mask_BxT.shape) != (batch, steps):
        raise ValueError(f"mask_BxT has shape {mask_BxT.shape}: expected {(batch, steps)}.")

    normalise = NORMALISERS[normaliser]
    if normaliser == "topk":
        normalise = functools.partial(normalise, k=int(top_k))
    if window is not None and window >= steps - 1:
        window = None  # the band is the whole causal triangle
    chunk = steps if query_chunk is None else min(int(query_chunk), steps)
    if last_only:
        chunk = 1
    n_blocks = 1 if last_only else -(-steps // chunk)
    padded = steps if last_only else n_blocks * chunk  # queries past T are computed and dropped

    valid_BxT = jnp.ones((batch, steps), bool) if mask_BxT is None else mask_BxT > 0
    q_BxTxA = hs_BxTxH @ params["w_q"]
    if score == "additive":
        q_BxTxA = q_BxTxA + lead(params["b_a"], q_BxTxA)
    k_BxTxA = hs_BxTxH @ params["w_k"]
    if score == "dot" and window is not None and not last_only:
        h_tilde_BxTxH, alpha_BxTxT = _attend_local(params, q_BxTxA, k_BxTxA, hs_BxTxH, valid_BxT, window=window,
                                                   normalise=normalise, with_weights=return_weights)
        return (h_tilde_BxTxH, alpha_BxTxT) if return_weights else h_tilde_BxTxH
    # The band saves memory where scores are B x T x keys x A (additive); dot-product scores
    # without a window (or for the last query only) are one matmul over all keys.
    band = window is not None and score == "additive"
    front = window if band else 0  # keys (and values) before step 0, always masked
    pad3 = lambda x: jnp.pad(x, ((0, 0), (front, padded - steps), (0, 0)))
    q_BxTxA = jnp.pad(q_BxTxA, ((0, 0), (0, padded - steps), (0, 0)))
    k_BxSxA, hs_BxSxH = pad3(k_BxTxA), pad3(hs_BxTxH)
    valid_BxS = jnp.pad(valid_BxT, ((0, 0), (front, padded - steps)))

    block = functools.partial(_attend_block, chunk=chunk, window=window, band=band, score=score,
                              normalise=normalise, with_weights=return_weights)
    args = (q_BxTxA, k_BxSxA, hs_BxSxH, valid_BxS)
    if last_only:
        h_tilde_BxTxH, alpha_BxTxS = block(params, steps - 1, *args)  # T = 1 below
    elif n_blocks == 1:
        h_tilde_BxTxH, alpha_BxTxS = block(params, 0, *args)
    else:
        body = jax.checkpoint(lambda start: block(params, start, *args))  # remat: see module doc
        h_NxBxCxH, alpha_NxBxCxS = jax.lax.map(body, jnp.arange(n_blocks) * chunk)
        merge = lambda x: jnp.moveaxis(x, 0, 1).reshape((batch, padded) + x.shape[3:])
        h_tilde_BxTxH = merge(h_NxBxCxH)
        alpha_BxTxS = None if alpha_NxBxCxS is None else merge(alpha_NxBxCxS)
    h_tilde_BxTxH = h_tilde_BxTxH[:, :steps]
    if not return_weights:
        return h_tilde_BxTxH
    return h_tilde_BxTxH, alpha_BxTxS[:, :steps, :steps]
