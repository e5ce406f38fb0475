"""GRU-D's input decay (ltf/cells/decay.py, SequenceModel(input_decay=True)): a hand-computed
example, the special cases, causality, gradients, x̄ from the training split only, the config."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ltf import train
from ltf.cells import decay
from ltf.config_lib import load_config, load_module
from ltf.models import SequenceModel
from physionet_files import V, write_set

REPO = Path(__file__).resolve().parents[1]
F, H, B, T = 3, 4, 2, 6

# One stay, 4 events at hours 0.5, 1.5, 1.5 (the same time twice), 4.0; 3 variables:
#   0 never observed (its entries hold garbage), 1 observed once (2.0 at event 1),
#   2 observed at events 0 (−1.0) and 2 (3.0).
# δ: hours since the variable's previous observation strictly before the event (admission, 0, if none),
# as the physionet task's dt="per_variable" gives it: 0 at event 2 for variable 1 (seen at the same time).
OBS = np.array([[0, 0, 1], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float64)[None]
VALUES = np.array([[7.0, 9.0, -1.0], [7.0, 2.0, 9.0], [np.nan, 9.0, 3.0], [7.0, 9.0, 9.0]])[None]
DELTA = np.array([[0.5, 0.5, 0.5], [1.5, 1.5, 1.0], [1.5, 0.0, 1.0], [4.0, 2.5, 2.5]])[None]
PARAMS = {"w": np.array([0.2, 0.5, 1.0]), "b": np.array([0.1, 0.2, -0.5])}
MEAN = np.array([1.0, -2.0, 0.5])


def test_input_decay_by_hand():
    with jax.enable_x64(True):
        x_last = decay.last_observed(jnp.asarray(VALUES), jnp.asarray(OBS), x_mean=jnp.asarray(MEAN))
        np.testing.assert_array_equal(x_last[0], [[1.0, -2.0, -1.0], [1.0, 2.0, -1.0], [1.0, 2.0, 3.0],
                                                  [1.0, 2.0, 3.0]])
        x_hat = decay.input_decay(PARAMS, jnp.asarray(VALUES), jnp.asarray(OBS), jnp.asarray(DELTA), x_last,
                                  jnp.asarray(MEAN))
    # variable 0: never seen, so x_last = x̄ and x̂ = γ x̄ + (1 − γ) x̄ = x̄ = 1 at every event
    # variable 1: event 0 unseen yet: x̄ = −2; event 1 observed: 2; event 2, δ = 0: rate = 0.5·0 + 0.2,
    #   γ = e^−0.2 = 0.8187307531, x̂ = 2γ − 2(1 − γ) = 1.2749230124; event 3, δ = 2.5: rate = 1.45,
    #   γ = e^−1.45 = 0.2345702881, x̂ = 2γ − 2(1 − γ) = −1.0617188476
    # variable 2: event 1, δ = 1: rate = 1 − 0.5, γ = e^−0.5 = 0.6065306597, x̂ = −γ + 0.5(1 − γ) = −0.4097959896;
    #   event 3, δ = 2.5: rate = 2, γ = e^−2 = 0.1353352832, x̂ = 3γ + 0.5(1 − γ) = 0.8383382081
    expected = [[1.0, -2.0, -1.0], [1.0, 2.0, -0.4097959896], [1.0, 1.2749230124, 3.0],
                [1.0, -1.0617188476, 0.8383382081]]
    np.testing.assert_allclose(x_hat[0], expected, rtol=0, atol=1e-9)


def test_last_observed_starts_afresh_after_a_reset():
    x = jnp.arange(1.0, 6.0).reshape(1, 5, 1)
    m = jnp.asarray([1.0, 0.0, 0.0, 1.0, 0.0]).reshape(1, 5, 1)
    resets = jnp.asarray([[0.0, 0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(decay.last_observed(x, m)[0, :, 0], [1, 1, 1, 4, 4])
    np.testing.assert_array_equal(decay.last_observed(x, m, resets, x_mean=-1.0)[0, :, 0], [1, 1, -1, 4, 4])


def test_every_value_observed_leaves_the_values_unchanged():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32)
    delta = jnp.asarray(rng.exponential(size=(B, T, F)), jnp.float32)
    params = {"w": jnp.asarray([0.3, 1.0, 2.0]), "b": jnp.asarray([1.0, 0.0, -1.0])}
    ones = jnp.ones_like(x)
    np.testing.assert_array_equal(decay.input_decay(params, x, ones, delta, decay.last_observed(x, ones)), x)


def model(input_decay=True, cell="grud", **kw):
    return SequenceModel.build(d_values=F, d_out=2, cell=cell, d_hidden=H, use_obs_mask=True,
                               input_decay=input_decay, cell_options={"d_time": F}, **kw)


def inputs(seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 2, size=(B, T, F)).astype(np.float64)
    values = np.where(obs > 0, rng.normal(size=(B, T, F)), 0.0)  # 0 where unobserved, as the data give it
    delta = rng.exponential(size=(B, T, F))
    return tuple(jnp.asarray(a, dtype) for a in (values, delta, obs))


def test_the_model_with_every_value_observed_is_the_model_without_input_decay():
    with_decay, without = model(), model(input_decay=False)
    params = with_decay.init(jax.random.key(0))
    w = params["input_decay"]["w"]
    assert w.shape == (F,) and bool(jnp.all(w > 0)) and not jnp.any(params["input_decay"]["b"])
    plain = without.init(jax.random.key(0))  # the option's key is its own: the rest is unchanged
    assert jax.tree.all(jax.tree.map(jnp.array_equal, {k: params[k] for k in plain}, plain))
    values, delta, _ = inputs()
    ones = jnp.ones_like(values)
    np.testing.assert_array_equal(with_decay.apply(params, values, delta, None, ones)[0],
                                  without.apply(plain, values, delta, None, ones)[0])
    _, _, obs = inputs()
    assert np.abs(np.asarray(with_decay.apply(params, values, delta, None, obs)[0]
                             - without.apply(plain, values, delta, None, obs)[0])).max() > 1e-4


def test_the_model_decays_toward_zero_the_training_mean():
    """x̂ from the model is the hand example's with x̄ = 0 (variable 0: never seen, so 0)."""
    with jax.enable_x64(True):
        m = model()
        params = {"input_decay": {k: jnp.asarray(v) for k, v in PARAMS.items()}}
        x_hat = m.decayed_values(params, jnp.asarray(VALUES), jnp.asarray(DELTA), None, jnp.asarray(OBS))
    g = np.exp([-0.2, -1.45, -0.5, -2.0])
    expected = [[0, 0, -1], [0, 2, -g[2]], [0, 2 * g[0], 3], [0, 2 * g[1], 3 * g[3]]]
    np.testing.assert_allclose(x_hat[0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["grud", "lstm"])
def test_input_decay_is_causal(cell):
    """Changing any input after step t (value, observation, gap) leaves every output up to t."""
    m = model(cell=cell)
    params = m.init(jax.random.key(1))
    values, delta, obs = inputs(1)
    apply = jax.jit(lambda v, d, o: m.apply(params, v, d, None, o)[0])
    base = apply(values, delta, obs)
    for t in (0, 2, T - 2):
        later = (slice(None), slice(t + 1, None))
        changed = (values.at[later].add(1.0), delta.at[later].multiply(2.0), 1.0 - obs[later])
        out = apply(changed[0], changed[1], obs.at[later].set(changed[2]))
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
        assert np.abs(np.asarray(out[:, t + 1:] - base[:, t + 1:])).max() > 0
    jac = jax.jacrev(lambda v, d: apply(v, d, obs), argnums=(0, 1))(values, delta)
    for j in jac:  # out_BxTxO over in_BxTxF: zero wherever the input step comes later
        j = np.asarray(j)
        for t in range(T):
            assert np.all(j[:, t, :, :, t + 1:] == 0.0)


@pytest.mark.slow  # 20 s; the generic tests compare every cell's custom pass with autodiff
def test_model_gradients_custom_equal_autodiff_with_masks_and_resets():
    with jax.enable_x64(True):
        values, delta, obs = inputs(2, jnp.float64)
        mask = jnp.asarray([[1.0] * T, [1.0] * 4 + [0.0] * (T - 4)])
        resets = jnp.zeros((B, T)).at[0, 3].set(1.0)
        models = {b: model(head="per_step", backward=b) for b in ("custom", "autodiff")}
        params = jax.tree.map(lambda a: a.astype(jnp.float64), models["custom"].init(jax.random.key(2)))

        def loss(backward):
            def f(params, values, delta):
                out, _ = models[backward].apply(params, values, delta, mask, obs, resets_BxT=resets)
                return jnp.sum(jnp.sin(out) * mask[..., None])
            return f

        grads = {b: jax.grad(loss(b), argnums=(0, 1, 2))(params, values, delta) for b in models}
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), *grads.values())
        assert float(jnp.max(jnp.abs(grads["custom"][0]["input_decay"]["w"]))) > 0
        check_grads(loss("custom"), (params, values, delta), order=1, modes=["rev"])


