"""scripts/bench_ceiling.py: matmul FLOPs counted from a step's program against the forms its
equations give, and the table read from a bench.py --json file."""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from test_bench_workers import load_script

B, T, H, E, V = 2, 3, 16, 8, 256  # V: the bench's vocabulary


@pytest.fixture(scope="module")
def ceiling():
    return load_script("bench_ceiling")


def row(model="layer", impl="ltf", cell="lstm", path=None, step_ms=10.0):
    return {"model": model, "impl": impl, "cell": cell, "B": B, "T": T, "H": H, "E": E, "mode": "train",
            "path": path or ("dense" if model == "layer" else "per_vocab"), "input_projection": "auto",
            "remat": False, "step_ms": step_ms}


def test_counts_dots_in_scans_conds_and_nested_jits(ceiling):
    a, w = jnp.ones((3, 4)), jnp.ones((4, 5))

    def f(a, w):
        inner = jax.jit(lambda a: a @ w)(a)  # 2·3·5·4 = 120

        def body(carry, _):
            return carry @ jnp.ones((5, 5)), None  # 2·3·5·5 = 150, seven times

        out, _ = jax.lax.scan(body, inner, None, length=7)
        return jax.lax.cond(True, lambda x: x @ jnp.ones((5, 2)), lambda x: x[:, :2], out)  # 60, or none

    assert ceiling.matmul_flops(jax.make_jaxpr(f)(a, w).jaxpr) == 120 + 7 * 150 + 60
    loop = jax.make_jaxpr(lambda a: jax.lax.while_loop(lambda x: x.sum() < 0, lambda x: x @ jnp.ones((4, 4)), a))
    with pytest.raises(ValueError, match="while"):
        ceiling.matmul_flops(loop(a).jaxpr)


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("ctlstm", 7)])
def test_the_layer_step_counts_the_five_matmuls_of_its_equations(ceiling, cell, gates):
    # x W_x, h W_h, and backward dz W_hᵀ, dW_h, dW_x (xs are fixed inputs: no dx)
    n, g = B * T, gates * H
    assert ceiling.step_flops(row(cell=cell)) == 2 * n * g * (2 * E + 3 * H)


def test_the_char_lm_counts_per_token_or_per_vocabulary(ceiling):
    n, g = B * T, 4 * H
    recurrent_and_softmax = 2 * (3 * n * H * g + 3 * n * H * V)  # h W_h, dz W_hᵀ, dW_h; logits, dW_out, dh
    per_token = ceiling.step_flops(row("char_lm", path="per_token"))
    assert per_token == recurrent_and_softmax + 2 * 3 * n * E * g  # x W_x, dW_x, d x
    # torch's char LM projects per token too: counted as ltf's lstm on that path
    assert ceiling.step_flops(row("char_lm", impl="torch", path="per_token")) == per_token
    # the V x G table E W_x and its two gradients in place of the per-token matmuls, and the one
    # zero input projected for the biases (ltf.rnn.project_tokens) with its W_x gradient
    per_vocab = ceiling.step_flops(row("char_lm", path="per_vocab"))
    assert per_vocab == recurrent_and_softmax + 2 * 3 * V * E * g + 2 * 2 * E * g
    assert "LTF_CPU_KERNEL" not in os.environ or os.environ["LTF_CPU_KERNEL"] != "off"  # restored


def test_floor_and_ratios_at_a_fixed_dot_rate(ceiling, monkeypatch):
    monkeypatch.setattr(ceiling, "dot_rates", lambda shapes: dict.fromkeys(shapes, 1e9))  # floor ms = MFLOP
    rows = ceiling.ceiling_rows([row(step_ms=100.0), row(cell="ctlstm", step_ms=200.0),
                                 row(impl="torch", step_ms=50.0), {**row(), "skipped": "torch is not importable"}])
    assert [r["impl"] for r in rows] == ["ltf", "ltf", "torch"]
    lstm, ctlstm, torch = rows
    assert lstm["floor_ms"] == pytest.approx(lstm["gflop"] * 1e3)
    assert lstm["of_dot"] == pytest.approx(lstm["floor_ms"] / 100.0)
    # the layer's every matmul scales with G: ctlstm's floor is 7/4 of lstm's
    assert ctlstm["floor_vs_lstm"] == pytest.approx(4 / 7)
    assert lstm["floor_vs_lstm"] == torch["floor_vs_lstm"] == 1.0


def test_dot_rates_time_each_shape(ceiling):
    rates = ceiling.dot_rates([(8, 16, 32), (4, 4, 4)], warmup=1, calls=2)
    assert set(rates) == {(8, 16, 32), (4, 4, 4)} and all(rate > 0 for rate in rates.values())


def test_main_writes_the_table_and_names_a_bad_file(ceiling, tmp_path, monkeypatch, capsys):
    from ltf import allocator

    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: False)  # not in the test process
    monkeypatch.setattr(ceiling, "dot_rates", lambda shapes: dict.fromkeys(shapes, 1e9))
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps({"results": [row(), row(cell="ctlstm")], "machine": {"ltf_commit": "abc1234"}}))
    ceiling.main([str(runs), "--markdown", str(tmp_path / "out.md")])
    text = (tmp_path / "out.md").read_text()
    assert "abc1234" in text and "| ltf | ctlstm | dense |" in text and "0.57 |" in text
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit):
        ceiling.main([str(bad)])
    assert "bad.json" in capsys.readouterr().err
    fb = tmp_path / "fb.json"
    fb.write_text(json.dumps({"results": [{**row(), "mode": "forward_backward"}]}))
    with pytest.raises(SystemExit):
        ceiling.main([str(fb)])
    assert "forward-backward" in capsys.readouterr().err
