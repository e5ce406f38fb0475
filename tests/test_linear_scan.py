"""ltf.linear_scan: the parallel form equals the sequential one (values and gradients) with masks,
resets and a carried state; masked steps and resets as `ltf.rnn.scan_layer` documents them; remat
and per-vocabulary inputs change nothing; the linear cells in a language model that trains."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ltf import linear_scan
from ltf.cells.base import LSTMState
from ltf.cells.registry import make_cell
from ltf.models import LanguageModel
from ltf.rnn import TokenInputs, scan_layer

from cell_inputs import perturbed_params

B, T, D, H = 3, 11, 4, 5  # T not a power of two
NAMES = ("rglru", "linear_decay")
TOLERANCES = {jnp.float64: 1e-10, jnp.float32: 1e-5}
REPO = Path(__file__).resolve().parents[1]


def setup(name, dtype, seed=0, n_steps=T):
    """Params off their init, inputs with irregular gaps, a carried state, padding at the end of
    row 1, a masked step in row 2, resets in rows 0 and 2 (one at the masked step)."""
    cell = make_cell(name)
    params = perturbed_params(cell, jax.random.key(seed), D, H, dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, n_steps, D)), dtype)
    dts = jnp.asarray(rng.exponential(1.0, size=(B, n_steps, 1)), dtype)
    h0 = jnp.asarray(rng.normal(size=(B, H)), dtype)
    mask = np.ones((B, n_steps))
    mask[1, 7:] = mask[2, 4] = 0.0
    resets = np.zeros((B, n_steps))
    resets[0, 5] = resets[2, 4] = 1.0
    return cell, params, xs, dts, LSTMState(h0, h0), jnp.asarray(mask, dtype), jnp.asarray(resets, dtype)


def assert_trees_close(actual, expected, tol):
    """Per leaf, relative to the leaf's largest magnitude."""
    for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        scale = max(float(jnp.max(jnp.abs(e))), 1e-6)
        np.testing.assert_allclose(a / scale, e / scale, rtol=0, atol=tol, err_msg=jax.tree_util.keystr(path))


def loss_fn(cell, mask, resets, **options):
    def loss(params, xs, dts, state):
        final, hs = scan_layer(cell, params, xs, dts, mask, state, resets_BxT=resets, **options)
        weights = jnp.linspace(-1.0, 1.0, H, dtype=hs.dtype)
        return jnp.sum(jnp.sin(hs) * weights[None, None]) + jnp.sum(final.c ** 2) + jnp.sum(final.h * weights[None])
    return loss


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", NAMES)
def test_parallel_equals_sequential_in_values_and_gradients(name, dtype):
    with jax.enable_x64(dtype == jnp.float64):
        cell, params, xs, dts, state, mask, resets = setup(name, dtype)

        def both(*args):
            return {form: jax.value_and_grad(loss_fn(cell.__class__(form=form), mask, resets),
                                             argnums=(0, 1, 2, 3))(*args)
                    for form in ("sequential", "parallel")}

        results = jax.jit(both)(params, xs, dts, state)
        (value, grads), (value_ref, grads_ref) = results["parallel"], results["sequential"]
        np.testing.assert_allclose(value, value_ref, rtol=TOLERANCES[dtype])
        assert_trees_close(grads, grads_ref, TOLERANCES[dtype])
        for k, g in grads[0].items():  # every parameter takes part
            assert float(jnp.max(jnp.abs(g))) > 0, k


@pytest.mark.parametrize("n_steps", [1, 2, 7, 33])
def test_scan_forms_against_a_python_loop(n_steps):
    with jax.enable_x64(True):
        rng = np.random.default_rng(n_steps)
        a = rng.uniform(0.0, 1.2, size=(n_steps, 2, 3))
        b, h0 = rng.normal(size=(n_steps, 2, 3)), rng.normal(size=(2, 3))
        h, want = h0, []
        for t in range(n_steps):
            h = a[t] * h + b[t]
            want.append(h)
        for form in ("sequential", "parallel"):
            got = linear_scan.scan(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0), form=form)
            np.testing.assert_allclose(got, np.stack(want), rtol=1e-12, err_msg=form)


