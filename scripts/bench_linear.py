"""Time per token and memory of the linear recurrences' two forms against the LSTM, over T.

  python scripts/bench_linear.py                                  # B = 8, H = 256, T = 1,024 ... 16,384 (CPU)
  python scripts/bench_linear.py --lengths 1024,4096 --batch 4 --hidden 128 --repeats 3
  python scripts/bench_linear.py --markdown benchmarks/bench_linear_cpu.md --json benchmarks/bench_linear_cpu.json
  python scripts/bench_linear.py --variants rglru:parallel,rglru:parallel+remat --lengths 65536   # memory

What is timed: `jax.jit(jax.value_and_grad(loss))` of one recurrent layer alone, forward and
backward, no optimiser: `ltf.rnn.scan_layer` on a fixed random dense B x T x H input (E = H),
Δt = 1, loss = mean(hs ⊙ R) for a fixed random R (scripts/bench.py's "layer" model). Variants
(`--variants`, comma-separated):

  lstm                   the LSTM with ltf's custom backward pass (`ltf.fast_rnn`)
  lstm+remat             the same storing only C_{t-1}, h_t and recomputing the gates in chunks
  rglru:sequential       a linear cell (rglru, linear_decay) in one form of `ltf.linear_scan`:
  rglru:parallel         sequential (lax.scan) or parallel (associative scan); no form: "auto"
  rglru:parallel+remat   ... with remat (chunks of 256 steps under jax.checkpoint)

Each (variant, T) is compiled and run `--warmup` times first; then `--repeats` rounds, each
timing every variant of that T once, interleaved, so that another process's load falls on all
variants alike; the table gives the median. Memory is XLA's own plan for the compiled program
(`compiled.memory_analysis()`): temp_mb the scratch buffers (what the backward pass keeps and
the intermediates), total_mb that plus the arguments and outputs: the peak the program needs,
not the process's RSS; and on an accelerator, the device's peak bytes in use after the runs.

Columns: us_per_token (median step time / B·T, in µs), tokens_per_s, x_lstm (the variant's time
per token over lstm's at the same T: below 1 is faster), compile_s (compiling and the first run),
temp_mb, total_mb. Below the
table, per linear cell and T: the parallel form's speed-up over the sequential one, and the form
that "auto" should take on this backend (the faster at most lengths).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CPU_LENGTHS = (1024, 2048, 4096, 8192, 16384)
ACCELERATOR_LENGTHS = CPU_LENGTHS + (32768, 65536)
VARIANTS = ("lstm", "lstm+remat", "rglru:sequential", "rglru:parallel", "linear_decay:sequential",
            "linear_decay:parallel")


def parse_variant(variant: str) -> tuple[str, dict, bool]:
    """"rglru:parallel+remat" -> ("rglru", {"form": "parallel"}, True); "lstm" -> ("lstm", {}, False)."""
    from ltf.cells.registry import CELLS

    body, plus, suffix = variant.partition("+")
    name, colon, form = body.partition(":")
    if (plus and suffix != "remat") or name not in CELLS:
        raise ValueError(f"variant {variant!r}: a cell of {tuple(CELLS)}, then ':sequential' or ':parallel' for "
                         "a linear cell, then '+remat' if wanted (e.g. 'rglru:parallel+remat', 'lstm+remat').")
    options = {"form": form} if colon else {}
    return name, options, bool(plus)


def build(variant: str, B: int, T: int, H: int, *, seed: int = 0):
    """(jitted value_and_grad of the layer's loss, its arguments)."""
    import jax
    import jax.numpy as jnp

    from ltf.cells.registry import make_cell
    from ltf.rnn import scan_layer

    name, options, remat = parse_variant(variant)
    cell = make_cell(name, **options)
    k_params, k_xs, k_r = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_params, H, H)
    xs_BxTxH = jax.random.normal(k_xs, (B, T, H), jnp.float32)
    r_BxTxH = jax.random.normal(k_r, (B, T, H), jnp.float32)
    dts_BxTx1 = jnp.ones((B, T, 1), jnp.float32)

    def loss(params, xs_BxTxH, r_BxTxH):
        return jnp.mean(scan_layer(cell, params, xs_BxTxH, dts_BxTx1, remat=remat)[1] * r_BxTxH)

    return jax.jit(jax.value_and_grad(loss)), (params, xs_BxTxH, r_BxTxH)


