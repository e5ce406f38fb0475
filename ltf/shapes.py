"""Shape helpers that keep `jax_numpy_rank_promotion="raise"` happy without noise at call sites."""


def lead(v, like):
    """v_...F with leading unit axes added to broadcast against like_...xF explicitly."""
    return v.reshape((1,) * (like.ndim - v.ndim) + v.shape)


def dense(params: dict, x):
    """x_...xI @ w_IxO + b_O."""
    y = x @ params["w"]
    return y + lead(params["b"], y)
