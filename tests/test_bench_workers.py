"""scripts/bench_workers.py on a tiny size: each implementation's row, the options it records.

Speed is never asserted here; only that the pieces run and report what they promise.
"""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY = dict(B=2, T=8, H=8)
FIELDS = {"impl", "cell", "B", "T", "H", "tokens_per_s", "step_ms", "min_ms", "compile_s", "base_rss_mb",
          "peak_rss_mb", "load_1m", "mode"}


def load_script(name):
    """scripts/<name>.py as a module (scripts/ is not a package); also for test_bench*.py."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workers():
    return load_script("bench_workers")


def check_row(row, impl, cell, mode="train"):
    assert FIELDS <= set(row), FIELDS - set(row)
    assert (row["impl"], row["cell"], row["mode"]) == (impl, cell, mode)
    assert (row["B"], row["T"], row["H"]) == (TINY["B"], TINY["T"], TINY["H"])
    assert row["tokens_per_s"] > 0 and row["step_ms"] > 0 and row["compile_s"] > 0
    assert row["peak_rss_mb"] >= row["base_rss_mb"] > 0


@pytest.mark.parametrize("impl,cell", [("ltf", "tlstm"), ("flax", "lstm")])
def test_worker_in_process(workers, impl, cell):
    row = workers.run_worker(impl, cell, **TINY, steps=2, warmup=0)
    check_row(row, impl, cell)
    json.dumps(row)  # the worker prints it as one JSON line


def test_worker_forward_backward_with_attention(workers):
    row = workers.run_worker("ltf", "time_aware+attention", **TINY, steps=2, warmup=0, forward_backward=True)
    check_row(row, "ltf", "time_aware+attention", mode="forward_backward")


def test_remat_reaches_the_ltf_model_and_is_recorded(workers, monkeypatch):
    built = {}
    real = workers._ltf_model

    def spy(cell, d_embed, d_hidden, remat=False):
        built["remat"] = remat
        return real(cell, d_embed, d_hidden, remat)

    monkeypatch.setattr(workers, "_ltf_model", spy)
    row = workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, remat=True)
    check_row(row, "ltf", "lstm")
    assert built == {"remat": True} and row["remat"] is True
    assert workers.run_worker("flax", "lstm", **TINY, steps=1, warmup=0, remat=True)["remat"] is False


def test_malloc_choice_reaches_the_worker_and_is_recorded(workers, monkeypatch):
    """--malloc tuned calls ltf.allocator.keep_freed_memory() in the worker before it runs."""
    from ltf import allocator

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    row = workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, malloc="tuned")
    assert calls == [1] and row["malloc"] == "tuned"
    assert workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0)["malloc"] == "default" and calls == [1]
    with pytest.raises(ValueError, match="malloc="):
        workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, malloc="jemalloc")
