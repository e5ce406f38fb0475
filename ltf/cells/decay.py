"""GRU-D's decay (Che et al., Sci. Rep. 2018): what is carried fades with the time since it was seen.

Hidden decay, an option of every cell (`decay=True`), applied to the carry before each step:

    γ_t = exp(−max(0, δ_t W_γ + b_γ))        δ_t: B x K times since the last observation
    C' = γ_t ⊙ C_{t-1},  h' = γ_t ⊙ h_{t-1}   (GRU-D's GRU has only h; an LSTM's memory is C)

γ = 1 for W_γ δ + b_γ ≤ 0: a unit decays only when the learned rate is positive, so the
rectifier keeps γ ≤ 1 (a decay, never a growth). W_γ is drawn as GRU-D's Keras code draws its
kernels (Glorot uniform), b_γ = 0: with a zero W_γ the rectifier's gradient at 0 would be 0
and the decay could never start to learn.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ltf.shapes import lead


def init_hidden_decay(key, d_time: int, d_hidden: int) -> dict:
    """W_γ (K x H) Glorot uniform and b_γ (H) zero."""
    return {"w_gamma": jax.nn.initializers.glorot_uniform()(key, (d_time, d_hidden)),
            "b_gamma": jnp.zeros((d_hidden,))}


def hidden_decay(params: dict, dt_BxK) -> jax.Array:
    """γ_BxH = exp(−max(0, δ W_γ + b_γ)) for δ_BxK (any leading shape)."""
    rate = dt_BxK @ params["w_gamma"]
    rate = rate + lead(params["b_gamma"], rate)
    return jnp.exp(-jax.nn.relu(rate))