# one form per cell here: that the forms agree under masks and resets is tested above
@pytest.mark.parametrize("name,form", [("rglru", "parallel"), ("linear_decay", "sequential")])
def test_masks_and_resets_behave_as_documented(name, form):
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask, resets = setup(name, jnp.float64, seed=1)
        cell = cell.__class__(form=form)
        layer = jax.jit(scan_layer, static_argnums=0)
        final, hs = layer(cell, params, xs, dts, mask, state, resets_BxT=resets)
        row = lambda a, b, lo=0, hi=None: a[b:b + 1, lo:hi]  # noqa: E731
        first = lambda b: jax.tree.map(lambda v: v[b:b + 1], state)  # noqa: E731
        # row 1: padding after step 7 emits the carried h, and the final carry is h after step 6
        final_1, hs_1 = layer(cell, params, row(xs, 1, 0, 7), row(dts, 1, 0, 7), state=first(1))
        np.testing.assert_allclose(hs[1, :7], hs_1[0], rtol=1e-12)
        np.testing.assert_allclose(hs[1, 7:], np.broadcast_to(hs_1[0, -1], (T - 7, H)), rtol=1e-12)
        np.testing.assert_allclose(final.h[1], final_1.h[0], rtol=1e-12)
        np.testing.assert_allclose(final.c[1], final_1.c[0], rtol=1e-12)
        # row 0: a reset at step 5 is a new sequence from zeros (flagged as its start)
        start = jnp.zeros((1, T - 5)).at[:, 0].set(1.0)
        final_0, tail = layer(cell, params, row(xs, 0, 5), row(dts, 0, 5), resets_BxT=start)
        np.testing.assert_allclose(hs[0, 5:], tail[0], rtol=1e-12)
        np.testing.assert_allclose(final.c[0], final_0.c[0], rtol=1e-12)
        # row 2: the reset at the masked step 4 emits zeros there, then goes on from zeros
        np.testing.assert_array_equal(hs[2, 4], 0.0)
        _, tail_2 = layer(cell, params, row(xs, 2, 5), row(dts, 2, 5))
        np.testing.assert_allclose(hs[2, 5:], tail_2[0], rtol=1e-12)
        # no gradient crosses a reset: later outputs do not depend on earlier inputs or the state
        later = lambda x, s: scan_layer(cell, params, x, dts, mask, s, resets_BxT=resets)[1][0, 5:]  # noqa: E731
        d_xs, d_state = jax.jit(jax.jacobian(later, argnums=(0, 1)))(xs, state)
        np.testing.assert_array_equal(np.asarray(d_xs)[..., 0, :5, :], 0.0)
        np.testing.assert_array_equal(np.asarray(d_state.h)[..., 0, :], 0.0)


def test_a_row_without_a_real_step_keeps_the_given_carry():
    """As in the LSTM paths: every step masked and no reset leaves (c, h) as given, even c ≠ h."""
    cell, params, xs, dts, _, _, _ = setup("rglru", jnp.float32)
    state = LSTMState(jnp.full((B, H), 2.0), jnp.full((B, H), -1.0))
    mask = jnp.ones((B, T)).at[1].set(0.0)
    final, hs = scan_layer(cell, params, xs, dts, mask, state)
    np.testing.assert_array_equal(final.c[1], 2.0)
    np.testing.assert_array_equal(hs[1], -1.0)
    np.testing.assert_array_equal(final.c[0], final.h[0])  # elsewhere c = h


# chunks with a tail (3, 4), one chunk of exactly T (11), one longer than T (64)
@pytest.mark.parametrize("form,chunk", [("sequential", 4), ("parallel", 3), ("sequential", 11), ("parallel", 64)])
def test_remat_chunks_keep_values_and_gradients(form, chunk):
    with jax.enable_x64(True):
        cell, params, xs, dts, state, mask, resets = setup("linear_decay", jnp.float64, seed=2)
        cell = cell.__class__(form=form)
        time_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731

        def loss(remat):
            def f(params, xs, dts, state):
                final, hs = linear_scan.layer(cell, params, time_major(xs), time_major(dts), time_major(mask), state,
                                              remat=remat, remat_chunk=chunk, resets_TxB=time_major(resets))
                return jnp.sum(jnp.sin(hs)) + jnp.sum(final.h ** 2)
            return jax.value_and_grad(f, argnums=(0, 1, 2, 3))

        (value, grads), (value_ref, grads_ref) = [jax.jit(loss(r))(params, xs, dts, state) for r in (True, False)]
        np.testing.assert_allclose(value, value_ref, rtol=1e-12)
        assert_trees_close(grads, grads_ref, 1e-12)


