"""What a run writes as it goes: metrics (JSONL + TensorBoard + console), its config, a progress bar.

    writer = MetricWriter(workdir)
    writer.write_config(config.to_dict())                  # workdir/config.json
    writer.write_scalars(step, {"loss": 2.3, "lr": 1e-3})  # workdir/metrics.jsonl, workdir/tensorboard/
    rows = read_metrics(workdir, split="validation")       # back as a list of dicts

A workdir after a run:

    config.json       the resolved config, pretty-printed, sorted keys
    metrics.jsonl     one JSON object a line: {"step": 100, "split": "train", "loss": 2.31, ...}
    tensorboard/      event files (tensorboardX, no TensorFlow); tags "<split>/<name>"

Conventions of metrics.jsonl, which other tools (jq, pandas, notebooks) read:

- Non-finite values are written as the strings "nan", "inf" and "-inf", never as the bare NaN /
  Infinity tokens that strict JSON parsers reject. `float()` parses those strings, and
  `read_metrics` turns them back into floats.
- Every line is flushed when written, so a crashed run keeps what it logged; a line cut short by
  the crash is skipped on reading.
- A resumed run appends to the same file and may log again steps that the crashed run had already
  logged after its last checkpoint. Nothing is ever rewritten; `read_metrics` resolves it: within a
  split, a record whose step is not after the previous one marks a resume, so the records of that
  split at later steps (the abandoned stretch) are dropped, and records at the same step are merged,
  the later values winning. The result has one record per (step, split), steps increasing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tqdm

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
TENSORBOARD_DIR = "tensorboard"

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def json_safe(value: Any, *, strict: bool = True) -> Any:
    """`value` as plain JSON types: numpy/jax scalars and 0-d arrays become Python numbers,
    tuples lists, non-finite floats the strings "nan"/"inf"/"-inf".

    Anything else raises a TypeError when `strict`, or becomes `str(value)` when not.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isfinite(x):
            return x
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, strict=strict) for v in value]
    if hasattr(value, "shape") and hasattr(value, "dtype") and np.shape(value) == ():
        return json_safe(np.asarray(value).item(), strict=strict)  # jax/numpy 0-d arrays
    if strict:
        raise TypeError(f"{value!r} (type {type(value).__name__}) is not a JSON value")
    return str(value)


def _from_json(value: Any) -> Any:
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value


