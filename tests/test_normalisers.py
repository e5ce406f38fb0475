"""Normalisers against float64 NumPy references (thresholds found by bisection), exact zeros,
masks, and gradients (check_grads, forward and reverse mode)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from optax.projections import projection_simplex

from ltf.normalisers import NORMALISERS, entmax15, masked_topk, sparsemax

jax.config.update("jax_numpy_rank_promotion", "raise")  # also set by conftest.py
SHAPE = (4, 8)  # one shape for most tests: each new shape costs compilations


@pytest.fixture(autouse=True)
def x64():
    """float64 in this module only, so that the references can be matched to ~1e-12."""
    with jax.enable_x64(True):
        yield


# --- float64 NumPy references, one row at a time -------------------------------------------------

def _bisect(f, lo, hi, iters=200):
    """The root of f, decreasing on [lo, hi] with f(lo) ≥ 0 ≥ f(hi)."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


def np_sparsemax_tau(z):  # Σ max(z − τ, 0) = 1, τ ∈ [max z − 1, max z]
    return _bisect(lambda tau: np.maximum(z - tau, 0).sum() - 1, z.max() - 1, z.max())


def np_entmax15_tau(z):  # Σ max(z/2 − τ, 0)² = 1, τ ∈ [max z/2 − 1, max z/2]
    return _bisect(lambda tau: (np.maximum(z / 2 - tau, 0) ** 2).sum() - 1, z.max() / 2 - 1, z.max() / 2)


def np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def np_sparsemax(z):
    return np.maximum(z - np_sparsemax_tau(z), 0)


def np_entmax15(z):
    return np.maximum(z / 2 - np_entmax15_tau(z), 0) ** 2


def np_topk(z, k):
    keep = np.argsort(-z, kind="stable")[:k]
    p = np.zeros_like(z)
    p[keep] = np_softmax(z[keep])
    return p


NP_NORMALISERS = {"softmax": np_softmax, "sparsemax": np_sparsemax, "entmax15": np_entmax15, "topk": np_topk}


def np_masked(name, z, allowed, k=None):
    """The reference normaliser on the allowed entries of one row; 0 elsewhere."""
    z, allowed = np.asarray(z, np.float64), np.asarray(allowed, bool)
    p = np.zeros_like(z)
    fn = NP_NORMALISERS[name]
    p[allowed] = fn(z[allowed], k) if name == "topk" else fn(z[allowed])
    return p


def rows(shape, scale, seed):
    return np.random.default_rng(seed).normal(size=shape) * scale


# --- sparsemax and entmax-1.5 ---------------------------------------------------------------------

SPARSE = {"sparsemax": (sparsemax, np_sparsemax, np_sparsemax_tau, 1.0),
          "entmax15": (entmax15, np_entmax15, np_entmax15_tau, 0.5)}


@pytest.mark.parametrize("name", list(SPARSE))
@pytest.mark.parametrize("axis", [-1, 0])
def test_sparse_normalisers_match_bisection(name, axis):
    fn, ref, _, _ = SPARSE[name]
    z = rows(SHAPE, 1.5, seed=0)
    p = np.asarray(fn(jnp.asarray(z), axis=axis))
    expected = np.apply_along_axis(ref, axis, z)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-12)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis), 1.0, rtol=0, atol=1e-12)
    assert (p == 0).any(axis=axis).all(), "spread-out scores must give exact zeros in every row"


def test_sparsemax_equals_optax_projection_onto_the_simplex():
    z = jnp.asarray(rows(SHAPE, 2.0, seed=1))
    ours, theirs = sparsemax(z), jax.vmap(projection_simplex)(z)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(SPARSE))
def test_sparse_normalisers_float32_close_to_reference(name):
    fn, ref, _, _ = SPARSE[name]
    z = rows((4, 33), 3.0, seed=2)
    p = fn(jnp.asarray(z, jnp.float32))
    assert p.dtype == jnp.float32
    np.testing.assert_allclose(p, np.apply_along_axis(ref, -1, z), atol=2e-6)


@pytest.mark.parametrize("name", list(SPARSE))
def test_sparse_normaliser_gradients(name):
    fn, _, tau_fn, slope = SPARSE[name]
    z = rows(SHAPE, 1.0, seed=3)
    # Away from breakpoints: no z_i·slope within 0.01 of τ (check_grads steps by 1e-4).
    gaps = np.abs(z * slope - np.apply_along_axis(tau_fn, -1, z)[:, None])
    assert gaps.min() > 0.01, gaps.min()
    assert (np.apply_along_axis(SPARSE[name][1], -1, z) == 0).any(), "the point must have a zero"
    check_grads(fn, (jnp.asarray(z),), order=1, modes=("fwd", "rev"))


