"""A trained run evaluated again: any split of its task at its best (or a named) checkpoint, or,
for a language model, held-out text given as a file or folder and encoded with the run's own
vocabulary (PTB's test split, which training never read, is evaluated this way).

    results = evaluate_run("runs/ptb")                                   # best checkpoint, every split
    results = evaluate_run("runs/ptb", splits=["test"], data_dir="data/ptb")   # {"test": {...}}
    results = evaluate_run("runs/cerg", splits=["test"], overrides={"data.eval_batches": 10_000})

The evaluation is the trainer's own (`ltf.train.evaluate`: the whole split, the state carried from
batch to batch, metrics from summed losses), so a run's final validation numbers come back
exactly. `overrides` change config fields for this evaluation only (dotted keys, as `--set` in
scripts/sweep.py): CERG's test streams are data.eval_batches windows long, so 10,000 windows of 100
test the nets on streams of 1M symbols, 10x the paper's, continuing the same streams. Each call
appends one record per split to <workdir>/evaluations.jsonl.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax

from ltf.checkpoint import Checkpointer
from ltf.config_lib import best_checkpoint
from ltf.data.corpora import encode_with_vocab
from ltf.data.vocab import Vocab
from ltf.runs import read_config, restore_params
from ltf.sweep import apply_overrides
from ltf.tasks.language import LanguageModelling
from ltf.tasks.registry import task_name
from ltf.train import build, evaluate, make_eval_step
from ltf.writers import json_safe

RECORDS_FILE = "evaluations.jsonl"


def pick_step(workdir: str | Path, checkpoint: str | int = "best") -> int:
    """The step of checkpoint "best" (by the run's `train.select_by` on validation: the lowest loss
    unless its config says otherwise; the latest if none was ranked), "latest", or a step number,
    with an error that lists the steps there are."""
    with Checkpointer(Path(workdir) / "checkpoints", **best_checkpoint(read_config(workdir))) as ckpt:
        steps = ckpt.all_steps()
        if not steps:
            raise FileNotFoundError(f"{workdir}: no checkpoint under checkpoints/; is it a run directory "
                                    "written by scripts/train.py?")
        if checkpoint == "best":
            return ckpt.best_step() or ckpt.latest_step()
        if checkpoint == "latest":
            return ckpt.latest_step()
        step = int(checkpoint) if str(checkpoint).isdigit() else None
        if step not in steps:
            raise ValueError(f"checkpoint {checkpoint!r}: give 'best', 'latest' or one of the steps "
                             f"kept in {workdir}/checkpoints: {sorted(steps)}")
        return step


def _task(config, workdir: Path, data_dir):
    if data_dir is None:
        task, _, _ = build(config)
        return task
    if task_name(config) != "lm":
        raise ValueError(f"--data_dir: evaluating on other files is for language models; this run's task "
                         f"is {task_name(config)!r}. Evaluate its own splits, or set the task's data "
                         "fields in a config and train or evaluate that run.")
    vocab_file = workdir / "vocab.json"
    if not vocab_file.exists():
        raise FileNotFoundError(f"{vocab_file} is missing: the run's vocabulary is needed to encode "
                                f"{data_dir} as the model was trained.")
    corpus = encode_with_vocab(Vocab.load(vocab_file), config.data.corpus, data_dir)
    return LanguageModelling(config, corpus=corpus)


def evaluate_run(workdir: str | Path, *, checkpoint: str | int = "best", splits: Sequence[str] | None = None,
                 data_dir: str | Path | None = None, max_batches: int | None = None,
                 batch_size: int | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """{split: metrics} of the run in `workdir` at `checkpoint` (see `pick_step`). `splits`: None
    for every split there is; `data_dir`: other text to read instead of the run's corpus;
    `batch_size`: the rows a language model's split is cut into (default the run's
    data.eval_batch_size). 1 reads a split as one stream with the state carried through all of it,
    as Zaremba et al.'s code scored PTB's test set (its validation used the 20 training rows).
    `overrides`: {dotted config key: value} for this evaluation (see the module docstring)."""
    workdir = Path(workdir)
    config = read_config(workdir)
    apply_overrides(config, dict(overrides or {}))
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        config.data.eval_batch_size = batch_size
    step = pick_step(workdir, checkpoint)
    task = _task(config, workdir, data_dir)
    available = tuple(task.corpus.splits) if isinstance(task, LanguageModelling) else task.eval_splits
    splits = list(available if splits is None else splits)
    unknown = [s for s in splits if s not in available]
    if unknown:
        raise ValueError(f"split {unknown[0]!r}: not in {data_dir or workdir}; there are {list(available)}")
    params, step = restore_params(workdir, task.model, config, step=step)
    eval_step = jax.jit(make_eval_step(task))
    carry = task.model.initial_state(config.data.eval_batch_size)
    results = {s: task.eval_scalars(evaluate(eval_step, params, carry, task.eval_batches(s), max_batches))
               for s in splits}
    when = datetime.datetime.now().isoformat(timespec="seconds")
    with open(workdir / RECORDS_FILE, "a", encoding="utf-8") as f:
        for split, metrics in results.items():
            record = {"time": when, "step": step, "checkpoint": str(checkpoint), "split": split,
                      "data_dir": None if data_dir is None else str(data_dir), "max_batches": max_batches,
                      "batch_size": config.data.eval_batch_size, "overrides": dict(overrides or {}), **metrics}
            f.write(json.dumps(json_safe(record)) + "\n")
    return results
