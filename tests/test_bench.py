"""scripts/bench.py on a tiny size: the worker's row, the spawned worker's JSON line, the tables.

Speed is never asserted here; only that the pieces run and report what they promise.
"""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = REPO / "scripts" / "bench.py"
TINY = dict(B=2, T=8, H=8)
FIELDS = {"impl", "cell", "B", "T", "H", "tokens_per_s", "step_ms", "min_ms", "compile_s", "base_rss_mb",
          "peak_rss_mb", "load_1m", "mode"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_row(row, impl, cell, mode="train"):
    assert FIELDS <= set(row), FIELDS - set(row)
    assert (row["impl"], row["cell"], row["mode"]) == (impl, cell, mode)
    assert (row["B"], row["T"], row["H"]) == (TINY["B"], TINY["T"], TINY["H"])
    assert row["tokens_per_s"] > 0 and row["step_ms"] > 0 and row["compile_s"] > 0
    assert row["peak_rss_mb"] >= row["base_rss_mb"] > 0


@pytest.mark.parametrize("impl,cell", [("ltf", "tlstm"), ("flax", "lstm")])
def test_worker_in_process(bench, impl, cell):
    row = bench.run_worker(impl, cell, **TINY, steps=2, warmup=0)
    _check_row(row, impl, cell)
    json.dumps(row)  # the worker prints it as one JSON line


def test_worker_forward_backward_with_attention(bench):
    row = bench.run_worker("ltf", "time_aware+attention", **TINY, steps=2, warmup=0, forward_backward=True)
    _check_row(row, "ltf", "time_aware+attention", mode="forward_backward")


def test_worker_command_prints_one_json_line(bench, capsys):
    """What the parent spawns: `bench.py --worker ...` (run in-process here to stay fast)."""
    bench.main(["--worker", "--impl", "ltf", "--cell", "lstm", "--size", "2x8x8", "--steps", "2",
                "--warmup", "0"])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 1
    _check_row(json.loads(lines[0]), "ltf", "lstm")


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


def test_remat_reaches_the_ltf_model_and_is_recorded(bench, monkeypatch):
    built = {}
    real = bench._ltf_model

    def spy(cell, d_embed, d_hidden, remat=False):
        built["remat"] = remat
        return real(cell, d_embed, d_hidden, remat)

    monkeypatch.setattr(bench, "_ltf_model", spy)
    row = bench.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, remat=True)
    _check_row(row, "ltf", "lstm")
    assert built == {"remat": True} and row["remat"] is True
    assert bench.run_worker("flax", "lstm", **TINY, steps=1, warmup=0, remat=True)["remat"] is False


def test_malloc_choice_reaches_the_worker_and_is_recorded(bench, monkeypatch):
    """--malloc tuned calls ltf.allocator.keep_freed_memory() in the worker before it runs."""
    from ltf import allocator

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    row = bench.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, malloc="tuned")
    assert calls == [1] and row["malloc"] == "tuned"
    assert bench.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0)["malloc"] == "default" and calls == [1]
    with pytest.raises(ValueError, match="malloc="):
        bench.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, malloc="jemalloc")


def test_profile_sums_op_times_per_step_from_a_perfetto_trace(tmp_path):
    """scripts/bench_profile.py: the op table is read from a trace the profiler really wrote."""
    spec = importlib.util.spec_from_file_location("bench_profile", REPO / "scripts" / "bench_profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    table = profile.profile_ops("ltf", "lstm", (2, 8, 8), steps=2, top=5, trace_dir=tmp_path)
    rows = [l for l in table.splitlines() if l.startswith("| `")]
    assert 0 < len(rows) <= 5
    ms = [float(r.split("|")[2]) for r in rows]
    assert ms == sorted(ms, reverse=True) and ms[0] > 0
    with pytest.raises(FileNotFoundError, match="trace"):
        profile.op_times(tmp_path / "empty", 1)
