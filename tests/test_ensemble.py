"""ltf.ensemble and scripts/ensemble.py: the mean prediction of trained runs, scored as one model."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ltf import metrics, train
from ltf.config_lib import load_config
from ltf.ensemble import evaluate_ensemble
from ltf.evaluation import evaluate_run, pick_step
from ltf.runs import load_run
from ltf.tasks.registry import make_task

from physionet_files import write_set

REPO = Path(__file__).resolve().parents[1]
FORECAST = "forecast.py:smoke,kind=subset,residual=seasonal_naive,window_norm"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def forecast_runs(tmp_path_factory):
    """Two seeds of a smoke forecast (seasonal residual, irregular windows), laid out as a sweep."""
    root = tmp_path_factory.mktemp("sweep")
    arm = "kind=subset,residual=seasonal_naive"
    names = [f"{arm},seed={s}" for s in (0, 1)]
    for seed, name in enumerate(names):
        c = load_config(str(REPO / "configs" / FORECAST))
        c.seed = seed
        train.train_and_evaluate(c, root / name)
    (root / "sweep.json").write_text(json.dumps({"runs": [{"name": n, "arm": arm, "seed": s}
                                                          for s, n in enumerate(names)]}))
    return root, [root / n for n in names]


def _copy_with(run, dst, **task_fields):
    """The run's directory copied with its config's task fields changed (the checkpoints kept)."""
    shutil.copytree(run, dst)
    config = json.loads((dst / "config.json").read_text())
    config["task"].update(task_fields)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _predictions(workdir, split):
    """A member's forecasts of every batch of `split`, in order, at its best checkpoint; its task."""
    run = load_run(workdir, step=pick_step(workdir))
    carry = run.task.model.initial_state(run.config.data.eval_batch_size)
    return [np.asarray(run.task.prediction(run.params, carry, b)[1]) for b in run.task.eval_batches(split)], run.task


def test_a_run_ensembled_with_itself_scores_as_the_run(forecast_runs):
    _, (run0, _) = forecast_runs
    alone = evaluate_run(run0, splits=["test"])["test"]
    twice = evaluate_ensemble([run0, run0], splits=["test"])["splits"]["test"]
    for k in ("mae", "mse", "loss"):
        assert twice[k] == pytest.approx(alone[k], rel=1e-5)


@pytest.mark.slow
def test_the_ensemble_scores_the_mean_forecast(forecast_runs):
    _, runs = forecast_runs
    got = evaluate_ensemble(runs, splits=["test"])["splits"]["test"]
    (p0, task), (p1, _) = _predictions(runs[0], "test"), _predictions(runs[1], "test")
    ae_sums, count = np.zeros(3), 0.0  # member 0, member 1, their mean forecast
    for a, b, batch in zip(p0, p1, task.eval_batches("test")):
        weight = batch["target_mask"] * batch["example_mask"][:, None]
        for i, pred in enumerate((a, b, (a + b) / 2)):
            ae_sums[i] += np.sum(np.abs(pred - batch["targets"]) * weight * batch["scale"])
        count += weight.sum()
    mae_0, mae_1, mae_mean = ae_sums / count
    assert got["mae"] == pytest.approx(mae_mean, rel=1e-5)
    assert mae_0 != pytest.approx(mae_1)  # two different members
    assert got["mae"] <= (mae_0 + mae_1) / 2 + 1e-6  # |·| is convex: never worse than the members' mean


def test_members_must_score_the_same_examples_but_may_read_them_differently(forecast_runs, tmp_path):
    _, (run0, _) = forecast_runs
    other = _copy_with(run0, tmp_path / "other", H=3)
    with pytest.raises(ValueError, match=r"score other validation examples .*differ in task.H: 2 against 3"):
        evaluate_ensemble([run0, other])  # refused before its checkpoint (of H = 2 outputs) is read
    # the same targets read otherwise: a longer window, fewer points kept (the subset thins the
    # inputs, not the targets), no window normalisation; the same parameters fit
    reads_otherwise = _copy_with(run0, tmp_path / "reads", L=9, keep=0.5, window_norm=False)
    assert np.isfinite(evaluate_ensemble([run0, reads_otherwise], splits=["test"])["splits"]["test"]["mae"])
    with pytest.raises(ValueError, match="at least 2 runs"):
        evaluate_ensemble([run0])


