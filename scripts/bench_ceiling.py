"""How close the steps of a `scripts/bench.py` run come to this host's matmul rate.

  python scripts/bench.py --sizes 32x128x256 --models char_lm,layer --impls ltf,torch --cells lstm,ctlstm \\
      --repeats 5 --steps 20 --json /tmp/runs.json
  python scripts/bench_ceiling.py /tmp/runs.json                 # a table per model, in Markdown
  python scripts/bench_ceiling.py benchmarks/bench_ctlstm_kernel_epyc_r7.json --markdown out.md

A training step here is mostly matrix multiplies: for the LSTM layer on dense inputs, x W_x, the
recurrent h W_h, and in the backward pass dz W_hᵀ, dW_h and dW_x. Each row of the JSON file gets:

  GFLOP     the matmul work of its step: 2 × the multiply-adds of every dot_general in the JAX
            program of that step (value and gradients, less dead code; a scan's body counted once
            per step; Adam has none). ltf's CPU kernels run the same matmuls as its XLA path,
            which is the program counted (LTF_CPU_KERNEL=off); Flax's own program is counted;
            torch's step is counted as ltf `lstm` on the same input path (its char LM projects
            per token, as `path` says).
  floor ms  GFLOP at the rate XLA's dot reaches on this host for the step's input projection
            (T·B x E by E x G, float32, the best of 20 calls): the step's time if it did
            nothing but its matmuls, all at that rate.
  of dot    floor ÷ the row's median step time: the share of the dot's rate the whole step reaches.
  floor vs lstm  ltf lstm's floor ÷ this row's (same model and size): the speed relative to `lstm`
            that a cell reaches at the same efficiency. A target above it needs the cell to do its
            matmuls faster than `lstm` does.

The rate is measured where this script runs; read the rows against it only when the JSON file
comes from the same machine (its "machine" block, and this script's header line, say which).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def matmul_flops(jaxpr) -> int:
    """2 × the multiply-adds of every dot_general in `jaxpr` (a Jaxpr), nested jaxprs included;
    a scan's body counts `length` times, a cond's costliest branch once. A while loop (no trip
    count to read) raises."""
    from jax.extend.core import jaxprs_in_params

    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs_shape = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs_shape[d] for d in lhs_contract)
        elif name == "scan":
            total += eqn.params["length"] * matmul_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(matmul_flops(branch.jaxpr) for branch in eqn.params["branches"])
        elif name == "while":
            raise ValueError("matmul_flops: a while loop's trip count is unknown; the bench's steps use scans.")
        else:
            total += sum(matmul_flops(sub) for sub in jaxprs_in_params(eqn.params))
    return total


def step_flops(row: dict) -> int:
    """The matmul FLOPs of the train step a bench.py row timed (see the module docstring)."""
    import jax
    from jax._src.interpreters.partial_eval import dce_jaxpr  # no public DCE in jax 0.10

    import bench_models
    import bench_workers

    impl, cell = row["impl"], row["cell"]
    if impl == "torch":  # nn.LSTM: the same matmuls as ltf lstm on the same input path
        impl, cell = "ltf", "lstm"
    projection = row["path"] if row["path"] in ("per_token", "per_vocab") else "auto"  # the path that ran
    with bench_workers.kernel_setting("off"):  # the XLA path: the kernels' matmuls written out as dots
        params, loss_fn, batch = bench_models.jax_problem(row["model"], "ltf" if impl.startswith("ltf") else impl,
                                                          cell, row["B"], row["T"], row["H"], row["E"],
                                                          remat=row.get("remat", False), input_projection=projection)
        closed = jax.make_jaxpr(jax.value_and_grad(loss_fn))(params, *batch)
    # without the dead code XLA drops too (a jvp's unused primal, as in ltf.rnn.project_tokens)
    live, _ = dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
    return matmul_flops(live)


def dot_rates(shapes, warmup: int = 3, calls: int = 20) -> dict[tuple, float]:
    """FLOP/s of XLA's float32 dot here for each (rows, d_in, d_out): its best of `calls` calls
    after the compiling one and `warmup` more (`bench_workers.time_steps`), one shape at a time. `main` first sets `ltf.allocator.keep_freed_memory()`, so
    that the outputs reuse freed memory: with glibc's defaults some runs faulted fresh pages in at
    every call, at two thirds of the rate."""
    import jax
    import jax.numpy as jnp

    import bench_workers

    dot = jax.jit(jnp.matmul)
    rates = {}
    for shape in shapes:
        a, b = jnp.ones(shape[:2], jnp.float32), jnp.ones(shape[1:], jnp.float32)
        _, seconds = bench_workers.time_steps(lambda: dot(a, b).block_until_ready(), warmup, calls)
        rates[shape] = 2 * math.prod(shape) / min(seconds)
    return rates


def n_gates(row: dict) -> int:
    """G / H of the row's cell (the torch and flax rows are LSTMs)."""
    if not row["impl"].startswith("ltf"):
        return 4
    from bench_models import ltf_cell

    return len(ltf_cell(row["cell"]).gates)


