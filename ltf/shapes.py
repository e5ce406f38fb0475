"""Shape helpers that keep `jax_numpy_rank_promotion="raise"` happy without noise at call sites."""

import jax
import jax.numpy as jnp


def lead(v, like):
    """v_...F with leading unit axes added to broadcast against like_...xF explicitly."""
    return v.reshape((1,) * (like.ndim - v.ndim) + v.shape)


def dense(params: dict, x):
    """x_...xI @ w_IxO + b_O."""
    y = x @ params["w"]
    return y + lead(params["b"], y)


def time_chunks(a_Tx, n_chunks: int, chunk: int):
    """a_Tx... padded at the end with zeros to n_chunks·chunk steps, as n_chunks x chunk x ...
    (the layers' remat pieces and mLSTM's chunks; zero masks make the padding masked steps)."""
    pad = n_chunks * chunk - a_Tx.shape[0]
    a = jnp.pad(a_Tx, [(0, pad)] + [(0, 0)] * (a_Tx.ndim - 1))
    return a.reshape((n_chunks, chunk) + a_Tx.shape[1:])


def dense_init(key, d_in: int, d_out: int) -> dict:
    """The parameters of `dense`: w_IxO LeCun normal, b_O zeros."""
    return {"w": jax.nn.initializers.lecun_normal()(key, (d_in, d_out)), "b": jnp.zeros((d_out,))}


def previous_steps(x0_BxH, xs_TxBxH, resets_TxB=None):
    """x_{t-1} for every step t, after its reset: x0, x_1, ..., x_{T-1}, zero where r_t = 1 (the
    carry a recurrence's step t read, from its initial carry and its outputs)."""
    prev_TxBxH = jnp.concatenate([x0_BxH[None], xs_TxBxH[:-1]], axis=0)
    if resets_TxB is None:
        return prev_TxBxH
    return prev_TxBxH * (1 - resets_TxB)[..., None].astype(prev_TxBxH.dtype)
