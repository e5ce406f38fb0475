"""Time series as training tasks: errors on the original scale, AUROC from a split, errors."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltf import train
from ltf.checkpoint import Checkpointer
from ltf.writers import read_metrics
from ltf.config_lib import load_config
from ltf import baselines, metrics
from ltf.tasks.registry import make_task

from physionet_files import write_set

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "cache"))


def config(spec):
    return load_config(str(REPO / "configs" / spec))


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_forecast_errors_are_on_the_series_own_scale_and_skip_padding(loss):
    task = make_task(config(f"forecast.py:smoke,kind=subset,keep=0.5,loss={loss}"))
    batch = next(iter(task.eval_batches("test")))
    pred = np.random.default_rng(0).normal(size=batch["targets"].shape).astype(np.float32)
    batch_arrays = {k: jnp.asarray(v) for k, v in batch.items()}
    sums = {k: float(v) for k, v in task._sums(jnp.asarray(pred), batch_arrays).items()}
    weight = batch["target_mask"] * batch["example_mask"][:, None]
    expected = metrics.forecast_errors(metrics.to_original(pred, batch), metrics.to_original(batch["targets"], batch),
                                       mask=weight)
    got = task.scalars(sums)
    assert got["mse"] == pytest.approx(expected["mse"], rel=1e-4)
    assert got["mae"] == pytest.approx(expected["mae"], rel=1e-4)
    err = np.abs(pred - batch["targets"]) * weight  # the training loss, on the normalised scale
    expected_loss = np.sum(err if loss == "mae" else err**2) / weight.sum()
    assert got["loss"] == pytest.approx(expected_loss, rel=1e-4)


def test_an_unknown_forecast_loss_names_the_field_and_the_choices():
    c = config("forecast.py:smoke")
    c.task.loss = "huber"
    with pytest.raises(ValueError, match=r"config.task.loss: 'huber'; allowed values are \('mse', 'mae'\)"):
        make_task(c)


def _untrained_errors(spec):
    """Test errors of a model whose head outputs exactly 0 (its weights zeroed)."""
    task = make_task(config(spec))
    params = task.model.init(jax.random.key(0))
    params["out"] = jax.tree.map(jnp.zeros_like, params["out"])
    carry = task.model.initial_state(task.data_cfg.eval_batch_size)
    outputs = [task.eval_outputs(params, carry, {k: jnp.asarray(v) for k, v in b.items()})[1]
               for b in task.eval_batches("test")]
    return task, task.eval_scalars([{k: float(v) for k, v in o.items()} for o in outputs])


@pytest.mark.parametrize("kind, residual", [("regular", "seasonal_naive"), ("subset", "seasonal_naive"),
                                            ("poisson", "seasonal_naive"), ("regular", "seasonal_change"),
                                            ("poisson", "seasonal_change")])
def test_with_a_seasonal_residual_a_zero_output_is_that_baseline(kind, residual):
    """ŷ = naive + out: a head that outputs 0 scores exactly the baseline it corrects."""
    task, errors = _untrained_errors(f"forecast.py:smoke,kind={kind},residual={residual},window_norm")
    naive = baselines.forecast_baselines(task.data, task.season)["test"][residual]
    assert errors["mae"] == pytest.approx(naive["mae"], rel=1e-4)
    assert errors["mse"] == pytest.approx(naive["mse"], rel=1e-4)


def test_window_norm_alone_forecasts_the_window_mean_from_a_zero_output():
    task, errors = _untrained_errors("forecast.py:smoke,window_norm")
    ws = task.data.splits["test"]
    obs = ws.arrays["obs_mask"][..., 0]
    mean_K = np.sum(ws.arrays["inputs"][..., 0] * obs, 1) / np.maximum(obs.sum(1), 1)
    pred = task.data.normaliser.invert(np.repeat(mean_K[:, None], task.data.H, 1))
    assert errors["mae"] == pytest.approx(metrics.forecast_errors(pred, ws.y_true)["mae"], rel=1e-4)


def test_the_seasonal_residual_needs_a_season():
    c = config("forecast.py:smoke")
    c.task.residual = "seasonal_naive"  # nile has none
    with pytest.raises(ValueError, match="residual='seasonal_naive'.*no season"):
        make_task(c)


@pytest.mark.parametrize("kind", ["regular", "subset", "poisson"])
def test_every_kind_of_forecast_the_config_offers_trains(kind, tmp_path):
    """Poisson times fall off the grid: the config must pick the events layout for them."""
    c = config(f"forecast.py:smoke,kind={kind}")
    final = train.train_and_evaluate(c, tmp_path)
    assert np.isfinite(final["test"]["mae"]) and final["test"]["mae"] > 0


def test_physionet_trains_on_files_in_the_challenge_format_and_scores_auroc(tmp_path):
    write_set(tmp_path / "data", n=60)
    c = config("physionet.py:smoke,cell=time_aware,dt=per_variable")
    c.task.data_dir = str(tmp_path / "data")
    final = train.train_and_evaluate(c, tmp_path / "run")
    for split in ("validation", "test"):
        assert 0.0 <= final[split]["auroc"] <= 1.0 and 0.0 <= final[split]["auprc"] <= 1.0
    task, tx, _ = train.build(c)
    _, data_state, _ = Checkpointer(tmp_path / "run" / "checkpoints").restore(train.init_state(task.model, tx, c))
    assert data_state == {"next_index": c.train.steps}  # grain's position in the training batches
    outputs = [{"loss_sum": 1.0, "count": 2.0, "logits_B": np.array([0.3, -1.0]), "labels_B": np.array([1, 0]),
                "weight_B": np.array([1.0, 1.0])},
               {"loss_sum": 1.0, "count": 1.0, "logits_B": np.array([0.1, 9.0]), "labels_B": np.array([0, 1]),
                "weight_B": np.array([1.0, 0.0])}]  # the padded row (weight 0) must not count
    scores = task.eval_scalars(outputs)
    assert scores["auroc"] == metrics.auroc([1, 0, 0], [0.3, -1.0, 0.1]) == 1.0
    assert scores["loss"] == pytest.approx(2.0 / 3.0)


def test_physionet_published_split_static_features_and_test_at_the_best_validation_auroc(tmp_path):
    write_set(tmp_path / "data", n=60)
    c = config("physionet.py:smoke,protocol=published,static")
    c.task.data_dir = str(tmp_path / "data")
    task = make_task(c)
    sizes = {k: len(v) for k, v in task.data.splits.items()}
    assert sizes["test"] == 12 and sizes["train"] + sizes["validation"] == 48  # 20%, then 80/20
    assert task.model.d_static == 16 and task.model.init(jax.random.key(0))["out"]["w"].shape[0] == 8 + 16
    train.train_and_evaluate(c, tmp_path / "run")
    logged = read_metrics(tmp_path / "run")
    val = {m["step"]: m["auroc"] for m in logged if m["split"] == "validation"}
    (test,) = [m for m in logged if m["split"] == "test"]
    best = max(val.values())
    assert val[test["checkpoint_step"]] == best  # the checkpoint with the highest validation AUROC


def test_physionet_summaries_and_static_features_in_the_head(tmp_path):
    """`summaries` puts the baseline's 193 standardised summaries beside h (after the static 16):
    the head's weights grow by them, and the logit moves with them."""
    write_set(tmp_path / "data", n=60)
    c = config("physionet.py:smoke,protocol=published,static,summaries")
    c.task.data_dir = str(tmp_path / "data")
    task = make_task(c)
    assert task.head_features == ("static", "summaries")
    assert task.model.d_static == 16 + 193
    params = task.model.init(jax.random.key(0))
    assert params["out"]["w"].shape[0] == c.model.d_hidden + 16 + 193
    batch = task.data.take("train", np.arange(4))
    assert batch["summaries"].shape == (4, 193) and np.isfinite(batch["summaries"]).all()
    logits, _ = task._logits(params, None, batch, None)
    moved = {**batch, "summaries": batch["summaries"] + 1.0}
    params["out"]["w"] = params["out"]["w"].at[c.model.d_hidden + 16:].set(0.1)
    assert not np.allclose(task._logits(params, None, batch, None)[0], task._logits(params, None, moved, None)[0])
    assert np.isfinite(logits).all()


