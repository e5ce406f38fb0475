"""Speed and memory of one training step of a 1-layer char LM, and of the recurrent layer alone:
ltf's cells against Flax and PyTorch.

  python scripts/bench.py --quick                         # (32,128,256) only: about two minutes
  python scripts/bench.py --json benchmarks/bench_cpu.json --markdown benchmarks/bench_cpu.md
  python scripts/bench.py --quick --models char_lm,layer  # the char LM, then the layer on dense inputs
  python scripts/bench.py --quick --forward-backward      # value_and_grad only, no optimiser
  python scripts/bench.py --sizes 16x1024x128 --impls ltf --cells lstm,tlstm --steps 10 --repeats 3
  python scripts/bench.py --quick --impls ltf --cells lstm --input-projection per_token  # x_t W_x per token
  python scripts/bench.py --render benchmarks/bench_cpu.json      # the tables again from saved results
  python scripts/bench.py --worker --model layer --impl ltf --cell lstm --size 2x8x8 --steps 2   # one JSON line
  python scripts/bench.py --sizes 8x16384x256 --impls ltf --cells lstm --remat --steps 2 --warmup 0  # memory
  python scripts/bench.py --models layer --impls ltf --cells lstm,rglru,linear_decay,mlstm --remat \
      --sizes 8x1024x256,8x65536x256 --steps 2 --warmup 1     # the gated linear recurrences, long T
  bash scripts/gpu_bench.sh                               # on a GPU machine: install, test, bench, train

The models (`--models`, default char_lm): "char_lm" (tokens -> embedding -> one recurrent layer of
width H -> dense -> cross-entropy -> Adam) and "layer" (the recurrent layer alone on a fixed dense
B x T x E input, loss mean(hs ⊙ R) for a fixed random R -> Adam: no embedding, no softmax). Their
implementations (ltf's cells, flax's OptimizedLSTMCell, torch.nn.LSTM) are built in
scripts/bench_models.py; scripts/bench_workers.py times the step. Each model gets tables of its own.
`--input-projection auto|per_vocab|per_token` goes to the ltf char LM (`LanguageModel.build`).

On a GPU machine it runs unchanged: the JAX rows on JAX's default backend, torch on CUDA (cuDNN's
LSTM) when `torch.cuda.is_available()`; the table's title names the device. `--malloc` and
torch's thread count apply to CPU workers only.

`--malloc tuned` runs every CPU worker, whatever its impl, with `ltf.allocator.keep_freed_memory()`
(one glibc arena that keeps freed memory: no page faults on reused temporaries), as
`scripts/train.py` does by default; `--malloc default` (the default here) leaves glibc's
settings, as each library runs out of the box. Rows carry "malloc" (what applied).

`--remat` builds the ltf models with `remat=True` (the recurrent layer stores only C_{t-1} and
h_t per step and recomputes the rest in the backward pass: `ltf.fast_rnn`); flax and torch rows
are unchanged by it. Rows carry "remat".

Each (model, impl, cell, size) runs in its own process (`--worker`, one JSON line on stdout), one
after another, so memory and compilation never mix. The first step (compilation) and `--warmup`
more are excluded from the timing. With `--repeats R` the whole sweep runs R times, interleaved,
and the medians over the repeats are reported (robust to other processes' load on a shared
machine; the load average is recorded per row and for the run).

Columns (one table per model: "model" is char_lm or layer in the JSON rows):
  path          how x_t W_x is computed: "dense" (layer: one matmul over B·T inputs), "per_token"
                (char LM: the looked-up embeddings times W_x; flax, torch, ltf when asked or when
                V >= B·T), "per_vocab" (ltf char LM: gathered from the V x G table E W_x)
  kernel        what ran ltf's recurrence: "cpu" (lstm, adaptive, time_aware, decay, phased, tlstm in
                `ltf.cpu_kernel`'s compiled kernel, the default on CPU where it applies) or "xla" (the scans
                of `ltf.fast_rnn` and the other recurrences; impl ltf_xla forces them with LTF_CPU_KERNEL=off)
  tokens_per_s  B·T / step_ms
  step_ms       median wall time of one train step (forward, backward, Adam update)
  min_ms        the fastest single step seen (over all repeats): what the step costs on a quiet machine
  fb_ms         (--forward-backward) median time of jax.value_and_grad of the loss / loss.backward()
  x_ltf_lstm    tokens/s relative to ltf lstm of the same model at the same size (0.8 = 20% slower
                than ltf lstm); on the torch and flax rows it reads "torch is 1.3x ltf lstm"; in the
                forward-backward table it is the time ratio fb_ms / fb_ms(ltf lstm) (1.25 = 25% more time)
  x_ltf_lstm_min  the same ratio from min_ms (less sensitive to other processes' load)
  x_range       (--repeats > 1) the lowest and highest of the ratio over the repeats, each from one
                repeat's step times (the repeats interleave, so each saw the same load): the spread
                the median hides; the peer lines below the table give it too
  compile_s     wall time of the first step, compilation (JAX) or first-call overhead (torch) included
  base_rss_mb   peak RSS of the worker before its first step (interpreter, libraries, params, inputs)
  peak_rss_mb   peak RSS of the worker at the end (resource.getrusage(RUSAGE_SELF).ru_maxrss); the
                difference is what compiling and running the step added
  peak_device_mb  (on an accelerator only) its peak memory in use: JAX's peak_bytes_in_use, torch's
                max_memory_allocated
  load_1m       1-minute load average at the end of the worker (the machine has cpu_count cores)
Below each table: ltf lstm tokens/s relative to torch and to flax, per size.
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

from bench_models import split_cell  # noqa: E402
from bench_workers import (IMPLS, INPUT_PROJECTIONS, LR, LTF_CELLS, MALLOCS, MODELS,  # noqa: E402
                           run_worker)

REPO = Path(__file__).resolve().parents[1]
SIZES = ((32, 128, 256), (32, 128, 512), (64, 256, 256), (16, 1024, 128))
COLUMNS = ("impl", "cell", "path", "kernel", "B", "T", "H", "tokens_per_s", "step_ms", "min_ms", "x_ltf_lstm",
           "x_ltf_lstm_min", "compile_s", "base_rss_mb", "peak_rss_mb", "load_1m")
FB_COLUMNS = ("impl", "cell", "path", "kernel", "B", "T", "H", "fb_ms", "min_ms", "x_ltf_lstm", "x_ltf_lstm_min",
              "compile_s", "peak_rss_mb", "load_1m")
PEERS = ("torch", "flax", "ltf_xla")  # the ratios "ltf lstm speed = ... x <peer>"
MODEL_TITLES = {"char_lm": "char LM", "layer": "recurrent layer alone (dense B x T x E inputs, loss mean(hs ⊙ R))"}


# -- the parent: spawn, collect, tabulate ----------------------------------------------------------

def parse_size(text: str) -> tuple[int, int, int]:
    try:
        B, T, H = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected BxTxH, e.g. 32x128x256") from None
    return B, T, H


def spawn_worker(model, impl, cell, size, args) -> dict:
    B, T, H = size
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model, "--impl", impl,
           "--cell", cell, "--size", f"{B}x{T}x{H}", "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--seed", str(args.seed), "--malloc", args.malloc, "--input-projection", args.input_projection]
    if args.d_embed:
        cmd += ["--d-embed", str(args.d_embed)]
    if args.forward_backward:
        cmd.append("--forward-backward")
    if args.remat:
        cmd.append("--remat")
    base = {"model": model, "impl": impl, "cell": cell, "B": B, "T": T, "H": H}
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
    """Median step time over repeats of one (model, impl, cell, size); the largest peak memory."""
    ok = [r for r in runs if "step_ms" in r]
    if not ok:
        return runs[-1]
    row = dict(ok[0])
    for k in ("step_ms", "compile_s", "base_rss_mb", "load_1m"):
        row[k] = statistics.median(r[k] for r in ok)
    row["min_ms"] = min(r["min_ms"] for r in ok)
    for k in ("peak_rss_mb", "peak_device_mb"):
        if row.get(k) is not None:
            row[k] = max(r[k] for r in ok)
    row["tokens_per_s"] = row["B"] * row["T"] / (row["step_ms"] / 1e3)
    row["repeats"] = len(ok)
    if len(runs) > 1:  # per repeat, in order (None: that repeat failed), for the ratios' spread
        row["step_ms_all"] = [r.get("step_ms") for r in runs]
    return row


def repeat_ratios(row: dict, ref: dict, *, time_ratio: bool = False) -> list[float]:
    """ref's step time over row's (row's over ref's with `time_ratio`) in each repeat both ran:
    the repeats are interleaved, so repeat i of each row saw the same load."""
    pairs = [(a, b) for a, b in zip(row.get("step_ms_all") or [], ref.get("step_ms_all") or [])
             if a is not None and b is not None]
    return [a / b if time_ratio else b / a for a, b in pairs]


def _spread(ratios: list[float]) -> list[float] | None:
    return [min(ratios), max(ratios)] if len(ratios) > 1 else None


def with_defaults(rows: list[dict]) -> list[dict]:
    """Rows saved before the layer model and the per-vocab path: every one a char LM's, per token."""
    for r in rows:
        r.setdefault("model", "char_lm")
        r.setdefault("path", "per_token")
        r.setdefault("kernel", "xla" if r.get("impl") == "ltf" else None)
    return rows


