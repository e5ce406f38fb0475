"""Time per token and memory of the recurrences' forms (sequential, parallel, chunkwise) against
the LSTM, over long T: one layer, forward and backward.

  python scripts/bench_recurrences.py                   # B = 8, H = 256, T = 1,024 ... 16,384, every variant below
  python scripts/bench_recurrences.py --variants lstm,mlstm:chunkwise/32,mlstm:chunkwise/128 --lengths 4096
  python scripts/bench_recurrences.py --variants rglru:parallel,rglru:parallel+remat --lengths 65536   # memory
  python scripts/bench_recurrences.py --markdown benchmarks/bench_recurrences_cpu.md \
      --json benchmarks/bench_recurrences_cpu.json

What is timed: `jax.jit(jax.value_and_grad(loss))` of one recurrent layer alone, no optimiser:
`ltf.rnn.scan_layer` on a fixed random dense B x T x H input (E = H), loss = mean(hs ⊙ R) for a
fixed random R. A variant (`--variants`, comma-separated) is a cell, then ':FORM' for a cell with
forms (the linear cells: sequential | parallel; mlstm: sequential | chunkwise; none: "auto"),
'/L' for mlstm's chunk length (default the cell's, 64), '+remat':

  lstm                    the LSTM with ltf's custom backward pass (`ltf.fast_rnn`)
  lstm+remat              the same, storing only C_{t-1}, h_t and recomputing the gates in chunks
  rglru:sequential        `lax.scan` over the steps, gradients by autodiff (`ltf.linear_scan`)
  rglru:parallel          `lax.associative_scan` over (a_t, b_t)
  mlstm:chunkwise         chunks of L steps in the attention-like form, a scan over them (`ltf.mlstm_scan`)
  mlstm:sequential/64+remat   any of them with remat: chunks under jax.checkpoint

Each (variant, T) is compiled and run `--warmup` times first; then `--repeats` rounds, each timing
every variant of that T once, interleaved, so that another process's load falls on all variants
alike; the table gives the median. Memory is XLA's plan for the compiled program
(`compiled.memory_analysis()`): temp_mb the scratch buffers, total_mb that plus arguments and
outputs. Columns: us_per_token (median step time / B·T, µs), tokens_per_s, x_lstm (time per token
over lstm's at the same T; below 1 is faster), compile_s, temp_mb, total_mb. Below the table, per
cell: the other form's speed-up over the sequential one at each T (same remat, default chunk) and
the form that is faster at most lengths, which "auto" should take on this backend.
"""

from __future__ import annotations

import argparse
import dataclasses
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
            "linear_decay:parallel", "mlstm:sequential+remat", "mlstm:chunkwise", "mlstm:chunkwise+remat")
COLUMNS = ("variant", "B", "T", "H", "us_per_token", "tokens_per_s", "x_lstm", "compile_s", "temp_mb", "total_mb")


def _fields(name: str) -> set[str]:
    from ltf.cells.registry import CELLS

    return {f.name for f in dataclasses.fields(CELLS[name])}


def parse_variant(variant: str) -> tuple[str, dict, bool]:
    """"mlstm:chunkwise/32+remat" -> ("mlstm", {"form": "chunkwise", "chunk_size": 32}, True);
    "rglru:parallel" -> ("rglru", {"form": "parallel"}, False); "lstm" -> ("lstm", {}, False)."""
    from ltf.cells.registry import CELLS

    body, plus, suffix = variant.partition("+")
    body, slash, chunk = body.partition("/")
    name, colon, form = body.partition(":")
    bad = (plus and suffix != "remat") or name not in CELLS
    if not bad and colon:
        forms = getattr(sys.modules[CELLS[name].__module__], "FORMS", ())
        bad = "form" not in _fields(name) or form not in forms
    if not bad and slash:
        bad = "chunk_size" not in _fields(name) or not chunk.isdigit()
    if bad:
        raise ValueError(f"variant {variant!r}: a cell of {tuple(CELLS)}; for a cell with forms then ':FORM' "
                         "(rglru, linear_decay: sequential | parallel; mlstm: sequential | chunkwise), for mlstm "
                         "'/L' for a chunk length, then '+remat' if wanted (e.g. 'mlstm:chunkwise/32+remat', "
                         "'rglru:parallel', 'lstm+remat').")
    options = ({"form": form} if colon else {}) | ({"chunk_size": int(chunk)} if slash else {})
    return name, options, bool(plus)


def build(variant: str, B: int, T: int, H: int, heads: int, *, seed: int = 0):
    """(jitted value_and_grad of the layer's loss, its arguments)."""
    import jax
    import jax.numpy as jnp

    from ltf.cells.registry import make_cell
    from ltf.rnn import scan_layer

    name, options, remat = parse_variant(variant)
    cell = make_cell(name, **({"heads": heads} if "heads" in _fields(name) else {}), **options)
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


def resolved_form(name: str, options: dict) -> str:
    """The form that runs ("-" for a cell without forms): "auto" resolved on this backend."""
    from ltf import linear_scan, mlstm_scan

    if "form" not in _fields(name):
        return "-"
    scan = mlstm_scan if "chunk_size" in _fields(name) else linear_scan
    return scan.resolve_form(options.get("form", "auto"))