def ceiling_rows(rows: list[dict]) -> list[dict]:
    """The rows that ran, with gflop, dot_gflop_s, floor_ms, of_dot and floor_vs_lstm added."""
    rows = [row for row in rows if not row.get("skipped") and "step_ms" in row]
    shapes = [(row["B"] * row["T"], row["E"], n_gates(row) * row["H"]) for row in rows]
    rates = dot_rates(list(dict.fromkeys(shapes)))
    out = []
    for row, shape in zip(rows, shapes):
        flops = step_flops(row)
        floor_ms = flops / rates[shape] * 1e3
        out.append({**row, "gflop": flops / 1e9, "dot_gflop_s": rates[shape] / 1e9, "floor_ms": floor_ms,
                    "of_dot": floor_ms / row["step_ms"]})
    for row in out:
        lstm = [r for r in out if r["impl"] == "ltf" and r["cell"] == "lstm" and r["model"] == row["model"]
                and (r["B"], r["T"], r["H"], r["E"]) == (row["B"], row["T"], row["H"], row["E"])]
        row["floor_vs_lstm"] = lstm[0]["floor_ms"] / row["floor_ms"] if lstm else None
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def markdown(rows: list[dict], source: Path, machine: dict) -> str:
    lines = [f"Matmul ceiling of `{source}` (run at ltf {machine.get('ltf_commit', '?')}, "
             f"{machine.get('cpu_count', '?')} cores); dot rate measured on {cpu_name()}, "
             f"{os.cpu_count()} cores, by `scripts/bench_ceiling.py`.", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += [f"#### {model}", "",
                  "| impl | cell | path | kernel | B | T | H | GFLOP | dot GFLOP/s | floor ms | step ms "
                  "| of dot | floor vs lstm |", "|" + "---|" * 13]
        for r in (r for r in rows if r["model"] == model):
            vs = "" if r["floor_vs_lstm"] is None else f"{r['floor_vs_lstm']:.2f}"
            lines.append(f"| {r['impl']} | {r['cell']} | {r['path']} | {r.get('kernel') or ''} | {r['B']} | {r['T']} "
                         f"| {r['H']} | {r['gflop']:.2f} | {r['dot_gflop_s']:.0f} | {r['floor_ms']:.1f} "
                         f"| {r['step_ms']:.1f} | {r['of_dot']:.2f} | {vs} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, help="a scripts/bench.py --json file")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables there too")
    args = p.parse_args(argv)
    from ltf import allocator

    allocator.keep_freed_memory()  # before any computation: see dot_rates
    try:
        saved = json.loads(args.runs.read_text())
        rows, machine = saved["results"], saved.get("machine", {})
    except (OSError, ValueError, KeyError, TypeError) as e:
        p.error(f"{args.runs}: not a scripts/bench.py --json file ({e}); make one with bench.py --json FILE.")
    if any(r.get("mode", "train") != "train" for r in rows):
        p.error(f"{args.runs}: rows of --forward-backward runs; the ceiling counts train steps (run bench.py "
                "without --forward-backward).")
    text = markdown(ceiling_rows(rows), args.runs, machine)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
