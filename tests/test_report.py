"""ltf/report.py on run directories written here: one row per arm from the final records, mean ±
sample std over seeds, wall time shared by seeds trained in one process, unfinished runs left
out and named, the figures. (tests/test_sweep_runner.py reports a sweep it trains, under `slow`.)"""

import csv
import json

import numpy as np
import pytest

from ltf import report
from ltf.sweep import RUN_FILE, SWEEP_FILE

STEPS = 20
# run name -> (arm, seed, final validation bpc, final test bpc or None, attempts' wall times, finished)
RUNS = {
    "cell=lstm,seed=0": ("cell=lstm", 0, 2.0, 2.1, [10.0], True),
    "cell=lstm,seed=1": ("cell=lstm", 1, 2.4, 2.3, [4.0, 8.0], True),  # resumed once
    "cell=tlstm,seed=0": ("cell=tlstm", 0, 3.0, None, [30.0], True),
    "cell=tlstm,seed=1": ("cell=tlstm", 1, None, None, [5.0], False),  # stopped at step 10
}


def write_run(workdir, name, arm, seed, val, test, walls, finished, *, shared=False):
    run_dir = workdir / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"train": {"steps": STEPS}, "seed": seed}))
    records = [{"step": 10, "split": "validation", "bpc": 5.0 + seed, "loss": 4.0}]
    if finished:
        records.append({"step": STEPS, "split": "validation", "bpc": val, "loss": val * 0.69})
        if test is not None:
            records.append({"step": STEPS, "split": "test", "bpc": test, "loss": test * 0.69})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    attempts = [{"wall_s": w, **({"trained_with": ["a", "b"]} if shared else {})} for w in walls]
    (run_dir / RUN_FILE).write_text(json.dumps({"name": name, "attempts": attempts}))
    return {"name": name, "arm": arm, "seed": seed, "overrides": {"model.cell": arm.split("=")[1], "seed": seed},
            "steps": STEPS}


@pytest.fixture
def workdir(tmp_path):
    entries = [write_run(tmp_path, name, *spec) for name, spec in RUNS.items()]
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"config": "configs/tlstm_lm.py", "runs": entries}))
    return tmp_path


def test_rows_per_arm_from_the_final_records(workdir):
    results = report.collect(workdir)
    assert [r.name for r in results] == list(RUNS)
    assert report.choose_metric(results) == "bpc"
    lstm, tlstm = report.summarise(results, "bpc")
    assert (lstm["arm"], lstm["n"], lstm["seeds"]) == ("cell=lstm", 2, "0 1")
    assert lstm["validation_bpc_mean"] == pytest.approx(2.2)
    assert lstm["validation_bpc_std"] == pytest.approx(np.std([2.0, 2.4], ddof=1))
    assert lstm["test_bpc_mean"] == pytest.approx(2.2) and lstm["wall_s_mean"] == pytest.approx(11.0)
    assert lstm["model.cell"] == "lstm" and "seed" not in lstm  # overrides as columns, not the seed
    # one finished seed: a mean without a std; the stopped run is left out and named
    assert (tlstm["n"], tlstm["validation_bpc_mean"], tlstm["validation_bpc_std"]) == (1, 3.0, None)
    assert tlstm["test_bpc_mean"] is None and tlstm["left_out"] == "cell=tlstm,seed=1"


def test_the_written_table_csv_and_figures(workdir):
    paths = report.write_report(workdir)
    md = paths["md"].read_text()
    assert "# Sweep results: `configs/tlstm_lm.py`" in md
    assert f"| `cell=lstm` | 2 | 2.2000 ± {np.std([2.0, 2.4], ddof=1):.4f} | 2.2000 ± 0.1414 | 11.0 s |" in md
    assert "| `cell=tlstm` | 1 | 3.0000 ± — | — | 30.0 s |" in md
    assert "Left out (not finished): `cell=tlstm,seed=1`." in md
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [r["arm"] for r in rows] == ["cell=lstm", "cell=tlstm"]
    assert rows[1]["validation_bpc_std"] == "" and float(rows[0]["validation_loss_mean"]) == pytest.approx(2.2 * 0.69)
    for name in ("learning_curves", "final_bpc"):
        assert paths[name].stat().st_size > 1000


