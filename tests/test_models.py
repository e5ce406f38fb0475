"""Models: causality for every variant, vmapped seeds, gradients, heads and weight tying."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf.cells.registry import CELLS
from ltf.models import AttentionSpec, LanguageModel, SequenceModel

V, E, H, B, T = 11, 6, 6, 2, 9

ATTENTION = {
    "none": None,
    "softmax": AttentionSpec(),
    "sparsemax_window": AttentionSpec(normaliser="sparsemax", window=3),
    "entmax15_dot": AttentionSpec(normaliser="entmax15", score="dot"),
    "topk_first_layer": AttentionSpec(normaliser="topk", top_k=2, layer=0),
}


# mlstm splits H into heads (4 by default): H = 6 needs 2 or 3 of them.
CELL_OPTIONS = {"mlstm": {"heads": 2}}


def lm(cell="lstm", attention=None, **kw):
    return LanguageModel.build(vocab_size=V, d_embed=E, cell=cell, d_hidden=H, n_layers=2,
                               attention=attention, cell_options=CELL_OPTIONS.get(cell, {}), **kw)


def tokens(seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, size=(B, T)), jnp.int32)


@pytest.mark.parametrize("attention", list(ATTENTION))
@pytest.mark.parametrize("cell", list(CELLS))
def test_language_model_is_causal(cell, attention):
    """Changing the tokens after t leaves every logit up to t unchanged, and changes later ones.

    In training mode (a dropout rng, dropout 0: the same function for every other cell), where
    phased's closed units leak (k = α φ > 0); in evaluation a closed unit ignores its input, and
    at the initial rhythm (r_on = 0.05) no unit need be open at a given step."""
    model = lm(cell, ATTENTION[attention])
    params = model.init(jax.random.key(0))
    apply = jax.jit(lambda p, x: model.apply(p, x, dropout_rng=jax.random.key(1))[0])
    x = tokens()
    base = apply(params, x)
    for t in (0, 4, T - 2):
        changed = x.at[:, t + 1:].set((x[:, t + 1:] + 1) % V)
        out = apply(params, changed)
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
        assert np.abs(np.asarray(out[:, t + 1:] - base[:, t + 1:])).max() > 0


@pytest.mark.parametrize("attention", ["none", "softmax", "sparsemax_window"])
@pytest.mark.parametrize("cell", ["lstm", "time_aware", "tlstm"])
def test_sequence_model_jacobian_is_lower_triangular_in_time(cell, attention):
    model = SequenceModel.build(d_values=3, d_out=2, cell=cell, d_hidden=H, n_layers=2,
                                attention=ATTENTION[attention])
    params = model.init(jax.random.key(1))
    rng = np.random.default_rng(1)
    values = jnp.asarray(rng.normal(size=(1, T, 3)), jnp.float32)
    dts = jnp.asarray(rng.exponential(size=(1, T, 1)), jnp.float32)
    jac = jax.jacrev(lambda v, d: model.apply(params, v, d)[0], argnums=(0, 1))(values, dts)
    for j in jac:  # out_1xTxO over input_1xTxF: zero wherever the input step comes later
        j = np.asarray(j)[0, :, :, 0]  # T x O x T x F
        for t in range(T):
            assert np.all(j[t, :, t + 1:] == 0.0)
    # and the past does reach the present (Δt only reaches tlstm at init: W_Δt starts at zero)
    assert np.abs(np.asarray(jac[0])[0, T - 1, :, 0]).max() > 0
    if cell == "tlstm":
        assert np.abs(np.asarray(jac[1])[0, T - 1, :, 0]).max() > 0


@pytest.mark.slow
def test_vmap_over_seeds_gives_independent_models():
    model = lm("adaptive", ATTENTION["softmax"])
    keys = jax.random.split(jax.random.key(2), 4)
    params = jax.jit(jax.vmap(model.init))(keys)
    logits, _ = jax.jit(jax.vmap(lambda p: model.apply(p, tokens())))(params)
    assert logits.shape == (4, B, T, V)
    single = jax.jit(model.init)(keys[2])
    np.testing.assert_allclose(logits[2], jax.jit(model.apply)(single, tokens())[0], rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(logits[0] - logits[1])).max() > 1e-3


@pytest.mark.parametrize("attention", ["none", "softmax", "entmax15_dot"])
def test_language_model_gradients(attention):
    with jax.enable_x64(True):
        model = lm("time_aware", ATTENTION[attention])
        params = jax.tree.map(lambda x: x.astype(jnp.float64), model.init(jax.random.key(3)))
        x = tokens(3)[:, :5]

        def loss(params):
            logits, states = model.apply(params, x)
            return jnp.sum(jax.nn.log_softmax(logits)[..., 0]) + sum(jnp.sum(s.c) for s in states)

        check_grads(jax.jit(loss), (params,), order=1, modes=["rev"], eps=1e-5)


def test_carry_continues_across_calls():
    model = lm("tlstm")
    params = model.init(jax.random.key(4))
    x = tokens(4)
    full, _ = model.apply(params, x)
    first, states = model.apply(params, x[:, :4])
    second, _ = model.apply(params, x[:, 4:], states=states)
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), full, rtol=1e-5, atol=1e-5)


def test_weight_tying_uses_the_embedding():
    model = LanguageModel.build(vocab_size=V, d_embed=H, cell="lstm", d_hidden=H, tie_weights=True)
    params = model.init(jax.random.key(5))
    assert "w" not in params["out"]
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, tokens())[0][:, -1]))(params)
    # the output projection's gradient reaches embedding rows never used as inputs
    unused = np.setdiff1d(np.arange(V), np.asarray(tokens()))
    assert np.abs(np.asarray(grads["embed"][unused])).max() > 0
    with pytest.raises(ValueError, match="d_embed == d_hidden"):
        LanguageModel.build(vocab_size=V, d_embed=4, cell="lstm", d_hidden=H, tie_weights=True)


def test_dropout_only_with_an_rng():
    model = lm("lstm", dropout=0.5)
    params = model.init(jax.random.key(6))
    a, _ = model.apply(params, tokens())
    b, _ = model.apply(params, tokens())
    c, _ = model.apply(params, tokens(), dropout_rng=jax.random.key(0))
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a - c)).max() > 1e-3


def test_sequence_heads():
    rng = np.random.default_rng(7)
    values = jnp.asarray(rng.normal(size=(B, T, 2)), jnp.float32)
    obs = jnp.asarray(rng.integers(0, 2, size=(B, T, 2)), jnp.float32)
    mask = jnp.asarray([[1.0] * T, [1.0] * 5 + [0.0] * (T - 5)])
    per_step = SequenceModel.build(d_values=2, d_out=3, cell="time_aware", d_hidden=H, use_obs_mask=True)
    params = per_step.init(jax.random.key(7))
    outs, _ = per_step.apply(params, values, obs_mask_BxTxF=obs, mask_BxT=mask)
    last = SequenceModel.build(d_values=2, d_out=3, cell="time_aware", d_hidden=H, use_obs_mask=True,
                               head="last")
    out_last, _ = last.apply(params, values, obs_mask_BxTxF=obs, mask_BxT=mask)
    np.testing.assert_allclose(out_last[0], outs[0, -1], rtol=1e-6)
    np.testing.assert_allclose(out_last[1], outs[1, 4], rtol=1e-6)  # the last valid step
    pool = SequenceModel.build(d_values=2, d_out=3, cell="lstm", d_hidden=H, head="attention_pool")
    pool_params = pool.init(jax.random.key(8))
    out_pool, _ = pool.apply(pool_params, values, mask_BxT=mask)
    changed = values.at[1, 5:].set(100.0)  # padding must not matter
    np.testing.assert_allclose(pool.apply(pool_params, changed, mask_BxT=mask)[0][1], out_pool[1], rtol=1e-5)
    with pytest.raises(ValueError, match="obs_mask"):
        per_step.apply(params, values)


@pytest.mark.parametrize("attention", ["softmax", "sparsemax_window", "topk_first_layer"])
def test_last_head_computes_attention_for_the_last_step_alone_with_the_same_values(attention):
    """head="last" runs the attention query of step T − 1 only; outputs and gradients equal
    those of the per-step model read at T − 1 (row 1 ends in padding)."""
    rng = np.random.default_rng(3)
    values = jnp.asarray(rng.normal(size=(B, T, 2)), jnp.float32)
    mask = jnp.asarray([[1.0] * T, [1.0] * 5 + [0.0] * (T - 5)])
    build = lambda head: SequenceModel.build(d_values=2, d_out=3, cell="time_aware", d_hidden=H, n_layers=2,
                                             attention=ATTENTION[attention], head=head)
    per_step, last = build("per_step"), build("last")
    params = per_step.init(jax.random.key(3))
    out_per_step = lambda p: per_step.apply(p, values, mask_BxT=mask)[0][:, -1]
    out_last = lambda p: last.apply(p, values, mask_BxT=mask)[0]
    grad = lambda out: jax.grad(lambda p: (out(p) ** 2).sum())

    @jax.jit  # one compilation for both models, values and gradients
    def both(params):
        return (out_last(params), grad(out_last)(params)), (out_per_step(params), grad(out_per_step)(params))

    (got, got_grads), (want, want_grads) = both(params)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got_grads, want_grads)


@pytest.mark.parametrize("kwargs,match", [
    ({"head": "mean"}, "head="),
    ({"attention": AttentionSpec(layer=3)}, "attention.layer"),
    ({"cell": "no_such_cell"}, "allowed values"),
    ({"d_hidden": 0}, "d_hidden"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_model_values_are_named(kwargs, match):
    options = dict(d_values=2, d_out=1, cell="lstm", d_hidden=H, n_layers=2)
    options.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SequenceModel.build(**options)


@pytest.mark.parametrize("cell,backward", [("lstm", "custom"), ("time_aware", "custom"), ("tlstm", "autodiff")])
@pytest.mark.parametrize("vocab_size", [5, 40])  # below and above the B·T = 18 tokens
def test_per_vocab_projection_equals_per_token(cell, backward, vocab_size):
    """The language model with x_t W_x gathered from the V x G table gives the per-token model's
    logits, final states and gradients (float64), with padding and a masked step."""
    with jax.enable_x64(True):
        models = {path: LanguageModel.build(vocab_size=vocab_size, d_embed=E, cell=cell, d_hidden=H, n_layers=2,
                                            backward=backward, input_projection=path)
                  for path in ("per_vocab", "per_token")}
        params = jax.tree.map(lambda x: x.astype(jnp.float64), models["per_token"].init(jax.random.key(8)))
        rng = np.random.default_rng(8)
        x = jnp.asarray(rng.integers(0, vocab_size, size=(B, T)), jnp.int32)
        dts = jnp.asarray(rng.exponential(1.0, size=(B, T)))
        mask = jnp.ones((B, T)).at[1, 6:].set(0.0).at[0, 3].set(0.0)

        def loss(model, params):
            logits, states = model.apply(params, x, dts, mask)
            return jnp.sum(jax.nn.log_softmax(logits)[..., 1] * mask) + sum(jnp.sum(s.c * s.h) for s in states)

        out = {path: jax.value_and_grad(functools.partial(loss, model))(params) for path, model in models.items()}
        np.testing.assert_allclose(out["per_vocab"][0], out["per_token"][0], rtol=1e-12)
        for a, b in zip(jax.tree.leaves(out["per_vocab"][1]), jax.tree.leaves(out["per_token"][1])):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_projection_path_by_size_dropout_and_remat():
    """auto: per vocabulary when V < B·T and nothing stands between the lookup and the first layer."""
    assert lm().projection_path(V + 1, training=True) == "per_vocab"
    assert lm().projection_path(V, training=False) == "per_token"
    assert lm(input_projection="per_vocab").projection_path(1, training=False) == "per_vocab"
    assert lm(input_projection="per_token").projection_path(10 ** 6, training=False) == "per_token"
    assert lm(dropout=0.1).projection_path(10 ** 6, training=True) == "per_token"  # embedding dropout
    assert lm(dropout=0.1).projection_path(10 ** 6, training=False) == "per_vocab"  # evaluation
    assert lm(remat=True, input_projection="per_vocab").projection_path(10 ** 6, training=False) == "per_token"
    with pytest.raises(ValueError, match="input_projection"):
        lm(input_projection="table")