def test_input_decay_needs_a_gap_per_variable_and_the_observation_mask():
    m = model()
    params = m.init(jax.random.key(0))
    values, delta, obs = inputs()
    with pytest.raises(ValueError, match="one column per variable.*per_variable"):
        m.apply(params, values, delta[..., :1], None, obs)
    with pytest.raises(ValueError, match="obs_mask"):
        m.apply(params, values, delta)


@pytest.fixture
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "cache"))


def test_the_mean_x_bar_comes_from_the_training_split_alone(tmp_path, _cache):
    """The model decays toward x̄ = 0: the training split's mean of every variable in the model's
    units. Validation and test values multiplied by 10 change neither the normaliser nor x̄."""
    from ltf.data.series.physionet import load_physionet

    def x_bar(data):  # the mean of each variable's observations in the training batches
        batch = data.take("train", np.arange(len(data.splits["train"])))
        count = batch["obs_mask"].sum(axis=(0, 1))
        return (batch["inputs"] * batch["obs_mask"]).sum(axis=(0, 1)) / np.maximum(count, 1), count

    write_set(tmp_path / "one", n=40)
    data = load_physionet(tmp_path / "one")
    held_out = set(data.splits["validation"].record_ids) | set(data.splits["test"].record_ids)
    write_set(tmp_path / "two", n=40, scale=lambda rid: 10.0 if rid in held_out else 1.0)
    moved = load_physionet(tmp_path / "two")
    (mean, count), (mean_moved, _) = x_bar(data), x_bar(moved)
    assert count[V["HR"]] > 0 and count[V["MAP"]] > 0
    np.testing.assert_allclose(mean_moved, 0.0, atol=1e-5)  # fails if held-out values reach the mean
    np.testing.assert_array_equal(mean_moved, mean)
    np.testing.assert_array_equal(moved.normaliser.mean, data.normaliser.mean)
    np.testing.assert_array_equal(moved.normaliser.std, data.normaliser.std)
    val = moved.take("validation", np.arange(len(moved.splits["validation"])))
    hr = val["inputs"][..., V["HR"]][val["obs_mask"][..., V["HR"]] > 0]
    assert hr.mean() > 10  # the held-out values did change: ~10 x 80 beats per minute, far from x̄


@pytest.mark.slow  # end to end, 11 s
def test_the_grud_choice_trains_and_is_a_sweep_arm(tmp_path, _cache):
    c = load_config(str(REPO / "configs" / "physionet.py") + ":grud,smoke")
    assert (c.model.cell, c.model.input_decay, c.model.use_obs_mask, c.task.dt,
            c.model.cell_options.d_time) == ("grud", True, True, "per_variable", 37)
    write_set(tmp_path / "data", n=60)
    c.task.data_dir = str(tmp_path / "data")
    final = train.train_and_evaluate(c, tmp_path / "run")
    assert 0.0 <= final["test"]["auroc"] <= 1.0
    task, _, _ = train.build(c)
    assert task.model.input_decay and task.model.stack.cells[0].decay
    arm = load_module(str(REPO / "configs" / "physionet.py")).ARMS["grud"]
    assert arm == {"model.cell": "grud", "task.dt": "per_variable", "model.cell_options.d_time": 37,
                   "model.input_decay": True}