def add_ratios(rows: list[dict]) -> list[dict]:
    """x_ltf_lstm on every row; returns per-(model, size) summaries of ltf lstm against torch and flax."""
    key = lambda r: (r.get("model", "char_lm"), r["B"], r["T"], r["H"])
    ref = {key(r): r for r in rows if r["impl"] == "ltf" and r["cell"] == "lstm" and "step_ms" in r}
    fb = any(r.get("mode") == "forward_backward" for r in rows)
    summaries = []
    for r in rows:
        if "step_ms" in r and key(r) in ref:
            for col, ms in (("x_ltf_lstm", "step_ms"), ("x_ltf_lstm_min", "min_ms")):
                ratio = r[ms] / ref[key(r)][ms]  # time ratio
                r[col] = ratio if fb else 1.0 / ratio
            spread = None if r is ref[key(r)] else _spread(repeat_ratios(r, ref[key(r)], time_ratio=fb))
            if spread is not None:
                r["x_range"] = spread
    for (model, B, T, H), lstm in ref.items():
        s = {"model": model, "B": B, "T": T, "H": H}
        for peer in PEERS:
            p = next((r for r in rows if r["impl"] == peer and key(r) == key(lstm) and "step_ms" in r), None)
            if p is not None:  # speed of ltf lstm relative to the peer (time ratio inverted)
                s[f"ltf_lstm_vs_{peer}"] = p["step_ms"] / lstm["step_ms"]
                s[f"ltf_lstm_vs_{peer}_min"] = p["min_ms"] / lstm["min_ms"]
                if (spread := _spread(repeat_ratios(lstm, p))) is not None:
                    s[f"ltf_lstm_vs_{peer}_range"] = spread
        summaries.append(s)
    return summaries