def test_a_language_model_has_no_prediction_to_average(tmp_path):
    run = tmp_path / "lm"
    run.mkdir()
    (run / "config.json").write_text(load_config(str(REPO / "configs" / "tlstm_lm.py") + ":smoke").to_json())
    with pytest.raises(ValueError, match="has no `prediction`"):
        evaluate_ensemble([run, run])


def test_physionet_scores_the_logit_of_the_mean_probability(tmp_path):
    """PhysioNet's hooks: outputs_from(prediction) scores as eval_outputs, and a mean of two models'
    probabilities scores as its own AUROC and cross-entropy."""
    write_set(tmp_path / "data", n=40)
    c = load_config(str(REPO / "configs" / "physionet.py") + ":smoke")
    c.task.data_dir = str(tmp_path / "data")
    task = make_task(c)
    params = [task.model.init(jax.random.key(s)) for s in (0, 1)]
    carry = task.model.initial_state(c.data.eval_batch_size)
    batches = list(task.eval_batches("test"))
    probs = [np.concatenate([np.asarray(task.prediction(p, carry, b)[1]) for b in batches]) for p in params]
    own = task.eval_scalars([task.eval_outputs(params[0], carry, b)[1] for b in batches])
    sizes = np.cumsum([len(b["targets"]) for b in batches])[:-1]
    round_trip = task.eval_scalars([task.outputs_from(p, b) for p, b in zip(np.split(probs[0], sizes), batches)])
    assert round_trip["auroc"] == pytest.approx(own["auroc"])
    assert round_trip["loss"] == pytest.approx(own["loss"], rel=1e-4)
    mean_prob = (probs[0] + probs[1]) / 2
    got = task.eval_scalars([task.outputs_from(p, b) for p, b in zip(np.split(mean_prob, sizes), batches)])
    keep = np.concatenate([b["example_mask"] for b in batches]) > 0
    labels, mean_prob = np.concatenate([b["targets"] for b in batches])[keep], mean_prob[keep]
    assert got["auroc"] == pytest.approx(metrics.auroc(labels, mean_prob))
    loss = -np.mean(labels * np.log(mean_prob) + (1 - labels) * np.log1p(-mean_prob))
    assert got["loss"] == pytest.approx(loss, rel=1e-4)


@pytest.mark.slow
def test_the_script_writes_one_row_per_arm(forecast_runs):
    root, runs = forecast_runs
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "ensemble.py"), "--sweep", str(root),
                          "--metric", "mae"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    written = json.loads((root / "ensembles.json").read_text())
    (arm,) = written
    assert [m["workdir"] for m in written[arm]["members"]] == [str(r) for r in runs]
    assert f"| `{arm}` | 2 | " in out.stdout and f"{written[arm]['splits']['test']['mae']:.4f} |" in out.stdout
    assert (root / "ensembles.md").read_text().count(f"`{arm}`") == 1


def test_workdir_patterns_expand_to_run_directories(forecast_runs):
    """Run directories hold commas, so --workdir is repeatable and takes glob patterns."""
    root, runs = forecast_runs
    spec = importlib.util.spec_from_file_location("ensemble_script", REPO / "scripts" / "ensemble.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.expand([str(runs[0]), str(root / "*seed=1")]) == [str(runs[0]), str(runs[1])]
    assert script.expand([str(root / "*seed=*")]) == [str(r) for r in runs]
    with pytest.raises(Exception, match="matches no directory"):
        script.expand([str(root / "*seed=9")])
