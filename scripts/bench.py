"""Speed and memory of one training step of a 1-layer char LM: ltf's cells against Flax and PyTorch.

  python scripts/bench.py --quick                         # (32,128,256) only: about two minutes
  python scripts/bench.py --json benchmarks/bench_cpu.json --markdown benchmarks/bench_cpu.md
  python scripts/bench.py --quick --forward-backward      # value_and_grad only, no optimiser
  python scripts/bench.py --sizes 16x1024x128 --impls ltf --cells lstm,tlstm --steps 10 --repeats 3
  python scripts/bench.py --render benchmarks/bench_cpu.json      # the tables again from saved results
  python scripts/bench.py --worker --impl ltf --cell lstm --size 2x8x8 --steps 2   # one JSON line
  python scripts/bench.py --sizes 8x16384x256 --impls ltf --cells lstm --remat --steps 2 --warmup 0  # memory

The model (tokens -> embedding -> one recurrent layer of width H -> dense -> cross-entropy ->
Adam) and its implementations (ltf's cells, flax's OptimizedLSTMCell, torch.nn.LSTM) are
described and built in scripts/bench_workers.py, which also times the step.

`--malloc tuned` runs every worker, whatever its impl, with `ltf.allocator.keep_freed_memory()`
(one glibc arena that keeps freed memory: no page faults on reused temporaries), as
`scripts/train.py` does by default; `--malloc default` (the default here) leaves glibc's
settings, as each library runs out of the box. Rows carry "malloc".

`--remat` builds the ltf models with `remat=True` (the recurrent layer stores only C_{t-1} and
h_t per step and recomputes the rest in the backward pass: `ltf.fast_rnn`); flax and torch rows
are unchanged by it. Rows carry "remat".

Each (impl, cell, size) runs in its own process (`--worker`, one JSON line on stdout), one after
another, so memory and compilation never mix. The first step (compilation) and `--warmup` more
are excluded from the timing. With `--repeats R` the whole sweep runs R times, interleaved, and
the medians over the repeats are reported (robust to other processes' load on a shared machine;
the load average is recorded per row and for the run).

Columns:
  tokens_per_s  B·T / step_ms
  step_ms       median wall time of one train step (forward, backward, Adam update)
  min_ms        the fastest single step seen (over all repeats): what the step costs on a quiet machine
  fb_ms         (--forward-backward) median time of jax.value_and_grad of the loss / loss.backward()
  x_ltf_lstm    tokens/s relative to ltf lstm at the same size (0.8 = 20% slower than ltf lstm);
                on the torch and flax rows it reads "torch is 1.3x ltf lstm"; in the forward-backward
                table it is the time ratio fb_ms / fb_ms(ltf lstm) (1.25 = 25% more time)
  x_ltf_lstm_min  the same ratio from min_ms (less sensitive to other processes' load)
  compile_s     wall time of the first step, compilation (JAX) or first-call overhead (torch) included
  base_rss_mb   peak RSS of the worker before its first step (interpreter, libraries, params, inputs)
  peak_rss_mb   peak RSS of the worker at the end (resource.getrusage(RUSAGE_SELF).ru_maxrss); the
                difference is what compiling and running the step added
  load_1m       1-minute load average at the end of the worker (the machine has cpu_count cores)
Below the table: ltf lstm tokens/s relative to torch and to flax, per size.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_workers.py, also when loaded by path

from bench_workers import IMPLS, LR, LTF_CELLS, MALLOCS, run_worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZES = ((32, 128, 256), (32, 128, 512), (64, 256, 256), (16, 1024, 128))
COLUMNS = ("impl", "cell", "B", "T", "H", "tokens_per_s", "step_ms", "min_ms", "x_ltf_lstm", "x_ltf_lstm_min",
           "compile_s", "base_rss_mb", "peak_rss_mb", "load_1m")
FB_COLUMNS = ("impl", "cell", "B", "T", "H", "fb_ms", "min_ms", "x_ltf_lstm", "x_ltf_lstm_min",
              "compile_s", "peak_rss_mb", "load_1m")


# -- the parent: spawn, collect, tabulate ----------------------------------------------------------

def parse_size(text: str) -> tuple[int, int, int]:
    try:
        B, T, H = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected BxTxH, e.g. 32x128x256") from None
    return B, T, H


def spawn_worker(impl, cell, size, args) -> dict:
    B, T, H = size
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--impl", impl, "--cell", cell,
           "--size", f"{B}x{T}x{H}", "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--seed", str(args.seed)]
    if args.d_embed:
        cmd += ["--d-embed", str(args.d_embed)]
    if args.forward_backward:
        cmd.append("--forward-backward")
    if args.remat:
        cmd.append("--remat")
    cmd += ["--malloc", args.malloc]
    base = {"impl": impl, "cell": cell, "B": B, "T": T, "H": H}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {args.timeout} s"}
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**base, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def merge_repeats(runs: list[dict]) -> dict:
    """Median step time over repeats of one (impl, cell, size); the largest peak RSS."""
    ok = [r for r in runs if "step_ms" in r]
    if not ok:
        return runs[-1]
    row = dict(ok[0])
    for k in ("step_ms", "compile_s", "base_rss_mb", "load_1m"):
        row[k] = statistics.median(r[k] for r in ok)
    row["min_ms"] = min(r["min_ms"] for r in ok)
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    row["tokens_per_s"] = row["B"] * row["T"] / (row["step_ms"] / 1e3)
    row["repeats"] = len(ok)
    if len(ok) > 1:
        row["step_ms_all"] = [r["step_ms"] for r in ok]
    return row


def add_ratios(rows: list[dict]) -> list[dict]:
    """x_ltf_lstm on every row; returns per-size summaries of ltf lstm against torch and flax."""
    key = lambda r: (r["B"], r["T"], r["H"])
    ref = {key(r): r for r in rows if r["impl"] == "ltf" and r["cell"] == "lstm" and "step_ms" in r}
    fb = any(r.get("mode") == "forward_backward" for r in rows)
    summaries = []
    for r in rows:
        if "step_ms" in r and key(r) in ref:
            for col, ms in (("x_ltf_lstm", "step_ms"), ("x_ltf_lstm_min", "min_ms")):
                ratio = r[ms] / ref[key(r)][ms]  # time ratio
                r[col] = ratio if fb else 1.0 / ratio
    for size, lstm in ref.items():
        s = {"B": size[0], "T": size[1], "H": size[2]}
        for peer in ("torch", "flax"):
            p = next((r for r in rows if r["impl"] == peer and key(r) == size and "step_ms" in r), None)
            if p is not None:  # speed of ltf lstm relative to the peer (time ratio inverted)
                s[f"ltf_lstm_vs_{peer}"] = p["step_ms"] / lstm["step_ms"]
                s[f"ltf_lstm_vs_{peer}_min"] = p["min_ms"] / lstm["min_ms"]
        summaries.append(s)
    return summaries


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return "" if v is None else str(v)


def markdown(rows: list[dict], summaries: list[dict], machine: dict) -> str:
    fb = any(r.get("mode") == "forward_backward" for r in rows)
    columns = FB_COLUMNS if fb else COLUMNS
    if fb:
        for r in rows:
            r.setdefault("fb_ms", r.get("step_ms"))
    title = "forward+backward (value_and_grad, no optimiser)" if fb else "train step (fwd + bwd + Adam)"
    if machine.get("remat"):
        title += ", ltf with remat"
    if machine.get("malloc") == "tuned":
        title += ", every worker with ltf.allocator.keep_freed_memory()"
    lines = [f"### {title}, E = {'H' if not machine.get('d_embed') else machine['d_embed']}, "
             f"{machine.get('cpu_count')} CPU cores, load {machine.get('load_avg_start')} -> "
             f"{machine.get('load_avg_end')}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        if "step_ms" in r:
            lines.append("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |")
    lines.append("")
    for s in summaries:
        parts = [f"{s[k]:.2f}x {peer} ({s[k + '_min']:.2f}x on the fastest steps)"
                 for peer in ("torch", "flax") if (k := f"ltf_lstm_vs_{peer}") in s]
        if parts:
            lines.append(f"- ({s['B']},{s['T']},{s['H']}): ltf lstm speed = " + ", ".join(parts)
                         + " (inverse ratio of median step times)")
    for r in rows:
        if "step_ms" not in r:
            lines.append(f"- {r['impl']} {r['cell']} ({r['B']},{r['T']},{r['H']}): "
                         f"{r.get('skipped') or r.get('error')}")
    return "\n".join(lines) + "\n"


def machine_info(rows: list[dict], args, load_start) -> dict:
    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:  # the code measured: ltf changes under a benchmark that runs for minutes
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                cwd=REPO, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    kind = next((r["versions"]["device_kind"] for r in rows if "device_kind" in r.get("versions", {})), None)
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "jax": version("jax"), "jaxlib": version("jaxlib"),
            "flax": version("flax"), "optax": version("optax"), "torch": version("torch"),
            "device_kind": kind, "ltf_commit": commit, "load_avg_start": [round(v, 2) for v in load_start],
            "load_avg_end": [round(v, 2) for v in os.getloadavg()], "d_embed": args.d_embed,
            "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
            "mode": "forward_backward" if args.forward_backward else "train", "lr": LR, "remat": args.remat,
            "malloc": args.malloc}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="first size only (32x128x256)")
    p.add_argument("--sizes", type=lambda s: [parse_size(v) for v in s.split(",")], default=None,
                   help="comma-separated BxTxH")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"subset of {IMPLS}")
    p.add_argument("--cells", default=",".join(LTF_CELLS), help=f"ltf cells, subset of {LTF_CELLS}")
    p.add_argument("--steps", type=int, default=10, help="timed steps per worker")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the compiling one")
    p.add_argument("--repeats", type=int, default=1, help="run the whole sweep R times, interleaved")
    p.add_argument("--d-embed", type=int, default=None, help="embedding width E (default: H)")
    p.add_argument("--forward-backward", action="store_true", help="time value_and_grad, no optimiser")
    p.add_argument("--remat", action="store_true", help="ltf models with remat=True (memory for compute)")
    p.add_argument("--malloc", choices=MALLOCS, default="default",
                   help="tuned: every worker with ltf.allocator.keep_freed_memory() (as scripts/train.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--render", type=Path, default=None, help="re-tabulate a --json file, run nothing")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="ltf", help=argparse.SUPPRESS)
    p.add_argument("--cell", default="lstm", help=argparse.SUPPRESS)
    p.add_argument("--size", type=parse_size, default=SIZES[0], help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        sys.path.insert(0, str(REPO))
        row = run_worker(args.impl, args.cell, *args.size, d_embed=args.d_embed, steps=args.steps,
                         warmup=args.warmup, forward_backward=args.forward_backward, seed=args.seed,
                         remat=args.remat, malloc=args.malloc)
        print(json.dumps(row), flush=True)
        return

    if args.render:
        saved = json.loads(args.render.read_text())
        rows, machine = saved["results"], saved["machine"]
        summaries = add_ratios(rows)
        table = markdown(rows, summaries, machine)
        print(table)
        if args.markdown:
            args.markdown.write_text(table)
        return

    sizes = args.sizes or (SIZES[:1] if args.quick else SIZES)
    impls = [i for i in args.impls.split(",") if i]
    cells = [c for c in args.cells.split(",") if c]
    for name, given, allowed in (("impl", impls, IMPLS), ("cell", cells, LTF_CELLS)):
        if set(given) - set(allowed):
            p.error(f"--{name}s: unknown {sorted(set(given) - set(allowed))}; allowed: {allowed}")
    jobs = [(impl, cell) for impl in impls for cell in (cells if impl == "ltf" else ["lstm"])]
    load_start = os.getloadavg()
    runs: dict[tuple, list[dict]] = {}
    for rep in range(args.repeats):
        for size in sizes:
            for impl, cell in jobs:
                r = spawn_worker(impl, cell, size, args)
                runs.setdefault((size, impl, cell), []).append(r)
                status = (f"{r['tokens_per_s']:,.0f} tok/s, {r['step_ms']:.1f} ms, compile {r['compile_s']:.1f} s"
                          if "step_ms" in r else r.get("skipped") or r.get("error"))
                print(f"[{rep + 1}/{args.repeats}] {impl:5s} {cell:22s} {size}: {status}", file=sys.stderr,
                      flush=True)
    rows = [merge_repeats(v) for v in runs.values()]
    summaries = add_ratios(rows)
    machine = machine_info(rows, args, load_start)
    for r in rows:
        r.pop("versions", None)
    table = markdown(rows, summaries, machine)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": rows, "summary": summaries, "machine": machine}, indent=1))


if __name__ == "__main__":
    main()