class MetricWriter:
    """Writes scalars to workdir/metrics.jsonl, TensorBoard and the console."""

    def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True, console: bool = True,
                 resume_step: int | None = None, console_prefix: str = "", enabled: bool = True):
        """`resume_step`: the checkpoint step a resumed run starts from. TensorBoard then hides
        what the interrupted run logged after it (tensorboardX `purge_step`). `console_prefix`
        starts each console line (e.g. "seed=1 " when several runs share a console). `enabled`
        False writes nothing anywhere (the hosts of a multi-host run but process 0)."""
        self.enabled = enabled
        self.workdir = Path(workdir)
        self._tb = None
        if not enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console = console
        self.console_prefix = console_prefix
        path = self.workdir / METRICS_FILE
        self._jsonl = open(path, "a", encoding="utf-8")
        if self._jsonl.tell() > 0 and not _ends_with_newline(path):
            self._jsonl.write("\n")  # a crashed run left half a line: keep it on its own line
        if tensorboard:
            import tensorboardX  # imported here: a notebook reading metrics does not need it

            purge = None if resume_step is None else int(resume_step) + 1
            self._tb = tensorboardX.SummaryWriter(str(self.workdir / TENSORBOARD_DIR), purge_step=purge)

    def write_scalars(self, step: int, scalars: Mapping[str, Any], *, split: str = "train") -> None:
        """Appends one record {"step", "split", **scalars}; scalars are numbers (host floats best:
        a jax array here waits for the device)."""
        values = {}
        for name, value in scalars.items():
            if name in ("step", "split"):
                raise ValueError(f"scalar name {name!r} is reserved for the record's own field")
            try:
                values[name] = float(value) if not isinstance(value, (int, np.integer)) else int(value)
            except (TypeError, ValueError) as e:
                raise TypeError(f"scalar {name!r} at step {step} is {value!r}, not a number") from e
        record = {"step": int(step), "split": split, **values}
        if not self.enabled:
            return
        self._jsonl.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{split}/{name}", value, int(step))
            self._tb.flush()
        if self.console:
            tqdm.tqdm.write(f"{self.console_prefix}step {int(step)} {split}: " + "  ".join(
                f"{name}={_format(value)}" for name, value in values.items()))

    def write_config(self, config_dict: Mapping[str, Any]) -> None:
        """Writes the resolved config to workdir/config.json (replacing it whole, never half-written)."""
        if not self.enabled:
            return
        if hasattr(config_dict, "to_dict"):  # an ml_collections ConfigDict
            config_dict = config_dict.to_dict()
        text = json.dumps(json_safe(config_dict, strict=False), indent=2, sort_keys=True, allow_nan=False)
        path = self.workdir / CONFIG_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def close(self) -> None:
        if self.enabled and not self._jsonl.closed:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(workdir: str | os.PathLike, split: str | None = None) -> list[dict]:
    """The records of workdir/metrics.jsonl, resolved as the module docstring says: one record per
    (step, split), the latest run's values winning, the abandoned stretch of a resumed run dropped.
    Non-finite values come back as float nan/inf. A missing file gives []."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records: list[dict | None] = []
    stacks: dict[str, list[int]] = {}  # split -> indices into records, steps increasing
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number != len(lines):  # the last line of a crashed run is expected; others are not
                warnings.warn(f"{path}:{number} is not valid JSON (a crashed run's cut line?); skipped")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            warnings.warn(f"{path}:{number} is not a metrics record (no integer step); skipped")
            continue
        record = {k: _from_json(v) for k, v in record.items()}
        stack = stacks.setdefault(record.get("split"), [])
        while stack and records[stack[-1]]["step"] > record["step"]:
            records[stack.pop()] = None  # logged by a run that was later resumed from an earlier step
        if stack and records[stack[-1]]["step"] == record["step"]:
            records[stack[-1]].update(record)
            continue
        stack.append(len(records))
        records.append(record)
    return [r for r in records if r is not None and (split is None or r.get("split") == split)]


class ProgressBar:
    """A tqdm bar over training steps, with loss and tokens/s in its postfix.

    Shown only on a terminal (and when `enabled`), so that CI logs and log files get no bar, and
    redrawn at most every `mininterval` seconds. `update(step, ...)` takes the absolute step.
    """

    def __init__(self, total: int, *, initial: int = 0, enabled: bool = True, desc: str = "train",
                 mininterval: float = 1.0, file=None):
        file = sys.stderr if file is None else file
        on_terminal = hasattr(file, "isatty") and file.isatty()
        self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc, unit="step", file=file,
                              disable=not (enabled and on_terminal), mininterval=mininterval,
                              dynamic_ncols=True, smoothing=0.1)
        self._postfix: dict[str, str] = {}

    @property
    def disabled(self) -> bool:
        return self._bar.disable

    def update(self, step: int, *, loss: float | None = None, tokens_per_s: float | None = None,
               **postfix: Any) -> None:
        if self._bar.disable:
            return
        if loss is not None:
            postfix["loss"] = f"{float(loss):.4f}"
        if tokens_per_s is not None:
            postfix["tok/s"] = f"{float(tokens_per_s):,.0f}"
        if postfix:
            self._postfix.update(postfix)  # the last value of each, also of those not given this time
            self._bar.set_postfix(self._postfix, refresh=False)
        self._bar.update(int(step) - self._bar.n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _format(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if value == 0 or 1e-3 <= abs(value) < 1e5 or not math.isfinite(value) else f"{value:.3e}"


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