def test_seeds_trained_in_one_process_share_its_wall_time(tmp_path):
    entry = write_run(tmp_path, "cell=lstm,seed=0", "cell=lstm", 0, 2.0, None, [12.0], True, shared=True)
    (result,) = report.collect(tmp_path, [entry])
    assert result.wall_s == pytest.approx(6.0)


def test_a_metric_the_runs_do_not_log_is_named(workdir):
    with pytest.raises(ValueError, match="metric 'auroc': not in the runs' final validation records"):
        report.write_report(workdir, metric="auroc")
    assert report.choose_metric(report.collect(workdir), "loss") == "loss"


def test_runs_are_found_without_sweep_json(workdir):
    (workdir / SWEEP_FILE).unlink()
    for name, (arm, seed, *_) in RUNS.items():  # what the runner writes beside each run
        record = json.loads((workdir / name / RUN_FILE).read_text())
        (workdir / name / RUN_FILE).write_text(json.dumps({**record, "arm": arm, "seed": seed}))
    assert [r["arm"] for r in report.summarise(report.collect(workdir), "bpc")] == ["cell=lstm", "cell=tlstm"]


def test_with_test_at_the_best_checkpoint_validation_is_read_there_too(tmp_path):
    """A run whose test row names checkpoint_step (train.test_at="best"): its validation value
    is the one at that step, and the table says so."""
    entry = write_run(tmp_path, "cell=lstm,seed=0", "cell=lstm", 0, 2.0, None, [1.0], True)
    metrics = tmp_path / "cell=lstm,seed=0" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write(json.dumps({"step": STEPS, "split": "test", "bpc": 2.5, "checkpoint_step": 10}) + "\n")
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"config": "c.py", "runs": [entry]}))
    (result,) = report.collect(tmp_path)
    assert result.final["validation"]["bpc"] == 5.0 and result.final["test"]["bpc"] == 2.5  # step 10's
    assert "best validation checkpoint" in report.write_report(tmp_path)["md"].read_text()


def test_the_table_names_what_an_arm_s_runs_differ_in(tmp_path):
    assert report.replicates_word(report.collect(_cv_like(tmp_path / "seeds", fold=False))) == "seeds"
    workdir = _cv_like(tmp_path / "cv", fold=True)
    assert report.replicates_word(report.collect(workdir)) == "folds (`task.fold`)"
    md = report.write_report(workdir)["md"].read_text()
    assert "mean ± sample std over folds (`task.fold`)" in md and "over seeds" not in md
    assert "| `cell=grud` | 3 | 2.1000 ± 0.1000 |" in md


def _cv_like(workdir, *, fold: bool):
    """Three runs of one arm, differing in the seed, or (one seed) in task.fold as GRU-D's CV does."""
    entries = []
    for i, val in enumerate((2.0, 2.1, 2.2)):
        entry = write_run(workdir, f"cell=grud,{'fold' if fold else 'seed'}={i}", "cell=grud",
                          0 if fold else i, val, None, [1.0], True)
        if fold:
            entry["overrides"]["task.fold"] = i
        entries.append(entry)
    (workdir / SWEEP_FILE).write_text(json.dumps({"config": "configs/physionet.py", "runs": entries}))
    return workdir


def test_an_arm_is_shown_by_its_label(workdir):
    """A label (the config's name for an arm) names its row and figures; the run name, which a
    long arm ends in a hash, stays in results.csv beside it."""
    sweep = json.loads((workdir / SWEEP_FILE).read_text())
    for entry in sweep["runs"]:
        if entry["arm"] == "cell=tlstm":
            entry["label"] = "tlstm_long_name"
    (workdir / SWEEP_FILE).write_text(json.dumps(sweep))
    paths = report.write_report(workdir)
    md = paths["md"].read_text()
    assert "| `tlstm_long_name` | 1 |" in md and "| `cell=lstm` | 2 |" in md  # unlabelled: its run name
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [(r["arm"], r["label"]) for r in rows] == [("cell=lstm", "cell=lstm"), ("cell=tlstm", "tlstm_long_name")]