def _fmt(v) -> str:
    if isinstance(v, list):  # a spread [lowest, highest]
        return "–".join(f"{x:.2f}" for x in v)
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return "" if v is None else str(v)


def _where(machine: dict) -> str:
    """The device the table ran on: the CPU cores, or the accelerator(s) beside them."""
    cores = f"{machine.get('cpu_count')} CPU cores"
    accelerators = [machine.get("device_kind") if machine.get("jax_backend", "cpu") != "cpu" else None,
                    machine.get("torch_device") if str(machine.get("torch_device")).startswith("cuda") else None]
    accelerators = list(dict.fromkeys(a for a in accelerators if a))
    return f"{', '.join(accelerators)} ({cores})" if accelerators else cores


def model_markdown(model: str, rows: list[dict], summaries: list[dict], machine: dict) -> str:
    """The table of one model's rows, its ltf lstm vs torch / flax lines, and its skipped rows."""
    fb = any(r.get("mode") == "forward_backward" for r in rows)
    columns = FB_COLUMNS if fb else COLUMNS
    if fb:
        for r in rows:
            r.setdefault("fb_ms", r.get("step_ms"))
    if any(r.get("peak_device_mb") is not None for r in rows):  # an accelerator's memory, after the host's
        i = columns.index("peak_rss_mb") + 1
        columns = columns[:i] + ("peak_device_mb",) + columns[i:]
    if any("x_range" in r for r in rows):  # repeated: the lowest and highest per-repeat ratio
        i = columns.index("x_ltf_lstm_min") + 1
        columns = columns[:i] + ("x_range",) + columns[i:]
    title = "forward+backward (value_and_grad, no optimiser)" if fb else "train step (fwd + bwd + Adam)"
    if machine.get("remat"):
        title += ", ltf with remat"
    if machine.get("malloc") == "tuned":
        title += ", every CPU worker with ltf.allocator.keep_freed_memory()"
    lines = [f"### {MODEL_TITLES.get(model, model)}: {title}, "
             f"E = {'H' if not machine.get('d_embed') else machine['d_embed']}, {_where(machine)}, "
             f"load {machine.get('load_avg_start')} -> {machine.get('load_avg_end')}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        if "step_ms" in r:
            lines.append("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |")
    lines.append("")
    for s in summaries:
        spread = lambda k: f"{_fmt(s[k + '_range'])} over the repeats, " if k + "_range" in s else ""  # noqa: E731
        parts = [f"{s[k]:.2f}x {peer} ({spread(k)}{s[k + '_min']:.2f}x on the fastest steps)"
                 for peer in PEERS if (k := f"ltf_lstm_vs_{peer}") in s]
        if parts:
            lines.append(f"- ({s['B']},{s['T']},{s['H']}): ltf lstm speed = " + ", ".join(parts)
                         + " (inverse ratio of median step times)")
    for r in rows:
        if "step_ms" not in r:
            lines.append(f"- {r['impl']} {r['cell']} ({r['B']},{r['T']},{r['H']}): "
                         f"{r.get('skipped') or r.get('error')}")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], summaries: list[dict], machine: dict) -> str:
    """One table per model, in the order the rows first name them."""
    model_of = lambda r: r.get("model", "char_lm")
    models = dict.fromkeys(model_of(r) for r in rows)
    return "\n".join(model_markdown(m, [r for r in rows if model_of(r) == m],
                                    [s for s in summaries if model_of(s) == m], machine) for m in models)


