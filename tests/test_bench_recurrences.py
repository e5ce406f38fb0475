"""scripts/bench_recurrences.py runs at a tiny size and writes its table and JSON; speed is never asserted."""

import json
import re

import pytest

from test_bench_workers import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_recurrences")


@pytest.mark.slow  # six programs compiled with their gradients: ~15 s on 2 busy cores
def test_tiny_run_writes_the_table_and_json(bench, tmp_path, capsys):
    variants = "lstm,rglru:sequential,rglru:parallel,linear_decay+remat,mlstm:sequential,mlstm:chunkwise"
    bench.main(["--lengths", "8", "--batch", "2", "--hidden", "4", "--heads", "2", "--repeats", "2", "--warmup", "0",
                "--variants", variants, "--markdown", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json")])
    table = (tmp_path / "t.md").read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    header = next(line for line in table.splitlines() if line.startswith("| variant"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(bench.COLUMNS)
    rows = json.loads((tmp_path / "t.json").read_text())["results"]
    assert [(r["variant"], r["T"]) for r in rows] == [(v, 8) for v in variants.split(",")]
    assert all(r["us_per_token"] > 0 and r["temp_mb"] is not None for r in rows)
    assert [r["x_lstm"] for r in rows if r["variant"] == "lstm"] == [1.0]
    assert {(r["cell"], r["form"], r["remat"]) for r in rows} == {
            ("lstm", "-", False), ("rglru", "sequential", False), ("rglru", "parallel", False),
            ("linear_decay", "sequential", True), ("mlstm", "sequential", False), ("mlstm", "chunkwise", False)}
    assert "- rglru, parallel: T = 8:" in table and "- mlstm, chunkwise: T = 8:" in table
    assert "linear_decay," not in table  # a speed-up needs both forms


def test_variants_parse_into_cell_options(bench):
    parse = bench.parse_variant
    assert parse("mlstm:chunkwise/32+remat") == ("mlstm", {"form": "chunkwise", "chunk_size": 32}, True)
    assert parse("rglru:parallel") == ("rglru", {"form": "parallel"}, False)
    assert parse("mlstm") == ("mlstm", {}, False)
    assert parse("lstm+remat") == ("lstm", {}, True)


@pytest.mark.parametrize("variant", ["lstm:chunkwise", "mlstm:parallel", "rglru:chunkwise", "rglru/8", "mlstm/x",
                                     "no_such_cell", "mlstm+decay", "gru:parallel"])
def test_a_bad_variant_is_named(bench, variant):
    with pytest.raises(ValueError, match=re.escape(f"variant {variant!r}")):
        bench.parse_variant(variant)