def measure(variants, lengths, *, batch: int, hidden: int, heads: int, repeats: int, warmup: int, seed: int = 0,
            log=print) -> list[dict]:
    """One row per (T, variant): the median time per token over `repeats` interleaved rounds."""
    import jax

    rows = []
    for T in lengths:
        programs = {}
        for variant in variants:
            fn, args = build(variant, batch, T, hidden, heads, seed=seed)
            t0 = time.perf_counter()
            fn = fn.lower(*args).compile()  # compiled once, for the runs and for its memory plan
            jax.block_until_ready(fn(*args))
            info = {"compile_s": time.perf_counter() - t0, **xla_memory_mb(fn)}
            for _ in range(warmup):
                jax.block_until_ready(fn(*args))
            programs[variant] = (fn, args, info, [])
        for _ in range(repeats):
            for fn, args, _, times in programs.values():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(*args))
                times.append(time.perf_counter() - t0)
        for variant, (_, _, info, times) in programs.items():
            name, options, remat = parse_variant(variant)
            step_s = statistics.median(times)
            rows.append({"variant": variant, "cell": name, "form": resolved_form(name, options),
                         "chunk_size": options.get("chunk_size"), "remat": remat, "B": batch, "T": T, "H": hidden,
                         "heads": heads if "heads" in _fields(name) else None,
                         "us_per_token": step_s / (batch * T) * 1e6, "tokens_per_s": batch * T / step_s,
                         "step_ms": step_s * 1e3, **info})
            log(f"T={T:>6} {variant:28s} {rows[-1]['us_per_token']:9.3f} µs/token  compile {info['compile_s']:.1f} s")
        del programs
    lstm = {r["T"]: r["us_per_token"] for r in rows if r["variant"] == "lstm"}
    for r in rows:
        r["x_lstm"] = r["us_per_token"] / lstm[r["T"]] if r["T"] in lstm else None
    return rows


def form_summary(rows: list[dict]) -> list[dict]:
    """Per cell, T and remat: the parallel or chunkwise form's speed-up over the sequential one
    (rows with the default chunk length only)."""
    out = []
    for r in rows:
        if r["form"] in ("parallel", "chunkwise") and r["chunk_size"] is None:
            seq = next((s for s in rows if (s["cell"], s["T"], s["remat"], s["form"], s["chunk_size"])
                        == (r["cell"], r["T"], r["remat"], "sequential", None)), None)
            if seq is not None:
                out.append({"cell": r["cell"], "form": r["form"], "T": r["T"], "remat": r["remat"],
                            "speedup": seq["us_per_token"] / r["us_per_token"]})
    return out


def _cell(v, fmt):
    return "–" if v is None else fmt.format(v) if isinstance(v, float) else str(v)


def markdown(rows: list[dict], machine: dict) -> str:
    where = f"{machine['cpu_count']} CPU cores" if machine["backend"] == "cpu" else machine["device"]
    lines = [f"### one recurrent layer, forward + backward, {where}, load {machine['load_avg_start']} -> "
             f"{machine['load_avg_end']}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    formats = {"tokens_per_s": "{:,.0f}", "x_lstm": "{:.2f}", "compile_s": "{:.1f}", "temp_mb": "{:,.1f}",
               "total_mb": "{:,.1f}"}
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c), formats.get(c, "{:,.3f}")) for c in COLUMNS) + " |")
    summary = form_summary(rows)
    if summary:
        lines += ["", "The other form over the sequential one (speed-up per token; above 1: it is faster):", ""]
        for cell in dict.fromkeys(s["cell"] for s in summary):
            mine = [s for s in summary if s["cell"] == cell]
            faster = sum(s["speedup"] > 1 for s in mine)
            lines.append(f"- {cell}, {mine[0]['form']}: " + ", ".join(
                    f"T = {s['T']:,}{' (remat)' if s['remat'] else ''}: {s['speedup']:.2f}x" for s in mine)
                    + f" -> faster here: {mine[0]['form'] if faster > len(mine) / 2 else 'sequential'}")
    return "\n".join(lines) + "\n"


def machine_info(load_start, args) -> dict:
    import jax

    return {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
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
    p.add_argument("--heads", type=int, default=4, help="mlstm's heads (H must be a multiple)")
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
    if min(args.repeats, args.batch, args.hidden, args.heads) < 1 or args.hidden % args.heads:
        p.error("--repeats, --batch, --hidden and --heads must be positive, --hidden a multiple of --heads.")
    import jax

    lengths = args.lengths or (CPU_LENGTHS if jax.default_backend() == "cpu" else ACCELERATOR_LENGTHS)
    load_start = os.getloadavg()
    rows = measure(variants, lengths, batch=args.batch, hidden=args.hidden, heads=args.heads, repeats=args.repeats,
                   warmup=args.warmup, seed=args.seed, log=lambda s: print(s, file=sys.stderr, flush=True))
    machine = machine_info(load_start, args)
    table = markdown(rows, machine)
    print(table)
    results = json.dumps({"results": rows, "machine": machine}, indent=1)
    for path, text in ((args.markdown, table), (args.json, results)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


if __name__ == "__main__":
    main()
