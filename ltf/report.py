"""The results of a sweep, gathered from its workdirs: one table row per arm, and figures.

    paths = write_report("runs/ablation")          # what scripts/sweep.py --report writes
    rows = summarise(collect("runs/ablation"), "bpc")   # the same numbers, in a notebook

Writes into the sweep workdir W:

    results.md           one row per arm: n seeds, final validation (and test) metric as
                         mean ± sample std (ddof=1; "—" for one seed), wall time per run; the
                         arm by its label (the config's name for it), else its run name
    results.csv          the same per arm, every final metric (loss, bpc/perplexity) and split,
                         the arm's run name, label and overrides as columns; full precision,
                         std empty for one seed
    learning_curves.png  validation metric against step, per arm: mean over seeds (or folds), band min–max
    final_<metric>.png   final validation metric per arm: bar = mean, error bar = std, dots = seeds

A run counts when its metrics hold the validation record at its final step (train.steps in its
config.json); its final metrics are the records of that step. The others are listed as left out.
Runs come from W/sweep.json (written by the runner), else from the W/*/sweep_run.json files.
Wall time per run is the runner's clock (process start to exit, summed over resumed attempts).
The metric is `bpc` when the runs log it, else `perplexity`, else `loss`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ltf.sweep import RUN_FILE, SEED, SWEEP_FILE, Run
from ltf.writers import CONFIG_FILE, read_metrics

METRICS = ("bpc", "perplexity", "loss")  # the first one the runs log is the default
SPLITS = ("validation", "test")
DASH = "—"


@dataclasses.dataclass
class RunResult:
    name: str
    arm: str
    seed: Any
    overrides: dict
    steps: int | None
    curve: list[dict]  # validation records, steps increasing
    final: dict  # split -> the record at the final step; empty when the run has not finished
    wall_s: float | None
    label: str  # the arm's name in the table and figures (`arm_label`)


def _read_json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def sweep_runs(workdir: Path) -> list[dict]:
    """The run records of a sweep workdir: W/sweep.json's, else those of its W/*/sweep_run.json."""
    if (workdir / SWEEP_FILE).exists():
        return _read_json(workdir / SWEEP_FILE)["runs"]
    return [_read_json(p) for p in sorted(workdir.glob(f"*/{RUN_FILE}"))]


def arm_label(entry: dict) -> str:
    """A run record's arm as reports name it: its label (the config's name for the arm), else, in
    records written before labels, the arm's run name."""
    return entry.get("label") or entry.get("arm", entry["name"])


def collect(workdir: str | Path, runs: Sequence[Run | dict] | None = None) -> list[RunResult]:
    """Every run's curve, final metrics and wall time, read from W/<run>/."""
    workdir = Path(workdir)
    entries = [r.record() if isinstance(r, Run) else r for r in (sweep_runs(workdir) if runs is None else runs)]
    results = []
    for entry in entries:
        run_dir = workdir / entry["name"]
        steps = _read_json(run_dir / CONFIG_FILE, {}).get("train", {}).get("steps", entry.get("steps"))
        records = read_metrics(run_dir)
        curve = [r for r in records if r["split"] == "validation"]
        final = {r["split"]: r for r in records if r["step"] == steps and r["split"] in SPLITS}
        if "validation" not in final:
            final = {}
        selected = final.get("test", {}).get("checkpoint_step")  # train.test_at="best"
        at_selected = [r for r in curve if r["step"] == selected]
        if at_selected:  # validation as the checkpoint that test was scored with saw it
            final["validation"] = at_selected[-1]
        attempts = _read_json(run_dir / RUN_FILE, {}).get("attempts")
        # Seeds trained in one process (sweep --seeds_per_process) share its wall time equally.
        wall_s = sum(a["wall_s"] / len(a.get("trained_with") or [0]) for a in attempts) if attempts else None
        results.append(RunResult(entry["name"], entry.get("arm", entry["name"]), entry.get("seed"),
                                 entry.get("overrides", {}), steps, curve, final, wall_s, arm_label(entry)))
    return results


def choose_metric(results: Sequence[RunResult], metric: str | None = None) -> str:
    logged = {k for r in results for k in r.final.get("validation", {})}
    if metric is not None:
        if results and any(r.final for r in results) and metric not in logged:
            raise ValueError(f"metric {metric!r}: not in the runs' final validation records ({sorted(logged)}).")
        return metric
    return next((m for m in METRICS if m in logged), "loss")


def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def summarise(results: Sequence[RunResult], metric: str) -> list[dict]:
    """One dict per arm (in the sweep's order): n, seeds, <split>_<m>_mean / _std for every final
    metric m, wall_s_mean / _std, left_out (the arm's unfinished runs)."""
    arms: dict[str, list[RunResult]] = {}
    for r in results:
        arms.setdefault(r.arm, []).append(r)
    keys = sorted({k for r in results for rec in r.final.values() for k in rec if k not in ("step", "split")},
                  key=lambda k: (k != metric, k))
    rows = []
    for arm, members in arms.items():
        done = [r for r in members if r.final]
        row = {"arm": arm, "label": members[0].label, "n": len(done),
               "seeds": " ".join(str(r.seed) for r in done),
               "steps": members[0].steps, **{k: v for k, v in members[0].overrides.items() if k != "seed"}}
        for split in SPLITS:
            for k in keys:
                values = [r.final[split][k] for r in done if split in r.final and k in r.final[split]]
                row[f"{split}_{k}_mean"], row[f"{split}_{k}_std"] = _stats(values)
        row["wall_s_mean"], row["wall_s_std"] = _stats([r.wall_s for r in done if r.wall_s is not None])
        row["left_out"] = " ".join(r.name for r in members if not r.final)
        rows.append(row)
    return rows


