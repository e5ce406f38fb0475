"""scripts/bench_linear.py runs at a tiny size and writes its table and JSON; speed is never asserted."""

import json
import re

import pytest

from test_bench_workers import load_script


@pytest.fixture(scope="module")
def bench_linear():
    return load_script("bench_linear")


@pytest.mark.slow  # compiles six layer variants: ~5 s
def test_tiny_run_writes_the_table_and_json(bench_linear, tmp_path, capsys):
    variants = "lstm,rglru:sequential,rglru:parallel,linear_decay+remat"
    bench_linear.main(["--lengths", "8", "--batch", "2", "--hidden", "4", "--repeats", "2", "--warmup", "0",
                       "--variants", variants, "--markdown", str(tmp_path / "t.md"),
                       "--json", str(tmp_path / "t.json")])
    table = (tmp_path / "t.md").read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    header = next(line for line in table.splitlines() if line.startswith("| variant"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(bench_linear.COLUMNS)
    rows = json.loads((tmp_path / "t.json").read_text())["results"]
    assert [(r["variant"], r["T"]) for r in rows] == [(v, 8) for v in variants.split(",")]
    assert all(r["us_per_token"] > 0 and r["temp_mb"] is not None for r in rows)
    assert [r["x_lstm"] for r in rows if r["variant"] == "lstm"] == [1.0]
    assert {(r["cell"], r["form"], r["remat"]) for r in rows} == {
            ("lstm", "-", False), ("rglru", "sequential", False), ("rglru", "parallel", False),
            ("linear_decay", "auto", True)}
    assert "- rglru: T = 8:" in table and "linear_decay: T" not in table  # a speed-up needs both forms


@pytest.mark.parametrize("variant", ["gru:parallel+chunks", "no_such_cell", "lstm+decay"])
def test_a_bad_variant_is_named(bench_linear, variant):
    with pytest.raises(ValueError, match=re.escape(f"variant {variant!r}")):
        bench_linear.parse_variant(variant)
