"""Training and evaluation: `train_and_evaluate(config, workdir)`, `train_seeds(config, {seed: workdir})`.

  config -> Task (data, model, loss, metrics; ltf.tasks) -> optax -> jitted train step (state donated)
         -> metrics.jsonl + TensorBoard + console / whole-split evaluation / orbax checkpoints

The train state carries the recurrent state across batches (stateful truncated BPTT; rows with
`reset` start from zeros) and is checkpointed with the data position, so that running the same
command again resumes where the run stopped and ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ltf import config_lib, parallel
from ltf.checkpoint import Checkpointer
from ltf.models import gate_bias_mask
from ltf.optim import make_optimizer
from ltf.tasks.base import Task
from ltf.tasks.registry import make_task
from ltf.writers import MetricWriter, ProgressBar, read_metrics


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32[2], a raw key so that it checkpoints as a plain array
    carry: Any  # the recurrent state carried to the next batch


class NonFiniteLossError(RuntimeError):
    pass


def _reset_where(reset_B, carry):
    """Zeroes the carried state of the rows that start a new stream."""
    return jax.tree.map(lambda x: jnp.where(reset_B.reshape(-1, *[1] * (x.ndim - 1)), jnp.zeros_like(x), x), carry)


def make_train_step(task: Task, tx: optax.GradientTransformation):
    """(state, batch) -> (state, metrics), not jitted: `Seeds.compile` jits it, vmapped over seeds."""

    def train_step(state: TrainState, batch: dict):
        rng, dropout_rng = jax.random.split(state.rng)
        carry = _reset_where(batch["reset"], state.carry)
        grads, (new_carry, sums) = jax.grad(task.loss, has_aux=True)(state.params, carry, batch, dropout_rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"sums": sums, "grad_norm": optax.tree.norm(grads),
                   "update_norm": optax.tree.norm(updates), "param_norm": optax.tree.norm(params)}
        new_state = TrainState(state.step + 1, params, opt_state, rng, jax.lax.stop_gradient(new_carry))
        return new_state, metrics

    return train_step


def make_eval_step(task: Task, outputs=None):
    """(params, carry, batch) -> (carry, outputs), not jitted. `outputs`: the task's method that
    gives them, (params, carry, batch) -> (carry, outputs); default `task.eval_outputs`
    (`ltf.ensemble` passes `task.prediction`)."""
    outputs = outputs or task.eval_outputs

    def eval_step(params, carry, batch):
        return outputs(params, _reset_where(batch["reset"], carry), batch)

    return eval_step


def evaluate(eval_step, params, initial_carry, batches, max_batches=None, place=lambda batch: batch) -> list:
    """The outputs of every batch of a split (host arrays), carrying the state across batches.

    With K seeds trained at once, `eval_step` is vmapped and each output has a leading axis [K].
    `place` puts a host batch where the step wants it (split over devices: `ltf.parallel`)."""
    carry, outputs = initial_carry, []
    for k, batch in enumerate(batches):
        if max_batches is not None and k >= max_batches:
            break
        carry, out = eval_step(params, carry, place(batch))
        outputs.append(parallel.to_host(out))  # per-row outputs gathered from every host
    return outputs


def _logged_final_metrics(workdir: Path, step: int) -> dict:
    """The evaluation metrics a finished run logged at its last step, by split."""
    out = {}
    for record in read_metrics(workdir):
        if record["step"] == step and record["split"] != "train":
            out[record["split"]] = {k: v for k, v in record.items() if k not in ("step", "split")}
    return out


def init_state(model, tx, config) -> TrainState:
    key = jax.random.PRNGKey(config.seed)
    init_key, rng = jax.random.split(key)
    params = model.init(init_key)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), rng,
                       model.initial_state(config.data.batch_size))
    # Distinct buffers for every leaf: the step donates the state, and XLA may have folded equal
    # constants (the step and optax's counts) into one buffer.
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)


def build(config):
    """Task (data, model, loss) and optimiser from a config (validated first)."""
    config_lib.validate(config)
    task = make_task(config)
    tx, schedule = run_optimizer(config)
    return task, tx, schedule


def run_optimizer(config):
    """(optax optimiser, schedule) of a run: `config.opt`, with the gate biases stepped as pairs
    where the model has two per gate (`model.two_gate_biases`)."""
    pairs = gate_bias_mask if config.model.get("two_gate_biases", False) else None
    return make_optimizer(config.opt, config.train.steps, pairs=pairs)


class Seeds:
    """K models of one config, one per seed, as one pytree with a leading axis [K, ...].

    K = 1 is the plain run: no axis, no vmap, so that a single run compiles exactly as before."""

    def __init__(self, seeds: Sequence[int]):
        self.seeds = list(seeds)
        self.stacked = len(self.seeds) > 1

    def stack(self, trees: Sequence[Any]) -> Any:
        return jax.tree.map(lambda *xs: jnp.stack(xs), *trees) if self.stacked else trees[0]

    def stack_numpy(self, batches: Sequence[dict]) -> dict:
        return {k: np.stack([b[k] for b in batches]) for k in batches[0]} if self.stacked else batches[0]

    def member(self, tree: Any, k: int) -> Any:
        return jax.tree.map(lambda x: x[k], tree) if self.stacked else tree

    def compile(self, fn, in_axes=0, **jit_kwargs):
        """jit(vmap(fn)) over the seeds' axis; jit(fn) for one seed."""
        return jax.jit(jax.vmap(fn, in_axes=in_axes) if self.stacked else fn, **jit_kwargs)


