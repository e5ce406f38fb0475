"""Ensembles of trained runs: the members' predictions averaged, then scored as one model.

    evaluate_ensemble(["runs/f/cell=grud,seed=0", "runs/f/cell=grud,seed=1"])   # {split: metrics}
    ensembles_of_sweep("runs/forecast")    # {arm: {"members": [...], "splits": {split: metrics}}}

Seeds of one arm disagree most where data are scarce (a sparsely observed series, 2,560 ICU
stays): averaging their forecasts, or probabilities, removes part of that disagreement (forecast
combination, a standard lever of forecasters). An ensemble is a different model from any
member, so ltf reports it beside the arms (`scripts/ensemble.py`), never in their place.

A task takes part by having two members (ltf.tasks.series: `Forecast`, `PhysioNet`):

    task.prediction(params, carry, batch) -> (carry, pred)   # per example, a quantity to average:
                                                             # ŷ [B,H], or P(death) [B]
    task.outputs_from(pred, batch) -> outputs                # what eval_outputs returns, from pred

Members are scored at their best validation checkpoint (`ltf.evaluation.pick_step`) on the
batches of the first member's task. Their batches must hold the same examples (EXAMPLE_KEYS:
the same targets, normalised alike, in the same order), else the error names the split and the
config fields where the runs differ; the model, its inputs (task.dt), seed and training may
differ, so an ensemble of different arms is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from ltf.evaluation import pick_step
from ltf.report import arm_label, sweep_runs
from ltf.runs import read_config, restore_params
from ltf.sweep import SWEEP_FILE
from ltf.tasks.registry import task_name
from ltf.train import build, evaluate, make_eval_step

SECTIONS = ("task", "data")  # named in the error when members score other examples
EXAMPLE_KEYS = ("targets", "target_mask", "loc", "scale", "example_mask", "record_id")  # what a batch scores


def _differences(a: dict, b: dict, prefix: str) -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} against {vb!r}")
    return out


def _config_differences(a, b) -> list[str]:
    """The fields of the `task` and `data` sections where two run configs differ."""
    def section(config, name):
        return config[name].to_dict() if name in config else {}

    return [d for name in SECTIONS for d in _differences(section(a, name), section(b, name), f"{name}.")]


def _same_examples(a: list[dict], b: list[dict]) -> str | None:
    """None if two members' batches of a split hold the same examples, else what differs first."""
    if len(a) != len(b):
        return f"{len(a)} batches against {len(b)}"
    for k, (x, y) in enumerate(zip(a, b)):
        for key in x:
            if x[key].shape != y[key].shape or not np.array_equal(x[key], y[key]):
                return f"batch {k}: `{key}` differs"
    return None


def _member_task(workdir: Path, config, splits) -> tuple[object, list[str], dict]:
    """(task, splits, {split: [the examples of each batch]}) of one member, before any checkpoint."""
    task, _, _ = build(config)
    if not hasattr(task, "prediction"):
        raise ValueError(f"{workdir}: task {task_name(config)!r} has no `prediction`; ensembles are for "
                         "tasks that define it (forecast, physionet; see ltf/ensemble.py).")
    splits = list(task.eval_splits if splits is None else splits)
    unknown = [s for s in splits if s not in task.eval_splits]
    if unknown:
        raise ValueError(f"split {unknown[0]!r}: the task has {list(task.eval_splits)}")
    examples = {split: [{k: np.asarray(b[k]) for k in EXAMPLE_KEYS if k in b} for b in task.eval_batches(split)]
                for split in splits}
    return task, splits, examples


def _predictions(task, workdir: Path, config, checkpoint, splits) -> tuple[int, dict]:
    """(step, {split: [pred of each batch]}) of one member at its `checkpoint`."""
    params, step = restore_params(workdir, task.model, config, step=pick_step(workdir, checkpoint))
    predict_step = jax.jit(make_eval_step(task, task.prediction))
    carry = task.model.initial_state(config.data.eval_batch_size)
    preds = {split: [np.asarray(p, np.float64) for p in evaluate(predict_step, params, carry, task.eval_batches(split))]
             for split in splits}
    return step, preds


def evaluate_ensemble(workdirs: Sequence[str | Path], *, checkpoint: str | int = "best",
                      splits: Sequence[str] | None = None) -> dict:
    """{"members": [{"workdir", "step"}], "splits": {split: metrics}}: the members' mean prediction
    scored as the task scores one model. `splits`: None for the task's evaluation splits."""
    workdirs = [Path(w) for w in workdirs]
    if len(workdirs) < 2:
        raise ValueError(f"an ensemble needs at least 2 runs; got {[str(w) for w in workdirs]}")
    configs = [read_config(w) for w in workdirs]
    first_task, first_examples, members, per_member = None, None, [], []
    for workdir, config in zip(workdirs, configs):
        task, member_splits, examples = _member_task(workdir, config, splits)
        first_task, first_examples = first_task or task, first_examples or examples
        for split in first_examples:  # checked before any checkpoint is read
            why = _same_examples(first_examples[split], examples.get(split, []))
            if why:
                diffs = _config_differences(configs[0], config)
                raise ValueError(
                    f"ensemble members score other {split} examples ({why}): {workdirs[0]} against {workdir}"
                    + (f"; their configs differ in {'; '.join(diffs)}" if diffs else "")
                    + ". Give runs of one series (or data set), split and data.eval_batch_size.")
        step, preds = _predictions(task, workdir, config, checkpoint, member_splits)
        members.append({"workdir": str(workdir), "step": step})
        per_member.append(preds)
    results = {}
    for split in per_member[0]:  # scored on the first member's batches
        outputs = []
        for k, batch in enumerate(first_task.eval_batches(split)):
            mean_pred = np.mean([preds[split][k] for preds in per_member], axis=0)
            outputs.append(jax.tree.map(np.asarray, first_task.outputs_from(mean_pred, batch)))
        results[split] = first_task.eval_scalars(outputs)
    return {"members": members, "splits": results}


def arms_of_sweep(sweep_dir: str | Path) -> dict[str, list[Path]]:
    """{arm: [its runs' directories]} of a sweep, each arm by its label as the report names it, runs
    without a checkpoint left out."""
    sweep_dir = Path(sweep_dir)
    runs = sweep_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"{sweep_dir}: no {SWEEP_FILE} and no runs in it; give a workdir written by "
                                "scripts/sweep.py.")
    arms: dict[str, list[Path]] = {}
    for run in runs:
        run_dir = sweep_dir / run["name"]
        if (run_dir / "config.json").exists() and (run_dir / "checkpoints").exists():
            arms.setdefault(arm_label(run), []).append(run_dir)
    return arms


def ensembles_of_sweep(sweep_dir: str | Path, *, checkpoint: str | int = "best",
                       splits: Sequence[str] | None = None) -> dict[str, dict]:
    """{arm: evaluate_ensemble(its runs)} for each arm of a sweep with at least 2 trained runs."""
    return {arm: evaluate_ensemble(runs, checkpoint=checkpoint, splits=splits)
            for arm, runs in arms_of_sweep(sweep_dir).items() if len(runs) >= 2}
