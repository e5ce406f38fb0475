"""Attention after the scan: against a float64 NumPy loop over t and i, causality and padding
(Jacobians), chunked == unchunked, band == full with an explicit window mask, check_grads."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import attention
from test_normalisers import np_masked  # float64 references (bisection for the sparse ones)

jax.config.update("jax_numpy_rank_promotion", "raise")  # also set by conftest.py

B, T, H, A = 2, 6, 4, 3
NORMS = list(attention.NORMALISERS)
TOP_K = 2
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 0]], np.float32)  # a hole and a padded tail


@functools.lru_cache(maxsize=None)
def setup(score, seed=0, dtype=jnp.float32):
    """Random parameters (init's structure, drawn in NumPy: no compilation), scaled up so that
    scores spread enough for the sparse normalisers to give zeros."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: attention.init(jax.random.key(0), H, A, score=score))
    params = {k: jnp.asarray(rng.normal(size=v.shape) * (2.0 if k == "v" else 0.8), dtype)
              for k, v in sorted(shapes.items())}
    return params, jnp.asarray(rng.normal(size=(B, T, H)), dtype)


def np_attention(params, hs, mask, *, score, normaliser, window=None, top_k=None):
    """h̃_t = tanh(W_c[h_t, c_t] + b_c), c_t = Σ_i α_{t,i} h_i, looping over b, t and i."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    hs = np.asarray(hs, np.float64)
    out, alpha = np.zeros_like(hs), np.zeros((B, T, T))
    for b in range(B):
        for t in range(T):
            q = hs[b, t] @ p["w_q"]
            e, allowed = np.zeros(T), np.zeros(T, bool)
            for i in range(t + 1):
                if (window is not None and i < t - window) or (mask[b, i] == 0 and i != t):
                    continue
                k = hs[b, i] @ p["w_k"]
                e[i] = p["v"] @ np.tanh(q + p["b_a"] + k) if score == "additive" else q @ k / math.sqrt(A)
                allowed[i] = True
            alpha[b, t] = np_masked(normaliser, e, allowed, top_k)
            c = sum(alpha[b, t, i] * hs[b, i] for i in range(T))
            out[b, t] = np.tanh(np.concatenate([hs[b, t], c]) @ p["w_c"] + p["b_c"])
    return out, alpha


# Compilation dominates this module's run time: compile with few XLA optimisations (same numbers).
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0,
                                                   "xla_llvm_disable_expensive_passes": True})
STATIC = ("score", "normaliser", "window", "top_k", "query_chunk", "return_weights")
apply_jit = jit(attention.apply, static_argnames=STATIC)  # one compilation per option set


@pytest.mark.parametrize("score", attention.SCORES)
@pytest.mark.parametrize("normaliser", NORMS)
@pytest.mark.parametrize("window", [None, 2])
def test_matches_numpy_reference(score, normaliser, window):
    """Row 0 of MASK has no padding, row 1 has a hole and a padded tail."""
    opts = dict(score=score, normaliser=normaliser, window=window, top_k=TOP_K)
    with jax.enable_x64(True):
        params, hs = setup(score, dtype=jnp.float64)
        out, alpha = apply_jit(params, hs, jnp.asarray(MASK), return_weights=True, **opts)
    out_ref, alpha_ref = np_attention(params, hs, MASK, **opts)
    np.testing.assert_allclose(alpha, alpha_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out, out_ref, rtol=0, atol=1e-10)
    if normaliser != "softmax":  # the sparse ones must actually be sparse here
        lag_TxT = np.arange(T)[:, None] - np.arange(T)[None, :]
        allowed_TxT = (lag_TxT >= 0) & (lag_TxT <= (T if window is None else window))
        assert (alpha_ref[0][allowed_TxT] == 0).any()


def test_no_mask_equals_all_ones_mask_and_a_window_past_t_equals_none():
    params, hs = setup("additive")
    np.testing.assert_array_equal(apply_jit(params, hs), apply_jit(params, hs, jnp.ones((B, T))))
    np.testing.assert_array_equal(apply_jit(params, hs, window=T - 1), apply_jit(params, hs))


WINDOW_CHUNK = [(None, None), (None, 4), (2, None), (2, 4)]  # 4 does not divide T
key = "window={}, chunk={}".format  # pytree dict keys must sort: no None inside tuples


@functools.lru_cache(maxsize=None)
def _jacobians(normaliser):
    """For every (window, chunk): h̃, α and the Jacobian of h̃ w.r.t. hs (params: check_grads below);
    compiled once per normaliser (compilation dominates the run time of this module)."""
    params, hs = setup("additive", seed=1)
    mask = jnp.asarray(MASK)

    def all_options(params, hs):
        out = {}
        for window, chunk in WINDOW_CHUNK + [(2, 1)]:  # 1: one query per block
            fn = functools.partial(attention.apply, mask_BxT=mask, normaliser=normaliser, window=window,
                                   top_k=TOP_K, query_chunk=chunk)
            h_tilde, alpha = fn(params, hs, return_weights=True)
            out[key(window, chunk)] = dict(out=h_tilde, alpha=alpha)
            if (window, chunk) in WINDOW_CHUNK:
                out[key(window, chunk)]["jac"] = jax.jacrev(fn, argnums=1)(params, hs)
        return out

    return jax.tree.map(np.asarray, jit(all_options)(params, hs))


@pytest.mark.parametrize("normaliser", NORMS)
@pytest.mark.parametrize("window,chunk", WINDOW_CHUNK)
def test_causal_and_blind_to_padding(normaliser, window, chunk):
    """∂h̃_t/∂h_{t'} = 0 for t' > t, across sequences, from padded t' ≠ t, and outside the window."""
    jac_hs = _jacobians(normaliser)[key(window, chunk)]["jac"]  # B x T x H x B x T x H
    grad_norm_BxTxBxT = np.abs(jac_hs).sum(axis=(2, 5))
    for b in range(B):
        for t in range(T):
            assert (grad_norm_BxTxBxT[b, t, :, t + 1:] == 0).all(), (b, t)
            assert (grad_norm_BxTxBxT[b, t, 1 - b] == 0).all()
            assert grad_norm_BxTxBxT[b, t, b, t] > 0
            padded = [i for i in range(t) if MASK[b, i] == 0]
            assert (grad_norm_BxTxBxT[b, t, b, padded] == 0).all()
            if window is not None:
                assert (grad_norm_BxTxBxT[b, t, b, :max(t - window, 0)] == 0).all()


@pytest.mark.parametrize("score", attention.SCORES)
@pytest.mark.parametrize("normaliser", ["softmax", "sparsemax"])
@pytest.mark.parametrize("window", [None, 2])
def test_last_only_is_the_last_row(score, normaliser, window):
    """One query (step T − 1) gives the last row of h̃ and α, and the same gradient w.r.t. hs;
    row 1 of MASK ends in padding, where the query is the carried h."""
    params, hs = setup(score, seed=2)
    opts = dict(mask_BxT=jnp.asarray(MASK), score=score, normaliser=normaliser, window=window)
    full = lambda hs: attention.apply(params, hs, return_weights=True, **opts)
    last = lambda hs: attention.apply(params, hs, return_weights=True, last_only=True, **opts)
    (out, alpha), (out_last, alpha_last) = jit(lambda hs: (full(hs), last(hs)))(hs)
    assert out_last.shape == (B, 1, H) and alpha_last.shape == (B, 1, T)
    np.testing.assert_allclose(out_last, out[:, -1:], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(alpha_last, alpha[:, -1:], rtol=1e-6, atol=1e-6)
    grads = jit(jax.grad(lambda hs, f: (f(hs)[0][:, -1] ** 2).sum(), argnums=0), static_argnums=1)
    np.testing.assert_allclose(grads(hs, last), grads(hs, full), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("normaliser", NORMS)
def test_chunked_equals_unchunked(normaliser):
    results = _jacobians(normaliser)
    for window, chunk in [(None, 4), (2, 4), (2, 1)]:
        got, want = results[key(window, chunk)], results[key(window, None)]
        for name in got:  # outputs, weights and (with remat in the backward pass) Jacobians
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got[name], want[name])


@pytest.mark.parametrize("normaliser", NORMS)
def test_band_equals_full_with_an_explicit_window_mask(normaliser, monkeypatch):
    window, band_TxT = 2, np.arange(T)[None, :] >= np.arange(T)[:, None] - 2
    base = attention.NORMALISERS[normaliser]
    kw = {"k": TOP_K} if normaliser == "topk" else {}
    monkeypatch.setitem(attention.NORMALISERS, "banded",
                        lambda z, allowed: base(z, allowed & jnp.asarray(band_TxT)[None], **kw))

    @jit
    def both_scores(inputs):
        out = []
        for score, (params, hs) in zip(attention.SCORES, inputs):
            opts = dict(score=score, top_k=TOP_K, return_weights=True)
            out.append((attention.apply(params, hs, jnp.asarray(MASK), normaliser="banded", **opts),
                        attention.apply(params, hs, jnp.asarray(MASK), normaliser=normaliser, window=window, **opts)))
        return out

    for full, band in both_scores([setup(score, seed=3) for score in attention.SCORES]):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), band, full)


@pytest.mark.parametrize("normaliser", ["softmax", "sparsemax"])
@pytest.mark.parametrize("window", [5, 20])  # 3 blocks of 16 (T = 40); 2 blocks of 20
def test_dot_local_blocks_equal_full_scores_with_a_window_mask(normaliser, window):
    """Dot scores with a window run in blocks (`_attend_local`): h̃, α and gradients equal those
    of all T keys with the window as an explicit mask; holes and a padded tail in the mask."""
    steps = 40
    rng = np.random.default_rng(5)
    params, _ = setup("dot", seed=5)
    hs = jnp.asarray(rng.normal(size=(B, steps, H)), jnp.float32)
    mask = np.ones((B, steps), np.float32)
    mask[1, 3] = mask[1, 17] = 0
    mask[1, 33:] = 0
    band_TxT = jnp.asarray(np.arange(steps)[None, :] >= np.arange(steps)[:, None] - window)
    base = attention.NORMALISERS[normaliser]
    banded = lambda z, allowed: base(z, allowed & band_TxT[None])

    def both(params, hs):
        opts = dict(score="dot", return_weights=True)
        local = attention.apply(params, hs, jnp.asarray(mask), normaliser=normaliser, window=window, **opts)
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(attention.NORMALISERS, "banded", banded)
            full = attention.apply(params, hs, jnp.asarray(mask), normaliser="banded", **opts)
        return local, full

    (local, full) = jit(both)(params, hs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), local, full)
    loss = lambda i: lambda p, h: ((both(p, h)[i][0] * jnp.asarray(mask)[..., None]) ** 2).sum()
    grads = [jit(jax.grad(loss(i), argnums=(0, 1)))(params, hs) for i in (0, 1)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *grads)


