"""Attention normalisers: scores -> probabilities over the allowed entries of the last axis.

    softmax    p = exp(z) / Σ exp(z)
    sparsemax  p = argmin_{p ∈ Δ} ‖p − z‖²  = max(z − τ, 0)                (Martins & Astudillo 2016)
    entmax15   p = argmax_{p ∈ Δ} pᵀz + H^T_{1.5}(p)  = max(z/2 − τ, 0)²   (Peters, Niculae & Martins 2019)
    topk       softmax over the k largest allowed scores, exactly 0 elsewhere

τ is the threshold that makes Σp = 1; sparsemax and entmax-1.5 find it exactly from the sorted
scores and give exact zeros. Their gradients are the closed-form Jacobians of the papers,
through `jax.custom_jvp` (so forward and reverse mode both work):

    sparsemax  J = diag(s) − s sᵀ / |S|,  s = 1[p > 0]
    entmax15   J = diag(s) − s sᵀ / Σs,   s = sqrt(p)

Why not `optax.projections.projection_simplex` for sparsemax: it is the same projection but
works on one flat vector (a vmap and a gather per row here), and with x64 enabled its custom
JVP fails on float32 inputs (the primal is promoted to float64, the tangent is not). The tests
use it as an independent reference. No installed library provides entmax in JAX.

Masked entries (allowed = False) get exactly 0 probability and 0 gradient. They are not set to
−inf (sort-based thresholds would compute −inf − −inf = NaN) but to a finite value below the
largest allowed score by more than the support can ever reach (τ ≥ max z − 1 for sparsemax,
τ ≥ max z/2 − 1 for entmax-1.5), and the output is then zeroed there. A row with nothing
allowed returns all zeros.

Every normaliser in NORMALISERS has the signature fn(z_...xN, allowed_...xN, **options).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _rho(z_xN):
    """1, 2, ..., N along the last axis, as a broadcastable array of z's rank and dtype."""
    n = z_xN.shape[-1]
    return jnp.arange(1, n + 1, dtype=z_xN.dtype).reshape((1,) * (z_xN.ndim - 1) + (n,))


def _sparsemax_threshold(z_xN):
    """τ with Σ max(z − τ, 0) = 1: the support is the k largest with 1 + k z_(k) > Σ_{j≤k} z_(j)."""
    zs_xN = jnp.flip(jnp.sort(z_xN, axis=-1), axis=-1)
    cumsum_xN = jnp.cumsum(zs_xN, axis=-1)
    rho_xN = _rho(z_xN)
    k_x1 = jnp.sum(1 + rho_xN * zs_xN > cumsum_xN, axis=-1, keepdims=True)  # ≥ 1: the max is in
    return (jnp.take_along_axis(cumsum_xN, k_x1 - 1, axis=-1) - 1) / k_x1.astype(z_xN.dtype)


@jax.custom_jvp
def _sparsemax_last(z_xN):
    return jnp.maximum(z_xN - _sparsemax_threshold(z_xN), 0)


@_sparsemax_last.defjvp
def _sparsemax_jvp(primals, tangents):
    (z_xN,), (dz_xN,) = primals, tangents
    p_xN = _sparsemax_last(z_xN)
    s_xN = (p_xN > 0).astype(z_xN.dtype)
    # J dz = s ⊙ dz − s (sᵀ dz) / |S|
    mean_x1 = jnp.sum(s_xN * dz_xN, axis=-1, keepdims=True) / jnp.sum(s_xN, axis=-1, keepdims=True)
    return p_xN, s_xN * (dz_xN - mean_x1)


def _entmax15_threshold(x_xN):
    """τ with Σ max(x − τ, 0)² = 1, x = z/2 shifted so that max x = 0 (Peters et al. 2019, Alg. 2).

    For the k largest, τ_k solves Σ_{j≤k} (x_(j) − τ)² = 1: τ_k = mean_k − sqrt((1 − ss_k)/k),
    ss_k = k (mean of squares − squared mean); the support is the k with τ_k ≤ x_(k).
    """
    xs_xN = jnp.flip(jnp.sort(x_xN, axis=-1), axis=-1)
    rho_xN = _rho(x_xN)
    mean_xN = jnp.cumsum(xs_xN, axis=-1) / rho_xN
    mean_sq_xN = jnp.cumsum(xs_xN**2, axis=-1) / rho_xN
    ss_xN = rho_xN * (mean_sq_xN - mean_xN**2)
    delta_xN = jnp.maximum((1 - ss_xN) / rho_xN, 0)
    tau_xN = mean_xN - jnp.sqrt(delta_xN)
    k_x1 = jnp.sum(tau_xN <= xs_xN, axis=-1, keepdims=True)  # ≥ 1: τ_1 = x_(1) − 1
    return jnp.take_along_axis(tau_xN, k_x1 - 1, axis=-1)