def machine_info(rows: list[dict], args, load_start) -> dict:
    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def first(field):  # from the rows' versions: what the workers saw
        return next((r["versions"][field] for r in rows if field in r.get("versions", {})), None)

    try:  # the code measured: ltf changes under a benchmark that runs for minutes
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                cwd=REPO, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "jax": version("jax"), "jaxlib": version("jaxlib"),
            "flax": version("flax"), "optax": version("optax"), "torch": version("torch"),
            "device_kind": first("device_kind"), "jax_backend": first("jax_backend"),
            "torch_device": first("torch_device"), "cudnn": first("cudnn"), "ltf_commit": commit,
            "load_avg_start": [round(v, 2) for v in load_start],
            "load_avg_end": [round(v, 2) for v in os.getloadavg()], "d_embed": args.d_embed,
            "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
            "mode": "forward_backward" if args.forward_backward else "train", "lr": LR, "remat": args.remat,
            "malloc": args.malloc, "models": args.models, "input_projection": args.input_projection}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="first size only (32x128x256)")
    p.add_argument("--sizes", type=lambda s: [parse_size(v) for v in s.split(",")], default=None,
                   help="comma-separated BxTxH")
    p.add_argument("--models", "--model", default="char_lm", help=f"comma-separated, subset of {MODELS}")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"subset of {IMPLS}")
    p.add_argument("--cells", default=",".join(LTF_CELLS), help=f"ltf cells, subset of {LTF_CELLS}")
    p.add_argument("--input-projection", choices=INPUT_PROJECTIONS, default="auto",
                   help="the ltf char LM's x_t W_x (ltf.models.LanguageModel)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per worker")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the compiling one")
    p.add_argument("--repeats", type=int, default=1, help="run the whole sweep R times, interleaved")
    p.add_argument("--d-embed", type=int, default=None, help="input width E (default: H)")
    p.add_argument("--forward-backward", action="store_true", help="time value_and_grad, no optimiser")
    p.add_argument("--remat", action="store_true", help="ltf models with remat=True (memory for compute)")
    p.add_argument("--malloc", choices=MALLOCS, default="default",
                   help="tuned: every CPU worker with ltf.allocator.keep_freed_memory() (as scripts/train.py)")
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
    models = [m for m in args.models.split(",") if m]

    if args.worker:
        if len(models) != 1:
            p.error(f"--worker runs one model, got --model {args.models}")
        sys.path.insert(0, str(REPO))
        row = run_worker(args.impl, args.cell, *args.size, model=models[0], d_embed=args.d_embed,
                         steps=args.steps, warmup=args.warmup, forward_backward=args.forward_backward,
                         seed=args.seed, remat=args.remat, malloc=args.malloc,
                         input_projection=args.input_projection)
        print(json.dumps(row), flush=True)
        return

    if args.render:
        saved = json.loads(args.render.read_text())
        rows, machine = with_defaults(saved["results"]), saved["machine"]
        table = markdown(rows, add_ratios(rows), machine)
        print(table)
        if args.markdown:
            args.markdown.write_text(table)
        return

    sizes = args.sizes or (SIZES[:1] if args.quick else SIZES)
    impls = [i for i in args.impls.split(",") if i]
    cells = [c for c in args.cells.split(",") if c]
    for name, given, allowed in (("model", models, MODELS), ("impl", impls, IMPLS), ("cell", cells, LTF_CELLS)):
        if set(given) - set(allowed):
            p.error(f"--{name}s: unknown {sorted(set(given) - set(allowed))}; allowed: {allowed}")
    jobs = [(model, impl, cell) for model in models for impl in impls
            for cell in (cells if impl == "ltf" else ["lstm"])  # ltf_xla, flax, torch: lstm
            if not (model == "layer" and split_cell(cell)[2])]  # attention runs in the char LM only
    if "layer" in models and "ltf" in impls and any(split_cell(c)[2] for c in cells):
        print("layer model: the +attention cells run in the char LM only; left out", file=sys.stderr)
    load_start = os.getloadavg()
    runs: dict[tuple, list[dict]] = {}
    for rep in range(args.repeats):
        for size in sizes:
            for model, impl, cell in jobs:
                r = spawn_worker(model, impl, cell, size, args)
                runs.setdefault((model, size, impl, cell), []).append(r)
                status = (f"{r['tokens_per_s']:,.0f} tok/s, {r['step_ms']:.1f} ms, compile {r['compile_s']:.1f} s"
                          if "step_ms" in r else r.get("skipped") or r.get("error"))
                print(f"[{rep + 1}/{args.repeats}] {model:7s} {impl:7s} {cell:22s} {size}: {status}",
                      file=sys.stderr, flush=True)
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
