"""scripts/bench_profile.py: the op table read from a trace the profiler really wrote."""

import pytest

from test_bench_workers import load_script


def test_profile_sums_op_times_per_step_from_a_perfetto_trace(tmp_path):
    profile = load_script("bench_profile")
    table = profile.profile_ops("ltf", "lstm", (2, 8, 8), steps=2, top=5, trace_dir=tmp_path)
    rows = [l for l in table.splitlines() if l.startswith("| `")]
    assert 0 < len(rows) <= 5
    ms = [float(r.split("|")[2]) for r in rows]
    assert ms == sorted(ms, reverse=True) and ms[0] > 0
    with pytest.raises(FileNotFoundError, match="trace"):
        profile.op_times(tmp_path / "empty", 1)