def _pm(row: dict, split: str, metric: str) -> str:
    """'mean ± std' of a row's final metric; '—' for what is missing."""
    mean, std = row.get(f"{split}_{metric}_mean"), row.get(f"{split}_{metric}_std")
    if mean is None:
        return DASH
    return f"{mean:.4f} ± {DASH if std is None else f'{std:.4f}'}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def replicates_word(results: Sequence[RunResult]) -> str:
    """What the runs of one arm differ in, for "mean ± std over ...": "seeds", or the override
    keys that vary within an arm (GRU-D's cross-validation: "folds (`task.fold`)")."""
    keys = set()
    for arm in {r.arm for r in results}:
        overrides = [r.overrides for r in results if r.arm == arm]
        for k in set().union(*overrides):
            if len({json.dumps(o.get(k), sort_keys=True, default=str) for o in overrides}) > 1:
                keys.add(k)
    words = ["seeds" if k == SEED else ("folds (`task.fold`)" if k == "task.fold" else f"`{k}`")
             for k in sorted(keys, key=lambda k: (k != SEED, k))]
    return " and ".join(words) or "seeds"


def _figures(results: Sequence[RunResult], rows: list[dict], metric: str, workdir: Path,
             over: str) -> list[Path]:
    """`over`: what an arm's runs differ in (`replicates_word`)."""
    from matplotlib.figure import Figure  # no pyplot: the Agg canvas, and no global backend change
    from matplotlib.ticker import MaxNLocator

    finished = [r for r in results if r.final]
    shown = [row for row in rows if row.get(f"validation_{metric}_mean") is not None]
    if not shown:
        return []
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for row in rows:
        curves = [{c["step"]: c[metric] for c in r.curve if metric in c}
                  for r in finished if r.arm == row["arm"]]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if not steps:
            continue
        values = np.array([[c[s] for s in steps] for c in curves])
        (line,) = ax.plot(steps, values.mean(0), marker="." if len(steps) < 20 else None,
                          label=f"{row['label']} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2, lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="step", ylabel=f"validation {metric}",
           title=f"validation {metric}: mean over {over}, band min–max")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    curves_png = workdir / "learning_curves.png"
    fig.savefig(curves_png, dpi=120)

    fig = Figure(figsize=(8, 1.2 + 0.45 * len(shown)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(shown))[::-1]
    means = [row[f"validation_{metric}_mean"] for row in shown]
    stds = [row[f"validation_{metric}_std"] or 0.0 for row in shown]
    ax.barh(y, means, xerr=stds, color="tab:blue", alpha=0.6, capsize=4)
    for yi, row in zip(y, shown):
        seeds = [r.final["validation"][metric] for r in finished if r.arm == row["arm"]]
        ax.plot(seeds, [yi] * len(seeds), "k.", markersize=5)
        ax.text(row[f"validation_{metric}_mean"], yi + 0.3, " " + _pm(row, "validation", metric),
                va="center", fontsize="small")
    ax.set_xlim(0, 1.3 * max(m + s for m, s in zip(means, stds)))  # room for the labels
    ax.set_yticks(y, [f"{row['label']} (n={row['n']})" for row in shown], fontsize="small")
    ax.set(xlabel=f"final validation {metric} (bar: mean, error bar: std over {over}, dots: runs)")
    ax.grid(axis="x", alpha=0.3)
    bars_png = workdir / f"final_{metric}.png"
    fig.savefig(bars_png, dpi=120)
    return [curves_png, bars_png]


def write_report(workdir: str | Path, *, runs: Sequence[Run | dict] | None = None, metric: str | None = None,
                 title: str | None = None) -> dict[str, Path]:
    """results.md, results.csv and the figures in W (see the module docstring); returns their paths."""
    workdir = Path(workdir).expanduser()
    results = collect(workdir, runs)
    metric = choose_metric(results, metric)
    rows = summarise(results, metric)
    if title is None:
        title = _read_json(workdir / SWEEP_FILE, {}).get("config")

    csv_path = workdir / "results.csv"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})

    over = replicates_word(results)
    figures = _figures(results, rows, metric, workdir, over)
    has_test = any(row.get(f"test_{metric}_mean") is not None for row in rows)
    head = ["arm", "n", f"validation {metric}"] + ([f"test {metric}"] if has_test else []) + ["wall time / run"]
    selected = any(r.final.get("test", {}).get("checkpoint_step") is not None for r in results)
    when = ("at each run's best validation checkpoint (`train.test_at='best'`: test scored with it)" if selected
            else "(step `train.steps`)")
    lines = [f"# Sweep results{f': `{title}`' if title else ''}", "",
             f"Final `{metric}` {when} as mean ± sample std over {over} ({DASH} for one run); "
             "wall time per run: process start to exit, summed over resumed attempts (seeds trained "
             "in one process share its time equally).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"`{row['label']}`", str(row["n"]), _pm(row, "validation", metric)]
        if has_test:
            cells.append(_pm(row, "test", metric))
        cells.append(_duration(row["wall_s_mean"]))
        lines.append("| " + " | ".join(cells) + " |")
    left_out = [r for r in results if not r.final]
    if left_out:
        lines += ["", "Left out (not finished): " + ", ".join(f"`{r.name}`" for r in left_out) + "."]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in figures]
    md_path = workdir / "results.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"md": md_path, "csv": csv_path, **{p.stem: p for p in figures}}
