"""Where the time of a training step goes: XLA's ops, and two scan patterns measured in isolation.

  python scripts/bench_profile.py ops                          # ltf lstm, 32x128x256: top XLA ops per step
  python scripts/bench_profile.py ops --model layer            # the recurrent layer alone on dense inputs
  python scripts/bench_profile.py ops --impl flax --size 16x1024x128 --top 30
  python scripts/bench_profile.py ops --cell time_aware+attention --trace-dir /tmp/trace  # keep the trace
  python scripts/bench_profile.py scan                         # the per-step patterns behind ltf/fast_rnn.py

`ops` runs the train step of `scripts/bench.py` (same model, data and Adam) under
`jax.profiler.trace` (perfetto export, no TensorBoard needed) and sums the wall time of every
XLA op by name, per step. Ops on XLA's thread pool can overlap, and the large dots run
asynchronously, so the column does not add up to the step time; read it as where time is spent.

`scan` times, per step of a 128-step `lax.scan` at B = 32, H = 256 (G = 4H):
  h W_h alone             the recurrent matmul (B x H by H x G) and a tanh, nothing else; and the
                          same matmul called T times from NumPy (its BLAS), outside XLA
  gates from xs[t]        the LSTM gate math reading z_t as a dynamic slice of the scanned input
  gates from the carry    the same math reading z_t from the loop carry (`fast_rnn.carried_scan`)
  dz W_h.T, transposed    the backward's dz_t W_hᵀ against W_h (H x G) with the transpose folded in
  dz W_hT, materialised   the same against a row-major G x H copy (`fast_rnn.transposed`)
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def op_times(trace_dir: Path, n_steps: int) -> list[tuple[str, float, float]]:
    """(op name, ms per step, calls per step) from a perfetto trace, largest first; runtime
    bookkeeping (thunk executor, Python frames) left out."""
    path = next(iter(glob.glob(str(trace_dir / "**" / "*.trace.json.gz"), recursive=True)), None)
    if path is None:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}: the profiler wrote no perfetto trace.")
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    total, calls = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name.startswith("$") or "ThunkExecutor" in name or "Threadpool" in name:
            continue
        total[name] += e["dur"] / 1e3
        calls[name] += 1
    return [(name, ms / n_steps, calls[name] / n_steps) for name, ms in total.most_common()]


def profile_ops(impl: str, cell: str, size: tuple[int, int, int], *, steps: int, top: int,
                trace_dir: Path | None, model: str = "char_lm") -> str:
    import jax

    import bench_workers

    B, T, H = size
    step = bench_workers.jax_step(impl, cell, B, T, H, H, model=model)  # the model, data and Adam step of bench.py
    for _ in range(3):  # compile and warm up
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    step_ms = (time.perf_counter() - start) / steps * 1e3
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(trace_dir or tmp)
        with jax.profiler.trace(str(out), create_perfetto_trace=True):
            for _ in range(steps):
                step()
        rows = op_times(out, steps)
    lines = [f"### {impl} {cell} ({model}), B={B} T={T} H={H}: {step_ms:.1f} ms per step untraced "
             f"(mean of {steps}); XLA ops, summed wall time per step under the profiler", "",
             "| op | ms / step | calls / step |", "|---|---|---|"]
    lines += [f"| `{name}` | {ms:.2f} | {n:g} |" for name, ms, n in rows[:top]]
    if trace_dir:
        lines += ["", f"trace: {trace_dir} (open the .trace.json.gz in https://ui.perfetto.dev)"]
    return "\n".join(lines)


def profile_scan() -> str:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import bench_workers
    from ltf import fast_rnn

    B, T, H = 32, 128, 256
    G = 4 * H
    rng = np.random.default_rng(0)
    zs_TxBxG = jnp.asarray(rng.normal(size=(T, B, G)), jnp.float32)
    w_HxG = jnp.asarray(rng.normal(size=(H, G)) * 0.03, jnp.float32)
    dz_BxG = jnp.asarray(rng.normal(size=(B, G)), jnp.float32)
    carry0 = (jnp.zeros((B, H)), jnp.zeros((B, H)))

    def gates(carry, z_BxG):  # the LSTM step without its matmul; emits h like the layer does
        c_BxH, _ = carry
        i, f, g, o = jnp.split(z_BxG, 4, axis=-1)
        c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
        return (c_BxH, h_BxH), h_BxH

    def backward_matmul(transpose):
        def run(dz_BxG, w_HxG):
            w = fast_rnn.transposed(w_HxG) if transpose else w_HxG
            body = (lambda d, _: (jnp.tile(jnp.tanh(d @ w), (1, 4)), None)) if transpose else \
                (lambda d, _: (jnp.tile(jnp.tanh(d @ w.T), (1, 4)), None))
            return jax.lax.scan(body, dz_BxG, None, length=T)[0]
        return run

    def forward_matmul(h_BxH, w_HxG):  # the recurrent matmul alone, chained through a tanh
        return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w_HxG)[:, :H], None), h_BxH, None, length=T)[0]

    cases = {
        "h W_h alone": (forward_matmul, (dz_BxG[:, :H], w_HxG)),
        "gates from xs[t]": (lambda zs: jax.lax.scan(gates, carry0, zs)[1], (zs_TxBxG,)),
        "gates from the carry": (lambda zs: fast_rnn.carried_scan(gates, carry0, zs)[1], (zs_TxBxG,)),
        "dz W_h.T, transposed": (backward_matmul(False), (dz_BxG, w_HxG)),
        "dz W_hT, materialised": (backward_matmul(True), (dz_BxG, w_HxG)),
    }
    lines = [f"### per-step cost inside a {T}-step lax.scan, B={B} H={H} (median of 20 runs)", "",
             "| pattern | µs / step |", "|---|---|"]
    for name, (fn, args) in cases.items():
        fn = jax.jit(fn)
        _, times = bench_workers.time_steps(lambda: jax.block_until_ready(fn(*args)), 2, 20)
        lines.append(f"| {name} | {statistics.median(times) / T * 1e6:.1f} |")
    # the same matmul outside XLA: NumPy's BLAS (OpenBLAS in its wheels), T calls into one buffer
    h_BxH, w_np, out_BxG = np.asarray(dz_BxG[:, :H]), np.asarray(w_HxG), np.empty((B, G), np.float32)
    _, times = bench_workers.time_steps(lambda: [np.matmul(h_BxH, w_np, out=out_BxG) for _ in range(T)], 2, 20)
    lines.append(f"| h W_h alone, NumPy ({np.__version__}, its BLAS) | {statistics.median(times) / T * 1e6:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    import bench
    import bench_workers

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("ops", "scan"))
    p.add_argument("--impl", choices=("ltf", "flax"), default="ltf")
    p.add_argument("--model", choices=bench_workers.MODELS, default="char_lm", help="as bench.py's --models")
    p.add_argument("--cell", default="lstm", help=f"ltf cell, one of {bench_workers.LTF_CELLS}")
    p.add_argument("--size", type=bench.parse_size, default=bench.SIZES[0], help="BxTxH")
    p.add_argument("--steps", type=int, default=5, help="profiled (and timed) steps")
    p.add_argument("--top", type=int, default=25, help="ops listed")
    p.add_argument("--trace-dir", type=Path, default=None, help="keep the trace there")
    args = p.parse_args(argv)
    if args.cell not in bench_workers.LTF_CELLS or (args.impl == "flax" and args.cell != "lstm"):
        p.error(f"--cell {args.cell!r}: ltf takes {bench_workers.LTF_CELLS}, flax only 'lstm'.")
    if args.what == "ops":
        print(profile_ops(args.impl, args.cell, args.size, steps=args.steps, top=args.top,
                          trace_dir=args.trace_dir, model=args.model))
    else:
        print(profile_scan())


if __name__ == "__main__":
    main()
