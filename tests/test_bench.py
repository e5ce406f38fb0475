"""scripts/bench.py: the spawned worker's JSON line, the ratios and the tables (on made-up rows).

Speed is never asserted here; only that the pieces run and report what they promise.
"""

import json

import pytest

from test_bench_workers import check_row, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench")


def test_worker_command_prints_one_json_line(bench, capsys):
    """What the parent spawns: `bench.py --worker ...` (run in-process here to stay fast)."""
    bench.main(["--worker", "--impl", "ltf", "--cell", "lstm", "--size", "2x8x8", "--steps", "2",
                "--warmup", "0"])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 1
    check_row(json.loads(lines[0]), "ltf", "lstm")


def _fake_rows(mode="train"):
    rows = []
    for impl, cell, ms in [("ltf", "lstm", 10.0), ("ltf", "tlstm", 20.0), ("torch", "lstm", 5.0),
                           ("flax", "lstm", 8.0)]:
        rows.append({"impl": impl, "cell": cell, "B": 2, "T": 8, "H": 8, "mode": mode, "step_ms": ms, "min_ms": ms,
                     "tokens_per_s": 16 / (ms / 1e3), "compile_s": 1.0, "base_rss_mb": 300.0,
                     "peak_rss_mb": 400.0, "load_1m": 1.0})
    rows.append({"impl": "torch", "cell": "lstm", "B": 4, "T": 8, "H": 8, "skipped": "torch is not importable"})
    return rows


def test_ratios_and_markdown(bench):
    rows = _fake_rows()
    summaries = bench.add_ratios(rows)
    assert rows[1]["x_ltf_lstm"] == pytest.approx(0.5)  # tlstm: half the tokens/s of lstm
    assert len(summaries) == 1 and (summaries[0]["B"], summaries[0]["T"], summaries[0]["H"]) == (2, 8, 8)
    assert summaries[0]["ltf_lstm_vs_torch"] == pytest.approx(0.5)  # ltf lstm: half the speed of torch
    assert summaries[0]["ltf_lstm_vs_flax"] == pytest.approx(0.8)
    table = bench.markdown(rows, summaries, {"cpu_count": 2})
    header = next(l for l in table.splitlines() if l.startswith("| impl"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(bench.COLUMNS)
    assert sum(l.startswith("| ltf") for l in table.splitlines()) == 2
    assert "0.50x torch" in table and "0.80x flax" in table and "torch is not importable" in table


def test_forward_backward_table_gives_time_ratios(bench):
    rows = _fake_rows("forward_backward")
    bench.add_ratios(rows)
    assert rows[1]["x_ltf_lstm"] == pytest.approx(2.0)  # tlstm takes twice the time of lstm
    table = bench.markdown(rows, [], {"cpu_count": 2})
    assert "| fb_ms |" in table and "forward+backward" in table


def test_parse_size(bench):
    assert bench.parse_size("32x128x256") == (32, 128, 256)
    with pytest.raises(Exception, match="BxTxH"):
        bench.parse_size("32x128")
