"""The tasks a config can name (`config.task.name`), and `make_task`, which builds one.

The registry is filled by plain imports in one direction: this module imports the task modules;
they import only `ltf.tasks.base`. A task of your own: add it to `TASKS` here, or call
`register_task("mine", Mine)` before training (a config whose `task.name` is "mine" then builds it).
"""

from __future__ import annotations

from typing import Any, Callable

from ltf.tasks import series, synthetic
from ltf.tasks.base import Task
from ltf.tasks.language import LanguageModelling

TASKS: dict[str, Callable[[Any], Task]] = {"lm": LanguageModelling, **synthetic.TASKS, **series.TASKS}


def register_task(name: str, factory: Callable[[Any], Task]) -> None:
    """Makes `config.task.name = name` build `factory(config)`."""
    TASKS[name] = factory


def task_name(config) -> str:
    """config.task.name; configs without a task section are language models."""
    return config.task.name if "task" in config else "lm"


def make_task(config) -> Task:
    name = task_name(config)
    if name not in TASKS:
        raise ValueError(f"config.task.name: {name!r} is not a task; allowed values are {tuple(TASKS)}.")
    return TASKS[name](config)