def _entmax15_sqrt(z_xN):
    """s = sqrt(p) = max(z/2 − τ, 0)."""
    x_xN = (z_xN - jnp.max(z_xN, axis=-1, keepdims=True)) / 2  # shift: τ only moves with it
    return jnp.maximum(x_xN - _entmax15_threshold(x_xN), 0)


@jax.custom_jvp
def _entmax15_last(z_xN):
    return _entmax15_sqrt(z_xN) ** 2


@_entmax15_last.defjvp
def _entmax15_jvp(primals, tangents):
    (z_xN,), (dz_xN,) = primals, tangents
    s_xN = _entmax15_sqrt(z_xN)
    # J dz = s ⊙ dz − s (sᵀ dz) / Σs   (dp_i = 2 s_i (dz_i/2 − dτ), Σ dp = 0)
    ratio_x1 = jnp.sum(s_xN * dz_xN, axis=-1, keepdims=True) / jnp.sum(s_xN, axis=-1, keepdims=True)
    return s_xN**2, s_xN * (dz_xN - ratio_x1)


def _on_axis(fn, z, axis):
    return jnp.moveaxis(fn(jnp.moveaxis(z, axis, -1)), -1, axis)


@functools.partial(jax.jit, static_argnames="axis")
def sparsemax(z, axis: int = -1) -> Array:
    """Euclidean projection of z onto the probability simplex along `axis` (exact zeros)."""
    return _on_axis(_sparsemax_last, jnp.asarray(z), axis)


@functools.partial(jax.jit, static_argnames="axis")
def entmax15(z, axis: int = -1) -> Array:
    """1.5-entmax of z along `axis`: max(z/2 − τ, 0)² with Σ = 1 (exact zeros)."""
    return _on_axis(_entmax15_last, jnp.asarray(z), axis)


def _fill_masked(z_xN, allowed_xN):
    """Masked scores -> max allowed − 4 − |max allowed|: outside any sparsemax/entmax support."""
    z_max_x1 = jnp.max(jnp.where(allowed_xN, z_xN, -jnp.inf), axis=-1, keepdims=True)
    z_max_x1 = jax.lax.stop_gradient(jnp.where(jnp.isfinite(z_max_x1), z_max_x1, 0))
    return jnp.where(allowed_xN, z_xN, z_max_x1 - 4 - jnp.abs(z_max_x1))


@jax.jit
def masked_softmax(z_xN, allowed_xN) -> Array:
    any_x1 = jnp.any(allowed_xN, axis=-1, keepdims=True)
    z_xN = jnp.where(allowed_xN, z_xN, jnp.where(any_x1, -jnp.inf, 0))
    return jnp.where(allowed_xN, jax.nn.softmax(z_xN, axis=-1), 0)


@jax.jit
def masked_sparsemax(z_xN, allowed_xN) -> Array:
    return jnp.where(allowed_xN, _sparsemax_last(_fill_masked(z_xN, allowed_xN)), 0)


@jax.jit
def masked_entmax15(z_xN, allowed_xN) -> Array:
    return jnp.where(allowed_xN, _entmax15_last(_fill_masked(z_xN, allowed_xN)), 0)


@functools.partial(jax.jit, static_argnames="k")
def masked_topk(z_xN, allowed_xN, *, k: int) -> Array:
    """Softmax over the k largest allowed scores (all allowed ones when fewer); 0 elsewhere.

    Exactly min(k, #allowed) entries are kept: `lax.top_k` breaks ties by position.
    """
    if k is None or int(k) < 1:
        raise ValueError(f"top_k={k!r}: the 'topk' normaliser needs a positive integer k.")
    k = min(int(k), z_xN.shape[-1])
    z_fill_xN = jnp.where(allowed_xN, z_xN, -jnp.inf)
    _, idx_xK = jax.lax.top_k(jax.lax.stop_gradient(z_fill_xN), k)
    top_xN = jnp.put_along_axis(jnp.zeros(z_xN.shape, bool), idx_xK, True, axis=-1, inplace=False)
    return masked_softmax(z_xN, top_xN & allowed_xN)


NORMALISERS = {
    "softmax": masked_softmax,
    "sparsemax": masked_sparsemax,
    "entmax15": masked_entmax15,
    "topk": masked_topk,  # needs k=
}