def xla_memory_mb(compiled) -> dict:
    """XLA's buffer plan of a compiled program, in MiB (None where the backend gives none)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001  (a backend without the analysis)
        stats = None
    if stats is None:
        return {"temp_mb": None, "total_mb": None}
    total = (stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
             - stats.alias_size_in_bytes)
    return {"temp_mb": stats.temp_size_in_bytes / 2**20, "total_mb": total / 2**20}


def measure(variants, lengths, *, batch: int, hidden: int, repeats: int, warmup: int, seed: int = 0,
            log=print) -> list[dict]:
    """One row per (T, variant): median time per token over `repeats` interleaved rounds."""
    import jax

    from ltf.cells.registry import make_cell

    rows = []
    for T in lengths:
        programs = {}
        for variant in variants:
            fn, args = build(variant, batch, T, hidden, seed=seed)
            t0 = time.perf_counter()
            fn = fn.lower(*args).compile()  # compiled once, for the runs and for its memory plan
            jax.block_until_ready(fn(*args))
            compile_s = time.perf_counter() - t0
            for _ in range(warmup):
                jax.block_until_ready(fn(*args))
            programs[variant] = (fn, args, {"compile_s": compile_s, **xla_memory_mb(fn)}, [])
        for _ in range(repeats):
            for variant, (fn, args, _, times) in programs.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(*args))
                times.append(time.perf_counter() - t0)
        stats = jax.devices()[0].memory_stats() or {}  # None on the CPU
        for variant, (_, _, info, times) in programs.items():
            name, options, remat = parse_variant(variant)
            step_s = statistics.median(times)
            form = options.get("form", "auto" if make_cell(name).linear else "-")
            row = {"variant": variant, "cell": name, "form": form,
                   "remat": remat, "B": batch, "T": T, "H": hidden, "us_per_token": step_s / (batch * T) * 1e6,
                   "tokens_per_s": batch * T / step_s, "step_ms": step_s * 1e3, **info,
                   "device_peak_mb": stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None}
            rows.append(row)
            log(f"T={T:>6} {variant:28s} {row['us_per_token']:8.3f} µs/token  compile {info['compile_s']:.1f} s")
        del programs
    lstm = {r["T"]: r["us_per_token"] for r in rows if r["variant"] == "lstm"}
    for r in rows:
        r["x_lstm"] = r["us_per_token"] / lstm[r["T"]] if r["T"] in lstm else None
    return rows


def form_summary(rows: list[dict]) -> list[dict]:
    """Per linear cell and T (without remat): the parallel form's speed-up over the sequential one."""
    out = []
    for r in rows:
        if r["form"] == "parallel" and not r["remat"]:
            seq = next((s for s in rows if s["cell"] == r["cell"] and s["T"] == r["T"] and s["form"] == "sequential"
                        and not s["remat"]), None)
            if seq is not None:
                speedup = seq["us_per_token"] / r["us_per_token"]
                out.append({"cell": r["cell"], "T": r["T"], "parallel_speedup": speedup})
    return out


def _cell(v, fmt="{:,.3f}"):
    return "–" if v is None else fmt.format(v) if isinstance(v, float) else str(v)


COLUMNS = ("variant", "B", "T", "H", "us_per_token", "tokens_per_s", "x_lstm", "compile_s", "temp_mb", "total_mb")


def markdown(rows: list[dict], machine: dict) -> str:
    cores = f"{machine.get('cpu_count')} CPU cores" if machine.get("backend") == "cpu" else machine.get("device")
    lines = [f"### recurrent layer, forward + backward, {cores}, load {machine.get('load_avg_start')} -> "
             f"{machine.get('load_avg_end')}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    formats = {"tokens_per_s": "{:,.0f}", "x_lstm": "{:.2f}", "compile_s": "{:.1f}", "temp_mb": "{:,.1f}",
               "total_mb": "{:,.1f}"}
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c), formats.get(c, "{:,.3f}")) for c in COLUMNS) + " |")
    summary = form_summary(rows)
    if summary:
        lines += ["", "Parallel over sequential (speed-up per token; above 1: the parallel form is faster):", ""]
        for cell in dict.fromkeys(s["cell"] for s in summary):
            mine = [s for s in summary if s["cell"] == cell]
            faster = sum(s["parallel_speedup"] > 1 for s in mine)
            lines.append(f"- {cell}: " + ", ".join(f"T = {s['T']:,}: {s['parallel_speedup']:.2f}x" for s in mine)
                         + f" -> faster here: {'parallel' if faster > len(mine) / 2 else 'sequential'}")
    return "\n".join(lines) + "\n"


def machine_info(load_start, args) -> dict:
    import jax

    device = jax.devices()[0]
    return {"backend": jax.default_backend(), "device": device.device_kind, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "jax": jax.__version__,
            "load_avg_start": [round(v, 2) for v in load_start],
            "load_avg_end": [round(v, 2) for v in os.getloadavg()], "repeats": args.repeats, "warmup": args.warmup}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=lambda s: [int(v) for v in s.split(",") if v], default=None,
                   help=f"comma-separated T (default {','.join(map(str, CPU_LENGTHS))} on CPU, up to 65536 elsewhere)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (see the module docstring)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hidden", type=int, default=256, help="H, also the input width E")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs after the compiling one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        try:
            parse_variant(v)
        except ValueError as e:
            p.error(str(e))
    if args.repeats < 1 or args.batch < 1 or args.hidden < 1:
        p.error("--repeats, --batch and --hidden must be positive.")
    import jax

    lengths = args.lengths or (CPU_LENGTHS if jax.default_backend() == "cpu" else ACCELERATOR_LENGTHS)
    load_start = os.getloadavg()
    rows = measure(variants, lengths, batch=args.batch, hidden=args.hidden, repeats=args.repeats,
                   warmup=args.warmup, seed=args.seed, log=lambda s: print(s, file=sys.stderr, flush=True))
    machine = machine_info(load_start, args)
    table = markdown(rows, machine)
    print(table)
    for path, text in ((args.markdown, table),
                       (args.json, json.dumps({"results": rows, "machine": machine}, indent=1))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


if __name__ == "__main__":
    main()
