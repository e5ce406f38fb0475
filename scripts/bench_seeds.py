"""K seeds in one program (`train.py --seeds`, jax.vmap over K models) against K separate runs.

  python scripts/bench_seeds.py                                   # K = 8, the CERG and char-LM settings
  python scripts/bench_seeds.py --k 4 --steps 100 --settings cerg --json benchmarks/seeds.json
  python scripts/bench_seeds.py --settings lm --markdown benchmarks/seeds.md

Each setting trains K seeds of one config for --steps steps three ways (after one untimed
1-step run that fills the data cache), each timed from process start to exit (interpreter,
imports, data, compilation, training, evaluation, checkpoints):

  separate   K processes of scripts/train.py, one after another
  parallel   K processes, --jobs at a time (default: the machine's core count; what a user with
             a sweep would do: `scripts/sweep.py --jobs N`)
  vmapped    one process of scripts/train.py --seeds 0,...,K-1

and reports each mode's wall time, its speed-up over `separate`, and the aggregate training
throughput read from the runs' own metrics (the last logged tokens_per_s of each run, after
compilation, times the number of runs that trained at once).

Settings (small models: the case that vmapping is for):
  cerg  configs/reber.py: 1 layer of 16 units, batch 16, windows of 100 symbols
  lm    configs/tlstm_lm.py (lstm) on the embedded Shakespeare: 1 layer of 64, batch 16, T 64
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "scripts" / "train.py"

SETTINGS = {
    "cerg": ["--config", f"{REPO / 'configs' / 'reber.py'}", "--config.data.eval_batches=10"],
    "lm": ["--config", f"{REPO / 'configs' / 'tlstm_lm.py'}:cell=lstm", "--config.model.n_layers=1",
           "--config.model.d_hidden=64", "--config.model.d_embed=32", "--config.data.batch_size=16",
           "--config.data.seq_len=64", "--config.train.eval_max_batches=4"],
}


def run(args: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(TRAIN), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def last_tokens_per_s(workdir: Path) -> float:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line]
    return [r for r in records if r["split"] == "train"][-1]["tokens_per_s"]


def bench(setting: str, k: int, steps: int, jobs: int, root: Path) -> list[dict]:
    common = SETTINGS[setting] + [f"--config.train.steps={steps}", f"--config.train.log_every={max(steps // 4, 1)}",
                                  f"--config.train.eval_every={steps}", f"--config.train.checkpoint_every={steps}",
                                  "--config.train.progress=false"]
    run(SETTINGS[setting] + ["--config.train.steps=1", "--config.train.progress=false",
                             "--workdir", str(root / setting / "warm-up")])  # data caches, bytecode: untimed
    rows = []
    for mode in ("separate", "parallel", "vmapped"):
        base = root / setting / mode
        if mode == "vmapped":
            wall = run(common + ["--seeds", ",".join(map(str, range(k))), "--workdir", f"{base}/seed={{seed}}"])
        else:
            commands = [common + [f"--config.seed={s}", "--workdir", f"{base}/seed={s}"] for s in range(k)]
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(1 if mode == "separate" else jobs) as pool:
                list(pool.map(run, commands))
            wall = time.perf_counter() - t0
        # Aggregate training throughput: one run at a time (separate), `jobs` at a time (parallel),
        # or K in one step, each logging its share of the wall time (vmapped).
        per_run = [last_tokens_per_s(base / f"seed={s}") for s in range(k)]
        concurrency = {"separate": 1, "parallel": min(jobs, k), "vmapped": k}[mode]
        throughput = sum(per_run) / k * concurrency
        rows.append({"setting": setting, "mode": mode, "K": k, "steps": steps,
                     "jobs": 1 if mode == "separate" else (jobs if mode == "parallel" else 1),
                     "wall_s": wall, "train_tokens_per_s": throughput, "load_1m": os.getloadavg()[0]})
        print(json.dumps(rows[-1]), flush=True)
    separate = rows[0]
    for row in rows:
        row["speedup_wall"] = separate["wall_s"] / row["wall_s"]
        row["speedup_train"] = row["train_tokens_per_s"] / separate["train_tokens_per_s"]
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [f"K seeds, one program vs separate runs; {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores. Wall: process start to exit, summed over the mode's processes.", "",
             "| setting | mode | K | steps | wall s | speed-up (wall) "
             "| train tokens/s (all seeds) | speed-up (train) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mode = f"{r['mode']} ({r['jobs']} at a time)" if r["mode"] == "parallel" else r["mode"]
        lines.append(f"| {r['setting']} | {mode} | {r['K']} | {r['steps']} | {r['wall_s']:.1f} | "
                     f"{r['speedup_wall']:.2f}x | {r['train_tokens_per_s']:,.0f} | {r['speedup_train']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--settings", default="cerg,lm")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    unknown = set(args.settings.split(",")) - set(SETTINGS)
    if unknown:
        parser.error(f"--settings: unknown {sorted(unknown)}; known: {sorted(SETTINGS)}")
    with tempfile.TemporaryDirectory() as root:
        rows = [r for s in args.settings.split(",") for r in bench(s, args.k, args.steps, args.jobs, Path(root))]
    table = markdown(rows)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": platform.platform(), "cpu_count": os.cpu_count(),
                                         "results": rows}, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
