"""ltf.ensemble and scripts/ensemble.py: the mean prediction of trained runs, scored as one model."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ltf import metrics, train
from ltf.config_lib import load_config
from ltf.ensemble import evaluate_ensemble
from ltf.evaluation import evaluate_run, pick_step
from ltf.runs import load_run

from physionet_files import write_set

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "cache"))


def _trained(spec, workdir, seed=0, **task_fields):
    c = load_config(str(REPO / "configs" / spec))
    c.seed = seed
    c.task.update(task_fields)
    train.train_and_evaluate(c, workdir)
    return workdir


@pytest.fixture(scope="module")
def forecast_runs(tmp_path_factory):
    """Two seeds of a smoke forecast (seasonal residual, irregular windows): a sweep's layout."""
    root = tmp_path_factory.mktemp("sweep")
    arm = "kind=subset,residual=seasonal_naive"
    names = [f"{arm},seed={s}" for s in (0, 1)]
    for s, name in enumerate(names):
        _trained("forecast.py:smoke,kind=subset,residual=seasonal_naive,window_norm", root / name, seed=s)
    (root / "sweep.json").write_text(json.dumps({"runs": [{"name": n, "arm": arm, "seed": s}
                                                          for s, n in enumerate(names)]}))
    return root, [root / n for n in names]


def _predictions(workdir, split):
    """A member's predictions of every batch of `split`, in order, at its best checkpoint; its task."""
    run = load_run(workdir, step=pick_step(workdir))
    carry = run.task.model.initial_state(run.config.data.eval_batch_size)
    return [np.asarray(run.task.prediction(run.params, carry, b)[1]) for b in run.task.eval_batches(split)], run.task


def test_a_run_ensembled_with_itself_scores_as_the_run(forecast_runs):
    _, (run0, _) = forecast_runs
    alone = evaluate_run(run0, splits=["test"])["test"]
    twice = evaluate_ensemble([run0, run0], splits=["test"])["splits"]["test"]
    for k in ("mae", "mse", "loss"):
        assert twice[k] == pytest.approx(alone[k], rel=1e-5)


def test_the_ensemble_scores_the_mean_forecast(forecast_runs):
    _, runs = forecast_runs
    got = evaluate_ensemble(runs, splits=["test"])["splits"]["test"]
    (p0, task), (p1, _) = _predictions(runs[0], "test"), _predictions(runs[1], "test")
    ae_sum, count = 0.0, 0.0
    for a, b, batch in zip(p0, p1, task.eval_batches("test")):
        weight = batch["target_mask"] * batch["example_mask"][:, None]
        ae_sum += np.sum(np.abs((a + b) / 2 - batch["targets"]) * weight * batch["scale"])
        count += weight.sum()
    assert got["mae"] == pytest.approx(ae_sum / count, rel=1e-5)
    # the absolute error is convex: the mean forecast is never worse than the members' mean error
    alone = [evaluate_run(r, splits=["test"])["test"]["mae"] for r in runs]
    assert got["mae"] <= np.mean(alone) + 1e-6


def test_members_must_score_the_same_examples_but_may_read_them_differently(forecast_runs, tmp_path):
    _, (run0, _) = forecast_runs
    other = _trained("forecast.py:smoke,kind=subset,residual=seasonal_naive,window_norm", tmp_path / "other", H=3)
    with pytest.raises(ValueError, match=r"score other validation examples .*differ in task.H: 2 against 3"):
        evaluate_ensemble([run0, other])
    # other inputs to the same targets: a longer window, fewer points kept (the subset thins the
    # inputs, not the targets), no window normalisation
    reads_otherwise = _trained("forecast.py:smoke,kind=subset,residual=seasonal_naive", tmp_path / "reads", L=9,
                               keep=0.5)
    assert np.isfinite(evaluate_ensemble([run0, reads_otherwise], splits=["test"])["splits"]["test"]["mae"])
    with pytest.raises(ValueError, match="at least 2 runs"):
        evaluate_ensemble([run0])


def test_a_language_model_has_no_prediction_to_average(tmp_path):
    run = tmp_path / "lm"
    train.train_and_evaluate(load_config(str(REPO / "configs" / "tlstm_lm.py") + ":smoke"), run)
    with pytest.raises(ValueError, match="has no `prediction`"):
        evaluate_ensemble([run, run])


def test_physionet_ensembles_average_probabilities(tmp_path):
    write_set(tmp_path / "data", n=60)
    runs = [_trained("physionet.py:smoke", tmp_path / f"seed={s}", seed=s, data_dir=str(tmp_path / "data"))
            for s in (0, 1)]
    alone = evaluate_run(runs[0], splits=["test"])["test"]
    twice = evaluate_ensemble([runs[0], runs[0]], splits=["test"])["splits"]["test"]
    assert twice["auroc"] == pytest.approx(alone["auroc"]) and twice["loss"] == pytest.approx(alone["loss"], rel=1e-4)
    got = evaluate_ensemble(runs, splits=["test"])["splits"]["test"]
    (p0, task), (p1, _) = _predictions(runs[0], "test"), _predictions(runs[1], "test")
    batches = list(task.eval_batches("test"))
    keep = np.concatenate([b["example_mask"] for b in batches]) > 0
    labels = np.concatenate([b["targets"] for b in batches])[keep]
    mean_prob = ((np.concatenate(p0) + np.concatenate(p1)) / 2)[keep]

    assert got["auroc"] == pytest.approx(metrics.auroc(labels, mean_prob))
    loss = -np.mean(labels * np.log(mean_prob) + (1 - labels) * np.log1p(-mean_prob))
    assert got["loss"] == pytest.approx(loss, rel=1e-4)


def test_the_script_writes_one_row_per_arm(forecast_runs):
    root, runs = forecast_runs
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "ensemble.py"), "--sweep", str(root),
                          "--metric", "mae"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    written = json.loads((root / "ensembles.json").read_text())
    (arm,) = written
    assert [m["workdir"] for m in written[arm]["members"]] == [str(r) for r in runs]
    test_mae = written[arm]["splits"]["test"]["mae"]
    assert f"| `{arm}` | 2 | " in out.stdout and f"{test_mae:.4f} |" in out.stdout
    assert (root / "ensembles.md").read_text().count(f"`{arm}`") == 1
    # run directories hold commas: --workdir is repeatable and takes patterns
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "ensemble.py"), "--workdir", str(runs[0]),
                          "--workdir", str(root / "*seed=1")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"| `runs` | 2 | " in out.stdout and f"{test_mae:.4f} |" in out.stdout
