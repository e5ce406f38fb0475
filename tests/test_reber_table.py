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