def test_remat_through_scan_layer_and_the_chunk_must_be_positive():
    cell, params, xs, dts, state, mask, resets = setup("rglru", jnp.float32, seed=3)
    value, grads = jax.jit(jax.value_and_grad(loss_fn(cell, mask, resets)))(params, xs, dts, state)
    value_r, grads_r = jax.jit(jax.value_and_grad(loss_fn(cell, mask, resets, remat=True)))(params, xs, dts, state)
    np.testing.assert_allclose(value_r, value, rtol=1e-5)
    assert_trees_close(grads_r, grads, 1e-5)
    with pytest.raises(ValueError, match="remat_chunk=0"):
        linear_scan.layer(cell, params, xs, dts, None, state, remat=True, remat_chunk=0)


def test_token_inputs_equal_the_looked_up_embeddings():
    with jax.enable_x64(True):
        cell, params, _, dts, state, mask, resets = setup("rglru", jnp.float64, seed=4)
        rng = np.random.default_rng(4)
        embed, tokens = jnp.asarray(rng.normal(size=(6, D))), jnp.asarray(rng.integers(0, 6, size=(B, T)))
        loss = loss_fn(cell, mask, resets)
        value, grads = jax.jit(jax.value_and_grad(lambda p, e: loss(p, TokenInputs(e, tokens), dts, state),
                                                  argnums=(0, 1)))(params, embed)
        value_ref, grads_ref = jax.jit(jax.value_and_grad(lambda p, e: loss(p, e[tokens], dts, state),
                                                          argnums=(0, 1)))(params, embed)
        np.testing.assert_allclose(value, value_ref, rtol=1e-12)
        assert_trees_close(grads, grads_ref, 1e-12)


def test_auto_form_per_backend_and_errors():
    assert linear_scan.resolve_form("auto", "cpu") == linear_scan.CPU_FORM
    assert linear_scan.resolve_form("auto", "gpu") == linear_scan.resolve_form("auto", "tpu") == "parallel"
    assert linear_scan.resolve_form("sequential", "gpu") == "sequential"
    with pytest.raises(ValueError, match="form='chunkwise'"):
        linear_scan.resolve_form("chunkwise")
    cell = make_cell("lstm")
    params = cell.init(jax.random.key(0), D, H)
    with pytest.raises(ValueError, match="LSTM: ltf.linear_scan runs the linear cells"):
        linear_scan.layer(cell, params, jnp.ones((T, B, D)), jnp.ones((T, B, 1)), None, cell.initial_state(B, H))


@pytest.mark.slow  # end to end; the layers' values and gradients are checked above
@pytest.mark.parametrize("name", ["rglru", "linear_decay"])
def test_a_small_language_model_learns(name):
    """A 2-layer LM of the cell (parallel form) fits a short repeating text in a few Adam steps."""
    model = LanguageModel.build(vocab_size=7, d_embed=8, cell=name, d_hidden=16, n_layers=2,
                                cell_options={"form": "parallel"})
    params = model.init(jax.random.key(0))
    tokens = jnp.asarray(np.tile(np.arange(7), 6)[None, :41].repeat(2, axis=0), jnp.int32)
    tx = optax.adam(3e-2)

    def loss(params):
        logits, _ = model.apply(params, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = tx.init(params)
    losses = []
    for _ in range(30):
        params, opt_state, value = step(params, opt_state)
        losses.append(float(value))
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("cell", NAMES)
def test_the_smoke_config_trains_with_a_linear_cell(cell, tmp_path, monkeypatch):
    from ltf import train
    from ltf.config_lib import load_config

    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "ltf-cache"))
    config = load_config(f"{REPO / 'configs' / 'tlstm_lm.py'}:smoke,cell={cell}")
    metrics = train.train_and_evaluate(config, tmp_path / "run")
    assert np.isfinite(metrics["validation"]["loss"])