def seed_config(config, seed: int):
    """A copy of `config` with `seed` set: what a separate run of that seed trains with."""
    config = copy.deepcopy(config)
    config.seed = int(seed)
    return config


def train_and_evaluate(config, workdir: str | Path, *, stop_at_step: int | None = None) -> dict:
    """Trains `config.train.steps` steps (resuming from `workdir` when it holds a checkpoint).

    `stop_at_step` ends the run early, as a preemption would (for tests and time-boxed runs);
    running again resumes. Returns the final evaluation metrics.
    """
    return train_seeds(config, {config.seed: workdir}, stop_at_step=stop_at_step)[config.seed]


def train_seeds(config, workdirs: Mapping[int, str | Path], *, stop_at_step: int | None = None) -> dict:
    """Trains one config under several seeds at once: {seed: workdir} -> {seed: final metrics}.

    One compiled step updates K models: the train state (parameters, optimiser state, dropout key,
    carried state) and the batches get a leading seed axis and the step is `jax.vmap`-ed over it.
    Each seed keeps everything a separate run has: its own data order (`task.train_batches(seed)`),
    initialisation and dropout keys from `seed`, and in its own workdir the config (with its seed),
    metrics, TensorBoard events and checkpoints. A seed's workdir is thus the workdir of
    `train_and_evaluate(seed_config(config, seed), workdir)`, up to float rounding, and either
    can resume it. Resuming K seeds at once needs their latest checkpoints at one step.
    """
    mesh = parallel.make_mesh(config)  # first: a multi-host run must initialise before any computation
    parallel.check_same_workdirs(workdirs.values())
    seeds = Seeds(list(workdirs))
    batch_axis = 1 if seeds.stacked else 0
    workdirs = {s: Path(w) for s, w in workdirs.items()}
    configs = {s: seed_config(config, s) for s in seeds.seeds}
    task, tx, schedule = build(config)
    model = task.model
    first_host = jax.process_index() == 0  # a multi-host run writes its files once, from process 0
    for workdir in workdirs.values():
        workdir.mkdir(parents=True, exist_ok=True)
        if first_host:
            task.describe(workdir)

    train_its = {s: task.train_batches(s) for s in seeds.seeds}
    select_by, select_mode, test_at = config_lib.selection(config)
    ranking = config_lib.best_checkpoint(config)
    ckpts = {s: Checkpointer(workdirs[s] / "checkpoints", max_to_keep=config.train.keep_checkpoints, **ranking)
             for s in seeds.seeds}
    states = {s: init_state(model, tx, configs[s]) for s in seeds.seeds}
    if jax.process_count() > 1:
        parallel.check_same_data({"train": next(task.train_batches(seeds.seeds[0])),
                                  **{split: next(iter(task.eval_batches(split))) for split in task.eval_splits}},
                                 states[seeds.seeds[0]].params,
                                 task.data_fingerprint() if hasattr(task, "data_fingerprint") else None)
    resume_at = {s: ckpts[s].latest_step() for s in seeds.seeds}
    if len(set(resume_at.values())) > 1:
        for ckpt in ckpts.values():
            ckpt.close()
        raise ValueError(
            f"the seeds' workdirs hold checkpoints at different steps {resume_at}: seeds trained at once "
            "must resume from one step. Resume the ones behind separately (scripts/train.py per seed), "
            "then train the rest together.")
    for s in seeds.seeds:
        if resume_at[s] is not None:
            states[s], data_state, _ = ckpts[s].restore(states[s])
            train_its[s].set_state(data_state)
            print(f"Resumed from {ckpts[s].directory} at step {int(states[s].step)}.", flush=True)
    start = int(states[seeds.seeds[0]].step)
    prefix = (lambda s: f"seed={s} ") if seeds.stacked else (lambda s: "")
    writers = {s: MetricWriter(workdirs[s], resume_step=start or None, console_prefix=prefix(s), enabled=first_host)
               for s in seeds.seeds}
    for s in seeds.seeds:
        writers[s].write_config(configs[s])

    if start >= config.train.steps:
        for s in seeds.seeds:
            print(f"{workdirs[s]} holds a finished run (step {start}); nothing to do.", flush=True)
            ckpts[s].close()
            writers[s].close()
        return {s: _logged_final_metrics(workdirs[s], start) for s in seeds.seeds}

    state = parallel.place_state(seeds.stack([states[s] for s in seeds.seeds]), mesh, batch_axis)
    del states
    train_step = seeds.compile(make_train_step(task, tx), donate_argnums=0)
    eval_step = seeds.compile(make_eval_step(task), in_axes=(0, 0, None))
    eval_carry = parallel.place_carry(
        seeds.stack([model.initial_state(config.data.eval_batch_size)] * len(seeds.seeds)), mesh, batch_axis)
    place = lambda batch: parallel.place_batch(batch, mesh, batch_axis)  # noqa: E731
    place_eval = lambda batch: parallel.place_batch(batch, mesh, 0)  # noqa: E731  (one batch for all seeds)
    last = config.train.steps if stop_at_step is None else min(stop_at_step, config.train.steps)
    progress = ProgressBar(total=config.train.steps, initial=start, enabled=config.train.progress and first_host,
                           desc=f"train {len(seeds.seeds)} seeds" if seeds.stacked else "train")
    K = len(seeds.seeds)
    new_window = lambda: {"sums": None, "tokens": np.zeros(K), "time": time.perf_counter()}  # noqa: E731
    window = new_window()
    final_metrics: dict = {s: {} for s in seeds.seeds}

    def evaluate_split(split: str, step: int, params=None, checkpoint_steps=None) -> None:
        outputs = evaluate(eval_step, state.params if params is None else params, eval_carry,
                           task.eval_batches(split), config.train.eval_max_batches, place_eval)
        for k, s in enumerate(seeds.seeds):
            values = task.eval_scalars([seeds.member(o, k) for o in outputs])
            if checkpoint_steps is not None:  # evaluated with the parameters of this step
                values["checkpoint_step"] = checkpoint_steps[k]
            writers[s].write_scalars(step, values, split=split)
            final_metrics[s][split] = values

    def selected(values: dict) -> dict:
        """The checkpoint's ranking metric, from the first evaluation split's scalars."""
        if select_by not in values:
            raise ValueError(f"config.train.select_by={select_by!r}: not a metric of the "
                             f"{task.eval_splits[0]} split; its metrics are {sorted(values)}.")
        return {ranking["best_metric"]: values[select_by]}

    def best_params():
        """(params, steps): each seed's parameters at its best checkpoint (the latest if none was
        ranked), stacked and placed as the train state's, and those checkpoints' steps."""
        best, steps = [], []
        for k, s in enumerate(seeds.seeds):
            ckpts[s].wait_until_finished()
            step = ckpts[s].best_step() or ckpts[s].latest_step()
            restored, _, _ = ckpts[s].restore(seeds.member(state, k), step=step)
            print(f"{prefix(s)}the other splits at the best checkpoint: step {step} (by "
                  f"{task.eval_splits[0]} {select_by}, {select_mode}).", flush=True)
            best.append(restored)
            steps.append(step)
        return parallel.place_state(seeds.stack(best), mesh, batch_axis).params, steps

    try:
        for step in range(start + 1, last + 1):
            batches = [next(train_its[s]) for s in seeds.seeds]
            state, metrics = train_step(state, place(seeds.stack_numpy(batches)))
            metrics = jax.tree.map(lambda x: np.reshape(np.asarray(x, np.float64), -1), metrics)
            bad = [s for k, s in enumerate(seeds.seeds)
                   if not all(np.isfinite(v[k]) for v in metrics["sums"].values())]
            if bad:
                where = ", ".join(f"{ckpts[s].directory} (step {ckpts[s].latest_step()})" for s in bad)
                raise NonFiniteLossError(
                    f"non-finite training loss at step {step}" + (f" for seeds {bad}" if seeds.stacked else "")
                    + f": stopping. The last good checkpoint is kept in {where}; lower opt.lr or "
                    "opt.clip_norm and run again with a new --workdir, or resume from it.")
            sums = metrics["sums"]
            window["sums"] = sums if window["sums"] is None else jax.tree.map(np.add, window["sums"], sums)
            window["tokens"] += [int(b["mask"].sum()) for b in batches]
            if step % config.train.log_every == 0 or step == last:
                elapsed = max(time.perf_counter() - window["time"], 1e-9)
                losses = []
                for k, s in enumerate(seeds.seeds):
                    scalars = task.scalars({n: float(v[k]) for n, v in window["sums"].items()})
                    scalars.update({n: float(metrics[n][k]) for n in ("grad_norm", "update_norm", "param_norm")})
                    scalars["lr"] = float(schedule(step - 1))
                    scalars["tokens_per_s"] = window["tokens"][k] / elapsed  # this seed's share of the step
                    writers[s].write_scalars(step, scalars, split="train")
                    losses.append(scalars["loss"])
                progress.update(step, loss=float(np.mean(losses)), tokens_per_s=window["tokens"].sum() / elapsed)
                window = new_window()
            is_eval = step % config.train.eval_every == 0 or step == config.train.steps
            if is_eval:
                evaluate_split(task.eval_splits[0], step)
            if is_eval or step % config.train.checkpoint_every == 0 or step == last:
                for k, s in enumerate(seeds.seeds):
                    val = final_metrics[s].get(task.eval_splits[0]) if is_eval else None
                    ckpts[s].save(step, seeds.member(state, k), data_state=train_its[s].get_state(),
                                  metrics=None if val is None else selected(val), force=True)
        if last == config.train.steps and len(task.eval_splits) > 1:
            params, steps = best_params() if test_at == "best" else (None, None)
            for split in task.eval_splits[1:]:
                evaluate_split(split, config.train.steps, params, steps)
    finally:
        progress.close()
        for s in seeds.seeds:
            ckpts[s].wait_until_finished()
            ckpts[s].close()
            writers[s].close()
    return final_metrics