@pytest.mark.slow
def test_physionet_residual_over_the_logistic_baseline(tmp_path):
    """residual=logistic: with the model's head at zero the logit is the fitted baseline's, so the
    task scores every stay as `physionet_logistic_baseline` does; then it trains from there, with
    the summaries beside h too."""
    from ltf import baselines

    write_set(tmp_path / "data", n=60)
    c = config("physionet.py:smoke,protocol=published,residual=logistic")
    c.task.data_dir = str(tmp_path / "data")
    task = make_task(c)
    params = task.model.init(jax.random.key(0))
    params["out"] = jax.tree.map(jnp.zeros_like, params["out"])
    reference = baselines.physionet_logistic_baseline(task.data)["scores"]["test"]
    rows = np.arange(len(task.data.splits["test"]))
    logits, _ = task._logits(params, None, task.data.take("test", rows), None)
    np.testing.assert_allclose(jax.nn.sigmoid(logits), reference, rtol=1e-4, atol=1e-6)
    # both options at once, end to end: the summaries beside h and the correction to the baseline
    c.task.use_summaries = True
    final = train.train_and_evaluate(c, tmp_path / "run")
    assert 0.0 <= final["test"]["auroc"] <= 1.0
    c.task.residual = "linear"
    with pytest.raises(ValueError, match="config.task.residual: 'linear'"):
        make_task(c)