@pytest.mark.parametrize("score,normaliser,window,chunk", [("additive", "entmax15", 2, 4),
                                                           ("dot", "sparsemax", None, 4),
                                                           ("dot", "softmax", 2, None)])
def test_check_grads_params_and_hidden_states(score, normaliser, window, chunk):
    with jax.enable_x64(True):
        params, hs = setup(score, seed=4, dtype=jnp.float64)
        fn = jax.jit(lambda p, h: attention.apply(p, h, jnp.asarray(MASK), score=score, normaliser=normaliser,
                                                  window=window, top_k=TOP_K, query_chunk=chunk))
        check_grads(fn, (params, hs), order=1, modes=("fwd", "rev"))


def test_plain_jit_float32():
    """Under plain jax.jit (full XLA optimisation, as in training) too; float32 stays float32."""
    params, hs = setup("dot")
    opts = dict(score="dot", normaliser="entmax15", window=3, query_chunk=4)
    out = jax.jit(attention.apply, static_argnames=STATIC)(params, hs, jnp.asarray(MASK), **opts)
    assert out.shape == (B, T, H) and out.dtype == jnp.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, apply_jit(params, hs, jnp.asarray(MASK), **opts), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("options,field", [
    (dict(normaliser="relu"), "normaliser"),
    (dict(score="cosine"), "score"),
    (dict(normaliser="topk"), "top_k"),
    (dict(normaliser="topk", top_k=0), "top_k"),
    (dict(window=0), "window"),
    (dict(window=-3), "window"),
    (dict(query_chunk=0), "query_chunk"),
    (dict(score="additive", params_score="dot"), "params lack"),
])
def test_bad_options_fail_with_the_field_name(options, field):
    options = dict(options)
    params, hs = setup(options.pop("params_score", "additive"))
    with pytest.raises(ValueError, match=field):
        attention.apply(params, hs, **options)


def test_bad_init_and_shapes():
    with pytest.raises(ValueError, match="score"):
        attention.init(jax.random.key(0), H, score="bilinear")
    params, hs = setup("additive")
    with pytest.raises(ValueError, match="mask_BxT"):
        attention.apply(params, hs, jnp.ones((B, T + 1)))
    shapes = jax.eval_shape(lambda: attention.init(jax.random.key(0), H, score="dot"))
    assert {k: v.shape for k, v in shapes.items()} == {"w_q": (H, H), "w_k": (H, H), "w_c": (2 * H, H), "b_c": (H,)}
