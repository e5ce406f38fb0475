"""Checkpoints of a run: the train state, the data position and a little metadata, through orbax.

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=3, best_metric="val_loss")
    ckpt.save(step, state, data_state=batches.get_state(), metrics={"val_loss": 1.93})
    state, data_state, meta = ckpt.restore(state)   # the latest readable step, into state's structure
    ckpt.close()

Each checkpoint is one orbax step directory, `<directory>/<step>/`, holding three items:

    state/    the pytree (orbax StandardSave)
    data/     the data pipeline position (JSON)
    meta/     step, time, metrics, a fingerprint of the state's paths/shapes/dtypes, caller's meta (JSON)

beside orbax's own `metrics/`, by which the best checkpoint is ranked.

Which checkpoints stay: the last `max_to_keep` AND the best by `best_metric`. orbax 0.12.8 says
this directly: `preservation_policy=AnyPreservationPolicy([LatestN(n), BestN(n=1)])` keeps a step
when any of the policies keeps it.

Restoring is abstract (into `jax.ShapeDtypeStruct`s built from the template), so optax states come
back as their NamedTuples. The stored paths and shapes are checked against the template first, so a
changed config fails with a `CheckpointMismatchError` naming the path and both shapes. A checkpoint
that cannot be read (truncated or missing files) raises a `CheckpointCorruptError` naming its step
directory; restoring the latest step instead falls back to the newest readable one with a
`CheckpointFallbackWarning`, and the unreadable newer step directories are then renamed
`<step>.unreadable` (so later saves of those steps do not collide with them). ltf never deletes a
checkpoint itself; orbax deletes those that the policy above lets go.

Saving is synchronous by default (`async_save=True` writes in a background thread; call
`wait_until_finished()` or `close()` before the process exits).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from ltf.writers import json_safe

PyTree = Any


class CheckpointMismatchError(ValueError):
    """The checkpoint's paths or shapes differ from the template's: the config changed."""


class CheckpointCorruptError(RuntimeError):
    """A checkpoint whose files cannot be read (truncated, missing)."""


class CheckpointFallbackWarning(UserWarning):
    """The latest checkpoint could not be read; an earlier one was restored."""


class Checkpointer:
    """Saves and restores (state, data position, metadata) under `directory`; see the module docstring."""

    def __init__(self, directory: str | Path, *, max_to_keep: int | None = 3, keep_best: bool = True,
                 best_metric: str = "val_loss", best_mode: str = "min", save_interval_steps: int = 1,
                 async_save: bool = False):
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep={max_to_keep}: keep at least the latest checkpoint (or None: all)")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode={best_mode!r}: 'min' or 'max'")
        self.directory = Path(directory).absolute()
        self.best_metric, self.best_mode = best_metric, best_mode
        worst = math.inf if best_mode == "min" else -math.inf

        def rank(metrics: Mapping[str, float]) -> float:  # checkpoints without the metric rank last
            return metrics.get(best_metric, worst)

        keep = [policies.LatestN(n=max_to_keep)]
        if keep_best:
            keep.append(policies.BestN(get_metric_fn=rank, reverse=best_mode == "min", n=1,
                                       keep_checkpoints_without_metrics=False))
        self._options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_interval_steps,
            preservation_policy=policies.AnyPreservationPolicy(keep),
            best_fn=rank, best_mode=best_mode,  # orbax writes metrics and answers best_step() only with a best_fn
            enable_async_checkpointing=async_save, create=True)
        self._manager = self._open_manager()

    # ---------------------------------------------------------------------------------- saving

    def save(self, step: int, state: PyTree, *, data_state: Mapping[str, Any],
             metrics: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
             force: bool = False) -> bool:
        """Saves a checkpoint at `step` if `save_interval_steps` divides it, or if it is the first save
        into an empty directory (orbax's InitialSavePolicy), or with `force`.

        `data_state` is the JSON-able position of the data pipeline; `metrics` rank checkpoints for
        "best" (non-finite values never rank as best); `meta` is extra JSON stored beside them.
        Returns whether a checkpoint was written; a step already on disk is left as it is (False).
        """
        step = int(step)
        if step in self._manager.all_steps() or not (force or self._manager.should_save(step)):
            return False
        try:
            data_state = json.loads(json.dumps(dict(data_state), allow_nan=False))
        except (TypeError, ValueError) as e:
            raise TypeError(f"data_state must be a JSON-able dict (the data pipeline's position): {e}") from e
        meta_json = {**json_safe(dict(meta or {}), strict=False),
                     "step": step,
                     "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "metrics": json_safe(dict(metrics or {}), strict=False),
                     "state_fingerprint": tree_fingerprint(state)}
        ranked = {k: float(v) for k, v in (metrics or {}).items() if _is_finite_number(v)}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
                                  meta=ocp.args.JsonSave(meta_json))
        return bool(self._manager.save(step, args=args, metrics=ranked, force=force))

    def wait_until_finished(self) -> None:
        """Blocks until an asynchronous save has reached the disk (a no-op when saving synchronously)."""
        self._manager.wait_until_finished()

    # ---------------------------------------------------------------------------------- finding

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the best `best_metric`, or None if no kept step has that metric."""
        step = self._manager.best_step()
        if step is None or self.best_metric not in (self._manager.metrics(step) or {}):
            return None
        return step

    def step_dir(self, step: int) -> Path:
        return self.directory / str(int(step))

    # ---------------------------------------------------------------------------------- restoring

    def restore(self, state_template: PyTree, step: int | None = None) -> tuple[PyTree, dict, dict]:
        """Restores (state, data_state, meta) of `step` (default: the latest readable step).

        `state_template` is a pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. a freshly initialised
        train state); the state comes back with its structure, dtypes and shardings.
        """
        self.wait_until_finished()
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}: check --workdir, or call "
                                    "latest_step() first to decide whether to restore")
        if step is not None:
            if int(step) not in steps:
                raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} (on disk: {steps})")
            return self._restore_step(int(step), state_template)
        unreadable: list[tuple[int, CheckpointCorruptError]] = []
        for s in reversed(steps):
            try:
                restored = self._restore_step(s, state_template)
            except CheckpointCorruptError as e:
                unreadable.append((s, e))
                continue
            for bad_step, error in unreadable:
                moved = self._move_aside(bad_step)
                warnings.warn(f"{error} -- restored step {s} instead; {self.step_dir(bad_step)} was renamed "
                              f"{moved.name} (nothing was deleted)", CheckpointFallbackWarning, stacklevel=2)
            return restored
        details = "\n".join(f"  step {s}: {e}" for s, e in unreadable)
        raise CheckpointCorruptError(f"no checkpoint in {self.directory} can be read:\n{details}\n"
                                     "Nothing was moved or deleted. If the files are intact, the cause is "
                                     "elsewhere (orbax/jax versions, memory); otherwise use a new --workdir.")

    def _restore_step(self, step: int, template: PyTree) -> tuple[PyTree, dict, dict]:
        where = self.step_dir(step)
        try:
            stored = self._manager.item_metadata(step)["state"]
            if stored is None:
                raise FileNotFoundError("state/_METADATA is missing")
            stored_shapes = {path: tuple(leaf.shape) if getattr(leaf, "shape", None) is not None else None
                             for path, leaf in _flatten(getattr(stored, "tree", stored))}
        except Exception as e:  # any failure to read a step's files means the step is damaged
            raise _corrupt(where, e, self.all_steps()) from e
        _check_matches(where, stored_shapes, {p: _stored_shape(x) for p, x in _flatten(template)})
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore(),
                                  meta=ocp.args.JsonRestore())
        try:
            restored = self._manager.restore(step, args=args)
        except Exception as e:
            raise _corrupt(where, e, self.all_steps()) from e
        return restored["state"], dict(restored["data"] or {}), dict(restored["meta"] or {})

    # ---------------------------------------------------------------------------------- damage

    def _open_manager(self) -> ocp.CheckpointManager:
        def open_() -> ocp.CheckpointManager:
            handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                        "meta": ocp.JsonCheckpointHandler()}
            return ocp.CheckpointManager(self.directory, options=self._options, item_handlers=handlers)

        try:
            return open_()
        except Exception as e:  # orbax reads every step's metrics on opening; one cut file stops it
            bad = [p for p in _step_dirs(self.directory) if not _metrics_readable(p)]
            if not bad:
                raise RuntimeError(f"cannot open the checkpoints in {self.directory}: {e}") from e
            for path in bad:
                moved = self._move_aside(int(path.name))
                warnings.warn(f"checkpoint at {path} has an unreadable metrics/metrics file; renamed it "
                              f"{moved.name} (nothing was deleted)", CheckpointFallbackWarning, stacklevel=3)
            return open_()

    def _move_aside(self, step: int) -> Path:
        """Renames a step directory to `<step>.unreadable[.k]`, out of orbax's sight."""
        source = self.step_dir(step)
        target, k = source.with_name(f"{step}.unreadable"), 1
        while target.exists():
            target, k = source.with_name(f"{step}.unreadable.{k}"), k + 1
        source.rename(target)
        if hasattr(self, "_manager"):
            self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tree_fingerprint(tree: PyTree) -> str:
    """A short hash of a pytree's paths, shapes and dtypes: equal for states of the same model."""
    items = [(p, list(_stored_shape(x)), str(getattr(x, "dtype", type(x).__name__))) for p, x in _flatten(tree)]
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def _flatten(tree: PyTree) -> list[tuple[str, Any]]:
    """(path, leaf) pairs; paths like "opt_state/0/mu/lstm_0/w_h" (dict keys, attributes and
    indices alike, as orbax's metadata tree spells NamedTuple fields as dict keys)."""
    def name(key) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    return [("/".join(name(k) for k in path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _stored_shape(leaf: Any) -> tuple[int, ...]:
    """The shape orbax stores for a leaf: typed PRNG keys are stored as their key data."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return tuple(jax.eval_shape(jax.random.key_data, leaf).shape)
    return tuple(leaf.shape) if hasattr(leaf, "shape") else tuple(np.shape(leaf))


def _check_matches(where: Path, stored: dict[str, tuple | None], expected: dict[str, tuple]) -> None:
    problems = []  # (path, sentence, short form)
    for path, shape in expected.items():
        if path not in stored:
            problems.append((path, f"has no {path}, which the model built from the config has (shape {shape})",
                             f"{path} missing"))
        elif stored[path] is not None and stored[path] != shape:
            problems.append((path, f"has {path} of shape {stored[path]}, the model built from the config "
                                   f"expects {shape}", f"{path} {stored[path]} vs {shape}"))
    for path in stored.keys() - expected.keys():
        problems.append((path, f"has {path} (shape {stored[path]}), which the model built from the config lacks",
                         f"{path} unexpected"))
    if not problems:
        return
    problems.sort(key=lambda item: (item[0].count("/"), item[0]))  # params/... before opt_state/0/mu/...
    also = ", ".join(short for _, _, short in problems[1:4])
    more = f" and {len(problems) - 4} more" if len(problems) > 4 else ""
    also = f" (also {also}{more})" if also else ""
    raise CheckpointMismatchError(f"checkpoint at {where} {problems[0][1]}{also}: the config changed since "
                                  "that run; use a new --workdir or restore the old config")


def _corrupt(where: Path, error: Exception, steps: list[int]) -> CheckpointCorruptError:
    reason = (str(error).strip().splitlines() or [""])[0][:300]
    return CheckpointCorruptError(
        f"checkpoint at {where} cannot be read ({type(error).__name__}: {reason}): its files are damaged "
        f"or incomplete. Restore another step (on disk: {steps}), or move {where.name} out of "
        f"{where.parent} so that the previous step is used")


def _is_finite_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _step_dirs(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()] if directory.exists() else []


def _metrics_readable(step_dir: Path) -> bool:
    path = step_dir / "metrics" / "metrics"
    try:
        if path.exists():
            json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False
