"""Training and evaluation of a language model: `train_and_evaluate(config, workdir)`.

  config -> corpus + batches -> LanguageModel -> optax -> jitted train step (state donated)
         -> metrics.jsonl + TensorBoard + console / whole-split evaluation / orbax checkpoints

The train state carries the recurrent state across batches (stateful truncated BPTT) and is
checkpointed with the data position, so that running the same command again resumes where the
run stopped and ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ltf import config_lib
from ltf.checkpoint import Checkpointer
from ltf.data import lm_batches, load_lm_corpus
from ltf.losses import lm_metrics, token_cross_entropy
from ltf.models import LanguageModel
from ltf.optim import make_optimizer
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
    return jax.tree.map(lambda x: jnp.where(reset_B[:, None], jnp.zeros_like(x), x), carry)


def make_train_step(model: LanguageModel, tx: optax.GradientTransformation):
    def train_step(state: TrainState, batch: dict):
        rng, dropout_rng = jax.random.split(state.rng)
        carry = _reset_where(batch["reset"], state.carry)

        def loss_fn(params):
            logits, new_carry = model.apply(params, batch["inputs"], batch["dt"], batch["mask"], carry,
                                            dropout_rng=dropout_rng)
            loss_sum, count = token_cross_entropy(logits, batch["targets"], batch["mask"])
            return loss_sum / jnp.maximum(count, 1.0), (new_carry, loss_sum, count)

        grads, (new_carry, loss_sum, count) = jax.grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss_sum": loss_sum, "count": count, "grad_norm": optax.tree.norm(grads),
                   "update_norm": optax.tree.norm(updates), "param_norm": optax.tree.norm(params)}
        new_state = TrainState(state.step + 1, params, opt_state, rng, jax.lax.stop_gradient(new_carry))
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=0)


def make_eval_step(model: LanguageModel):
    def eval_step(params, carry, batch):
        carry = _reset_where(batch["reset"], carry)
        logits, carry = model.apply(params, batch["inputs"], batch["dt"], batch["mask"], carry)
        loss_sum, count = token_cross_entropy(logits, batch["targets"], batch["mask"])
        return carry, loss_sum, count

    return jax.jit(eval_step)


def evaluate(model, eval_step, params, tokens, config, max_batches=None) -> tuple[float, float]:
    """Summed loss and token count over a whole split, carrying the state across windows."""
    batches = lm_batches(tokens, config.data.eval_batch_size, config.data.seq_len, train=False)
    carry = model.initial_state(config.data.eval_batch_size)
    loss_sum, count = 0.0, 0.0
    for k, batch in enumerate(batches):
        if max_batches is not None and k >= max_batches:
            break
        carry, batch_loss, batch_count = eval_step(params, carry, batch)
        loss_sum += float(batch_loss)
        count += float(batch_count)
    return loss_sum, count


def _logged_final_metrics(workdir: Path, step: int) -> dict:
    """The evaluation metrics a finished run logged at its last step, by split."""
    out = {}
    for record in read_metrics(workdir):
        if record["step"] == step and record["split"] != "train":
            out[record["split"]] = {k: v for k, v in record.items() if k not in ("step", "split")}
    return out


def init_state(model: LanguageModel, tx, config) -> TrainState:
    key = jax.random.PRNGKey(config.seed)
    init_key, rng = jax.random.split(key)
    params = model.init(init_key)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), rng,
                       model.initial_state(config.data.batch_size))
    # Distinct buffers for every leaf: the step donates the state, and XLA may have folded equal
    # constants (the step and optax's counts) into one buffer.
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)


def build(config):
    """Corpus, model and optimiser from a config (validated first)."""
    config_lib.validate(config)
    corpus = load_lm_corpus(config.data.corpus, data_dir=config.data.data_dir, level=config.data.level)
    model = config_lib.build_language_model(config.model, corpus.vocab.size)
    tx, schedule = make_optimizer(config.opt, config.train.steps)
    return corpus, model, tx, schedule


def train_and_evaluate(config, workdir: str | Path, *, stop_at_step: int | None = None) -> dict:
    """Trains `config.train.steps` steps (resuming from `workdir` when it holds a checkpoint).

    `stop_at_step` ends the run early, as a preemption would (for tests and time-boxed runs);
    running again resumes. Returns the final evaluation metrics.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, model, tx, schedule = build(config)
    level = corpus.level
    corpus.vocab.save(workdir / "vocab.json")
    (workdir / "corpus.json").write_text(json.dumps({"name": corpus.name, "description": corpus.description}))

    state = init_state(model, tx, config)
    train_it = lm_batches(corpus.splits["train"], config.data.batch_size, config.data.seq_len, train=True,
                          seed=config.seed, carry_state=config.data.carry_state,
                          random_offset=config.data.random_offset)
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=config.train.keep_checkpoints,
                        best_metric="val_loss", best_mode="min")
    if ckpt.latest_step() is not None:
        state, data_state, _ = ckpt.restore(state)
        train_it.set_state(data_state)
        print(f"Resumed from {ckpt.directory} at step {int(state.step)}.", flush=True)
    writer = MetricWriter(workdir, resume_step=int(state.step) if int(state.step) else None)
    writer.write_config(config)

    start = int(state.step)
    if start >= config.train.steps:
        print(f"{workdir} holds a finished run (step {start}); nothing to do.", flush=True)
        ckpt.close()
        return _logged_final_metrics(workdir, start)
    train_step, eval_step = make_train_step(model, tx), make_eval_step(model)
    last = config.train.steps if stop_at_step is None else min(stop_at_step, config.train.steps)
    progress = ProgressBar(total=config.train.steps, initial=start, enabled=config.train.progress)
    window = {"loss_sum": 0.0, "count": 0.0, "tokens": 0, "time": time.perf_counter()}
    final_metrics: dict = {}
    try:
        for step in range(start + 1, last + 1):
            batch = next(train_it)
            state, metrics = train_step(state, batch)
            loss_sum, count = float(metrics["loss_sum"]), float(metrics["count"])
            if not np.isfinite(loss_sum):
                raise NonFiniteLossError(
                    f"non-finite training loss at step {step}: stopping. The last good checkpoint "
                    f"(step {ckpt.latest_step()}) is kept in {ckpt.directory}; lower opt.lr or "
                    "opt.clip_norm and run again with a new --workdir, or resume from it.")
            window["loss_sum"] += loss_sum
            window["count"] += count
            window["tokens"] += int(batch["mask"].sum())
            if step % config.train.log_every == 0 or step == last:
                elapsed = time.perf_counter() - window["time"]
                scalars = lm_metrics(window["loss_sum"], window["count"], level)
                scalars.update({k: float(metrics[k]) for k in ("grad_norm", "update_norm", "param_norm")})
                scalars["lr"] = float(schedule(step - 1))
                scalars["tokens_per_s"] = window["tokens"] / max(elapsed, 1e-9)
                writer.write_scalars(step, scalars, split="train")
                progress.update(step, loss=scalars["loss"], tokens_per_s=scalars["tokens_per_s"])
                window = {"loss_sum": 0.0, "count": 0.0, "tokens": 0, "time": time.perf_counter()}
            is_eval = step % config.train.eval_every == 0 or step == config.train.steps
            val = None
            if is_eval:
                val_sum, val_count = evaluate(model, eval_step, state.params, corpus.splits["validation"],
                                              config, config.train.eval_max_batches)
                val = lm_metrics(val_sum, val_count, level)
                writer.write_scalars(step, val, split="validation")
                final_metrics = {"validation": val}
            if is_eval or step % config.train.checkpoint_every == 0 or step == last:
                ckpt.save(step, state, data_state=train_it.get_state(),
                          metrics=None if val is None else {"val_loss": val["loss"]}, force=True)
        if last == config.train.steps and "test" in corpus.splits and len(corpus.splits["test"]) > 1:
            test_sum, test_count = evaluate(model, eval_step, state.params, corpus.splits["test"], config,
                                            config.train.eval_max_batches)
            final_metrics["test"] = lm_metrics(test_sum, test_count, level)
            writer.write_scalars(config.train.steps, final_metrics["test"], split="test")
    finally:
        progress.close()
        ckpt.wait_until_finished()
        ckpt.close()
        writer.close()
    return final_metrics
