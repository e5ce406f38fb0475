"""A trained run read back from its workdir, for analysis after training:

    run = load_run("runs/cerg/cell=lstm,seed=3")       # its latest checkpoint (or step=...)
    run.task.model.apply(run.params, ...)              # the task rebuilt from the run's config.json

Works for every task (`ltf.tasks.registry.TASKS`) and for a seed trained beside others in one program
(`scripts/train.py --seeds`): each seed's workdir holds its own config and checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import ml_collections

from ltf.checkpoint import Checkpointer


class Run(NamedTuple):
    config: ml_collections.ConfigDict  # the resolved config the run was trained with
    task: Any  # ltf.tasks.base.Task, built from that config
    params: Any  # the model's parameters at `step`
    step: int


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved config a run was trained with (its workdir's config.json)."""
    config_file = Path(workdir) / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{workdir}: no config.json; give a run directory written by scripts/train.py "
                                "(with --seeds, one seed's directory).")
    return ml_collections.ConfigDict(json.loads(config_file.read_text()))


def restore_params(workdir: str | Path, model, config, *, step: int | None = None) -> tuple[Any, int]:
    """(params, step) of the run's checkpoint `step` (None: the latest). The train state built from
    `model` and `config` is the template that the checkpoint fills, so a checkpoint that does not
    match fails with `ltf.checkpoint.CheckpointMismatchError`."""
    from ltf.train import init_state, run_optimizer  # the template of what was saved

    with Checkpointer(Path(workdir) / "checkpoints") as ckpt:
        steps = ckpt.all_steps()
        if not steps:
            raise FileNotFoundError(f"{workdir}: no checkpoint under checkpoints/ yet.")
        if step is not None and step not in steps:
            raise FileNotFoundError(f"{workdir}: no checkpoint at step {step}; there are {sorted(steps)}.")
        tx, _ = run_optimizer(config)
        state, _, _ = ckpt.restore(init_state(model, tx, config), step=step)
    return state.params, int(state.step)


def load_run(workdir: str | Path, *, step: int | None = None) -> Run:
    """The run in `workdir` at checkpoint `step` (None: the latest), its task rebuilt from its config."""
    from ltf.train import build

    config = read_config(workdir)
    task, _, _ = build(config)
    params, step = restore_params(workdir, task.model, config, step=step)
    return Run(config, task, params, step)