def test_static_features_change_the_logit():
    """Through the head, not ignored: two stays that differ only in their static features."""
    from ltf.models import SequenceModel

    model = SequenceModel.build(d_values=37, d_out=1, head="last", use_obs_mask=True, d_static=16, cell="lstm",
                                d_hidden=8)
    params = model.init(jax.random.key(0))
    x = jnp.zeros((2, 5, 37))
    static = jnp.zeros((2, 16)).at[1, 0].set(1.0)
    out, _ = model.apply(params, x, None, None, jnp.ones_like(x), static_BxS=static)
    assert out[0, 0] != out[1, 0]
    with pytest.raises(ValueError, match="d_static=16: pass static_BxS"):
        model.apply(params, x, None, None, jnp.ones_like(x))


def test_per_variable_time_gaps_need_a_cell_that_takes_37(tmp_path):
    write_set(tmp_path / "data", n=40)
    c = config("physionet.py:smoke,dt=per_variable")
    c.task.data_dir = str(tmp_path / "data")
    c.model.cell_options.d_time = None
    with pytest.raises(ValueError, match="d_time=37"):
        make_task(c)


def test_a_missing_physionet_folder_says_where_the_files_go(tmp_path):
    c = config("physionet.py:smoke")
    c.task.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="physionet"):
        make_task(c)


def test_the_baselines_script_scores_the_configs_own_windows():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(REPO / "scripts" / "forecast_baselines.py"), "--config",
                          str(REPO / "configs" / "forecast.py") + ":smoke"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    from ltf import baselines

    task = make_task(config("forecast.py:smoke"))
    test = baselines.forecast_baselines(task.data, task.season)["test"]["last_value"]
    assert f"| last_value | test | {test['mse']:.4g} | {test['mae']:.4g} |" in out.stdout


def test_a_forecast_with_the_residual_window_norm_and_mae_loss_trains(tmp_path):
    c = config("forecast.py:smoke,kind=subset,residual=seasonal_naive,window_norm,loss=mae")
    final = train.train_and_evaluate(c, tmp_path)
    assert np.isfinite(final["test"]["mae"]) and final["test"]["mae"] > 0


def test_every_seasonal_baseline_is_a_residual_choice():
    """RESIDUALS is spelled out (ltf.baselines is slow to import); it must name every seasonal forecast."""
    from ltf.tasks.series import RESIDUALS

    assert RESIDUALS == ("none", *baselines.SEASONAL_FORECASTS)