def test_float32_gradients_under_x64():
    """Regression: optax's projection fails here (float64 primal, float32 tangent)."""
    z = jnp.asarray(rows(SHAPE, 1.0, seed=4), jnp.float32)
    for fn in (sparsemax, entmax15):
        g = jax.grad(lambda z: jnp.sum(fn(z)[:, :2]))(z)
        assert g.dtype == jnp.float32 and np.isfinite(g).all()


def test_ties_and_single_entries():
    for fn in (sparsemax, entmax15):
        np.testing.assert_allclose(fn(jnp.zeros((1, 4))), np.full((1, 4), 0.25), atol=1e-7)
        np.testing.assert_array_equal(fn(jnp.ones((3, 1))), np.ones((3, 1)))
        np.testing.assert_array_equal(fn(jnp.array([0.0, 5.0, -5.0])), np.array([0.0, 1.0, 0.0]))


# --- masks and the registry -----------------------------------------------------------------------

def masks(shape, seed):
    allowed = np.random.default_rng(seed).random(shape) < 0.6
    allowed[:, 0] = True  # at least one per row
    allowed[0, :] = True
    return allowed


@pytest.mark.parametrize("name", list(NORMALISERS))
def test_masked_normalisers_match_reference_on_the_allowed_subset(name):
    z, allowed = rows(SHAPE, 1.5, seed=5), masks(SHAPE, seed=5)
    z_garbage = np.where(allowed, z, 1e30)  # masked scores must not matter, however large
    kw = {"k": 3} if name == "topk" else {}
    p = np.asarray(NORMALISERS[name](jnp.asarray(z_garbage), jnp.asarray(allowed), **kw))
    g = jax.grad(lambda z: jnp.sum(NORMALISERS[name](z, jnp.asarray(allowed), **kw) * jnp.asarray(z)))(
        jnp.asarray(z_garbage))
    expected = np.stack([np_masked(name, z[r], allowed[r], kw.get("k")) for r in range(len(z))])
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-12)
    assert (p[~allowed] == 0).all() and np.isfinite(g).all()
    assert (np.asarray(g)[~allowed] == 0).all()


@pytest.mark.parametrize("name", list(NORMALISERS))
def test_row_with_nothing_allowed_is_zero_and_finite(name):
    kw = {"k": 2} if name == "topk" else {}
    z, allowed = jnp.asarray(rows(SHAPE, 1.0, 6)), jnp.asarray(masks(SHAPE, 6)).at[0].set(False)
    p = NORMALISERS[name](z, allowed, **kw)
    g = jax.grad(lambda z: jnp.sum(NORMALISERS[name](z, allowed, **kw) ** 2))(z)
    np.testing.assert_array_equal(p[0], 0)
    assert np.isfinite(g).all()


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_masked_sparse_gradients(name):
    z, allowed = rows(SHAPE, 1.0, seed=7), masks(SHAPE, seed=7)
    fn = lambda z: NORMALISERS[name](z, jnp.asarray(allowed))
    check_grads(fn, (jnp.asarray(z),), order=1, modes=("fwd", "rev"))


# --- top-k ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_keeps_exactly_k_and_is_softmax_over_them(k):
    z, allowed = rows(SHAPE, 1.0, seed=8), masks(SHAPE, seed=8)
    p = np.asarray(masked_topk(jnp.asarray(z), jnp.asarray(allowed), k=k))
    n_allowed = allowed.sum(-1)
    np.testing.assert_array_equal((p > 0).sum(-1), np.minimum(k, n_allowed))
    expected = np.stack([np_masked("topk", z[r], allowed[r], k) for r in range(len(z))])
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-12)


def test_topk_with_k_above_the_allowed_count_is_masked_softmax():
    z, allowed = jnp.asarray(rows(SHAPE, 1.0, seed=9)), jnp.asarray(masks(SHAPE, seed=9))
    np.testing.assert_allclose(masked_topk(z, allowed, k=50), NORMALISERS["softmax"](z, allowed), atol=1e-12)


def test_topk_breaks_ties_and_gradients():
    p = masked_topk(jnp.zeros((1, 5)), jnp.ones((1, 5), bool), k=2)
    np.testing.assert_array_equal((p > 0).sum(), 2)
    z = rows(SHAPE, 1.0, seed=10)
    check_grads(lambda z: masked_topk(z, jnp.ones(SHAPE, bool), k=3), (jnp.asarray(z),), 1,
                modes=("fwd", "rev"))


@pytest.mark.parametrize("k", [None, 0, -2])
def test_topk_rejects_bad_k(k):
    with pytest.raises(ValueError, match="top_k"):
        masked_topk(jnp.zeros((1, 3)), jnp.ones((1, 3), bool), k=k)
