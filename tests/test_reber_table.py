"""scripts/reber_table.py: the paper's rating and the interval beside each percentage."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reber_table.py"
spec = importlib.util.spec_from_file_location("reber_table", SCRIPT)
reber_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reber_table)


def test_wilson_intervals_match_known_values():
    assert reber_table.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = reber_table.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert reber_table.wilson(30, 30)[1] == 1.0


def test_ratings_follow_the_paper():
    assert reber_table.rate({"perfect": 1.0, "error_free_length": 100_000}) == "perfect"
    assert reber_table.rate({"perfect": 0.9, "error_free_length": 90_000}) == "good"
    assert reber_table.rate({"perfect": 0.0, "error_free_length": 1_000}) == "bad"  # not over 1,000


def test_networks_are_rated_by_their_re_evaluation_with_the_named_overrides(tmp_path):
    """--evaluated: each run's latest test record with exactly those overrides; runs without one
    are left out."""
    import json

    from ltf.sweep import SWEEP_FILE, load_sweep

    sweep = load_sweep(f"{Path(__file__).resolve().parents[1] / 'configs' / 'reber.py'}:arms=lstm,seeds=3,smoke")
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"runs": [run.record() for run in sweep.runs]}))
    longer = {"data.eval_batches": 1000}
    rows = [  # per seed: records in evaluations.jsonl (the last matching one counts)
        [{"split": "test", "overrides": {}, "perfect": 1.0, "error_free_length": 100.0},
         {"split": "test", "overrides": longer, "perfect": 0.0, "error_free_length": 50.0},
         {"split": "test", "overrides": longer, "perfect": 1.0, "error_free_length": 1e5}],
        [{"split": "validation", "overrides": longer, "perfect": 1.0, "error_free_length": 1e5},
         {"split": "test", "overrides": longer, "perfect": 0.5, "error_free_length": 5_000.0}],
        [{"split": "test", "overrides": {}, "perfect": 1.0, "error_free_length": 1e5}],
    ]
    for run, records in zip(sweep.runs, rows):
        (tmp_path / run.name).mkdir()
        (tmp_path / run.name / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = reber_table.table(tmp_path, longer)
    assert "| `smoke,cell=lstm` | 2 | 50 [" in text  # seeds 0 (perfect) and 1 (good); seed 2 not so evaluated
    assert "| 50 [" in text.split("| 2 | 50 [")[1]  # good: 1 of 2
    assert "| 55,000 |" not in text and "| 100,000 |" in text  # the median's upper middle of two
