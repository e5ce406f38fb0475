"""GRU-D's decay (Che et al., Sci. Rep. 2018): what is carried fades with the time since it was seen.

Hidden decay, an option of every cell (`decay=True`), applied to the carry before each step:

    γ_t = exp(−max(0, δ_t W_γ + b_γ))        δ_t: B x K times since the last observation
    C' = γ_t ⊙ C_{t-1},  h' = γ_t ⊙ h_{t-1}   (GRU-D's GRU has only h; an LSTM's memory is C)

γ = 1 for W_γ δ + b_γ ≤ 0: a unit decays only when the learned rate is positive, so the
rectifier keeps γ ≤ 1 (a decay, never a growth). W_γ starts positive, the magnitude of a Glorot
uniform draw, b_γ = 0, so that every unit starts decaying a little and has a gradient. GRU-D's
released Keras code starts both at zero; a zero rate has zero gradient through the rectifier
(in TensorFlow as in JAX), so there the decay cannot start to learn, and a signed draw would
leave the units with a negative weight (every unit, for K = 1) at γ ≡ 1 for good.

Input decay, an option of the sequence model (`ltf.models.SequenceModel(input_decay=True)`, any
cell), applied to the values before the first layer, per variable d:

    x̂_t = m_t ⊙ x_t + (1 − m_t) ⊙ (γx_t ⊙ x_last_t + (1 − γx_t) ⊙ x̄)
    γx_t = exp(−max(0, w_γx ⊙ δ_t + b_γx))   w_γx diagonal: one weight per variable

m_t the observation mask, δ_t the time since each variable was last observed (B x T x F, one
column per variable), x_last_t the last observed value of the variable up to step t within the
sequence (`last_observed`; x̄ where it was never observed), x̄ the training split's mean: a
missing value fades from the last one seen toward the mean as the gap grows. In the model's
units x̄ = 0: the series data standardise each variable with the training split's mean and std
(`ltf.data.series.physionet`), so the model passes no x̄. w_γx starts positive, |U(−a, a)| with
a = √(3/F) (the Glorot-uniform bound of an F-vector), b_γx = 0: a negative w_γx with b_γx = 0
would give a rate ≤ 0 for every δ ≥ 0, so γx ≡ 1 with zero gradient, a decay that never learns.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ltf.shapes import lead


def init_hidden_decay(key, d_time: int, d_hidden: int) -> dict:
    """W_γ (K x H) the magnitude of a Glorot uniform draw (positive), and b_γ (H) zero."""
    return {"w_gamma": jnp.abs(jax.nn.initializers.glorot_uniform()(key, (d_time, d_hidden))),
            "b_gamma": jnp.zeros((d_hidden,))}


def hidden_decay(params: dict, dt_BxK) -> jax.Array:
    """γ_BxH = exp(−max(0, δ W_γ + b_γ)) for δ_BxK (any leading shape)."""
    rate = dt_BxK @ params["w_gamma"]
    rate = rate + lead(params["b_gamma"], rate)
    return jnp.exp(-jax.nn.relu(rate))


def init_input_decay(key, d_values: int) -> dict:
    """w_γx (F) ~ |U(−a, a)|, a = √(3/F), and b_γx (F) zero (see the module docstring)."""
    bound = (3.0 / d_values) ** 0.5
    return {"w": jnp.abs(jax.random.uniform(key, (d_values,), minval=-bound, maxval=bound)),
            "b": jnp.zeros((d_values,))}


def last_observed(x_BxTxF, m_BxTxF, resets_BxT=None, x_mean=0.0) -> jax.Array:
    """x_last_BxTxF: the value of each variable at its last observation at or before step t
    (m = 1 there), x̄ (`x_mean`, a scalar or F) where there is none since the sequence began:
    the start of the window, or its last reset (`resets_BxT` 1 where a new sequence starts)."""
    n_steps = x_BxTxF.shape[1]
    t_1xTx1 = jnp.arange(n_steps).reshape(1, n_steps, 1)
    seen_BxTxF = jnp.where(m_BxTxF > 0, t_1xTx1, -1)
    last_BxTxF = jax.lax.cummax(seen_BxTxF, axis=1)  # the step of the last observation, −1 if none
    if resets_BxT is not None:  # an observation before the sequence's start does not count
        start_BxT = jax.lax.cummax(jnp.where(resets_BxT > 0, t_1xTx1[..., 0], 0), axis=1)
        last_BxTxF = jnp.where(last_BxTxF >= start_BxT[..., None], last_BxTxF, -1)
    x_last_BxTxF = jnp.take_along_axis(x_BxTxF, jnp.maximum(last_BxTxF, 0), axis=1)
    mean = lead(jnp.asarray(x_mean, x_BxTxF.dtype), x_BxTxF)
    return jnp.where(last_BxTxF >= 0, x_last_BxTxF, mean)


def input_decay(params: dict, x_BxTxF, m_BxTxF, delta_BxTxF, x_last_BxTxF, x_mean=0.0) -> jax.Array:
    """x̂_BxTxF = m ⊙ x + (1 − m) ⊙ (γx ⊙ x_last + (1 − γx) ⊙ x̄), γx = exp(−max(0, w_γx ⊙ δ + b_γx))
    for δ_BxTxF, w_γx and b_γx (F each).

    m ∈ {0, 1} selects (a `where`, so that whatever an unobserved entry of x holds, NaN
    included, never reaches x̂)."""
    rate_BxTxF = lead(params["w"], delta_BxTxF) * delta_BxTxF + lead(params["b"], delta_BxTxF)
    gamma_BxTxF = jnp.exp(-jax.nn.relu(rate_BxTxF))  # γx_t
    mean = lead(jnp.asarray(x_mean, x_BxTxF.dtype), x_BxTxF)
    decayed_BxTxF = gamma_BxTxF * x_last_BxTxF + (1.0 - gamma_BxTxF) * mean  # γx ⊙ x_last + (1 − γx) ⊙ x̄
    return jnp.where(m_BxTxF > 0, x_BxTxF, decayed_BxTxF)
