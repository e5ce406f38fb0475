"""scripts/bench_workers.py (and the models of scripts/bench_models.py) on a tiny size: each
implementation's row, the options it records.

Speed is never asserted here; only that the pieces run and report what they promise.
"""

import importlib
import importlib.util
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY = dict(B=2, T=8, H=8)
FIELDS = {"model", "impl", "cell", "path", "kernel", "B", "T", "H", "tokens_per_s", "step_ms", "min_ms", "compile_s",
          "base_rss_mb", "peak_rss_mb", "load_1m", "mode", "backend"}
HAS_TORCH = importlib.util.find_spec("torch") is not None


def load_script(name):
    """scripts/<name>.py as a module (scripts/ is not a package); also for test_bench*.py."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workers():
    return load_script("bench_workers")


@pytest.fixture(scope="module")
def models(workers):
    return importlib.import_module("bench_models")  # the module bench_workers builds from


def check_row(row, impl, cell, mode="train", model="char_lm", path="per_token"):
    assert FIELDS <= set(row), FIELDS - set(row)
    assert (row["model"], row["impl"], row["cell"], row["mode"], row["path"]) == (model, impl, cell, mode, path)
    assert (row["B"], row["T"], row["H"]) == (TINY["B"], TINY["T"], TINY["H"])
    assert row["tokens_per_s"] > 0 and row["step_ms"] > 0 and row["compile_s"] > 0
    assert row["peak_rss_mb"] >= row["base_rss_mb"] > 0


def _needs(impl):
    return pytest.mark.skipif(impl == "torch" and not HAS_TORCH, reason="torch is not installed ([bench] extra)")


@pytest.mark.parametrize("impl,cell", [pytest.param(i, c, marks=_needs(i)) for i, c in
                                       [("ltf", "tlstm"), ("ltf", "lstm+decay"), ("flax", "lstm"),
                                        ("torch", "lstm")]])
def test_char_lm_worker_in_process(workers, impl, cell):
    row = workers.run_worker(impl, cell, **TINY, steps=2, warmup=0)
    check_row(row, impl, cell)  # B·T = 16 < V = 256: per token also for ltf under "auto"
    json.dumps(row)  # the worker prints it as one JSON line


@pytest.mark.parametrize("impl,cell", [pytest.param(i, c, marks=_needs(i)) for i, c in
                                       [("ltf", "lstm"), ("ltf", "tlstm"), ("ltf", "phased"), ("flax", "lstm"),
                                        ("torch", "lstm")]])
def test_layer_worker_in_process(workers, impl, cell):
    """The recurrent layer alone on dense inputs; phased reads the clock appended to Δt."""
    row = workers.run_worker(impl, cell, **TINY, model="layer", steps=2, warmup=0)
    check_row(row, impl, cell, model="layer", path="dense")
    assert row["input_projection"] is None and row["backend"] == "cpu" and row["peak_device_mb"] is None
    json.dumps(row)


def test_ltf_rows_say_which_recurrence_ran(workers, monkeypatch):
    """ltf takes the compiled CPU kernel where it applies (the LSTM's step, H a multiple of 16),
    with remat too (`ltf.kernel_remat`), ctlstm's own kernel (its 7 gate blocks), the scans for
    other cells (gru); ltf_xla runs the scans there, and leaves LTF_CPU_KERNEL as it found it."""
    from ltf import cpu_kernel

    monkeypatch.delenv(cpu_kernel.ENV, raising=False)
    size = dict(B=2, T=8, H=16)
    rows = {impl: workers.run_worker(impl, "lstm", **size, model="layer", steps=1, warmup=0)
            for impl in ("ltf", "ltf_xla", "flax")}
    assert rows["ltf"]["kernel"] == ("cpu" if cpu_kernel.available() else "xla")
    assert rows["ltf_xla"]["kernel"] == "xla" and rows["flax"]["kernel"] is None
    assert cpu_kernel.ENV not in os.environ
    for cell, kernel in (("ctlstm", rows["ltf"]["kernel"]), ("gru", "xla")):
        assert workers.run_worker("ltf", cell, **size, model="layer", steps=1, warmup=0)["kernel"] == kernel
    remat = {impl: workers.run_worker(impl, "lstm", **size, model="layer", steps=1, warmup=0, remat=True)["kernel"]
             for impl in ("ltf", "ltf_xla")}
    assert remat == {"ltf": rows["ltf"]["kernel"], "ltf_xla": "xla"}


def test_layer_model_has_no_attention(workers):
    with pytest.raises(ValueError, match="char_lm"):
        workers.run_worker("ltf", "time_aware+attention", **TINY, model="layer", steps=1, warmup=0)


def test_worker_forward_backward_with_attention(workers):
    row = workers.run_worker("ltf", "time_aware+attention", **TINY, steps=2, warmup=0, forward_backward=True)
    check_row(row, "ltf", "time_aware+attention", mode="forward_backward")


def test_input_projection_reaches_the_char_lm_and_sets_the_path(workers, models):
    row = workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, input_projection="per_vocab")
    check_row(row, "ltf", "lstm", path="per_vocab")
    assert row["input_projection"] == "per_vocab"
    big = dict(B=4, T=128, H=8, E=8)  # B·T = 512 > V = 256: "auto" gathers from the V x G table
    assert models.input_path("char_lm", "ltf", "lstm", **big) == "per_vocab"
    assert models.input_path("char_lm", "ltf", "lstm", **big, input_projection="per_token") == "per_token"
    assert models.input_path("char_lm", "flax", "lstm", **big) == "per_token"
    assert models.input_path("layer", "ltf", "lstm", **big) == "dense"


def test_cell_suffixes(models):
    assert models.split_cell("lstm+decay") == ("lstm", {"decay": True}, False)
    assert models.split_cell("time_aware+attention") == ("time_aware", {}, True)
    assert models.split_cell("tlstm") == ("tlstm", {}, False)
    assert models.ltf_language_model("lstm+decay", 8, 8).stack.cells[0].decay
    with pytest.raises(ValueError, match="suffixes"):
        models.split_cell("lstm+dropout")


def test_remat_reaches_the_ltf_model_and_is_recorded(workers, models, monkeypatch):
    built = {}
    real = models._ltf_model

    def spy(cell, d_embed, d_hidden, remat=False, input_projection="auto"):
        built["remat"] = remat
        return real(cell, d_embed, d_hidden, remat, input_projection)

    monkeypatch.setattr(models, "_ltf_model", spy)
    row = workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, remat=True)
    check_row(row, "ltf", "lstm")
    assert built == {"remat": True} and row["remat"] is True
    assert workers.run_worker("flax", "lstm", **TINY, steps=1, warmup=0, remat=True)["remat"] is False


def test_malloc_choice_reaches_cpu_workers_and_is_recorded(workers, monkeypatch):
    """--malloc tuned calls ltf.allocator.keep_freed_memory() in a CPU worker before it runs, and
    leaves the allocator alone on an accelerator."""
    from ltf import allocator

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    assert workers.runs_on_cpu("ltf")  # this machine: no JAX plugin (nothing started to tell)
    row = workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, malloc="tuned")
    assert calls == [1] and row["malloc"] == "tuned"
    assert workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0)["malloc"] == "default" and calls == [1]
    monkeypatch.setattr(workers, "runs_on_cpu", lambda impl: False)  # as on a GPU
    assert workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, malloc="tuned")["malloc"] == "default"
    assert calls == [1]
    with pytest.raises(ValueError, match="malloc="):
        workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, malloc="jemalloc")


def test_bad_options_name_the_allowed_values(workers):
    for kwargs, match in [(dict(model="transformer"), "model="), (dict(input_projection="x"), "input_projection=")]:
        with pytest.raises(ValueError, match=match):
            workers.run_worker("ltf", "lstm", **TINY, steps=1, warmup=0, **kwargs)
    with pytest.raises(ValueError, match="only cell='lstm'"):
        workers.run_worker("flax", "tlstm", **TINY, steps=1, warmup=0)
