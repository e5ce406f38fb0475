"""The synthetic forgetting tasks (`ltf.data.synthetic`) as training tasks (`ltf.tasks.base.Task`).

    config.task.name   data (ltf.data.synthetic)                     head       objective
    cerg               continual embedded Reber grammar       per step   multi-label (7 sigmoids)
    erg                the same streams, the state reset at   per step   multi-label
                       every string start (external reset)
    adding             adding problem (1997, Exp. 4)          last step  regression (MSE)
    temporal_order     temporal order (1997, Exp. 6a/6b)      last step  classes (softmax)
    frequency          frequency discrimination (Phased LSTM)  last step  classes (softmax)

Training data are drawn from the run's seed; the evaluation splits from fixed seeds
(EVAL_SEEDS), so every run and every arm is scored on the same sequences. Metrics:

    multi-label  loss (binary cross-entropy per step, summed over the 7 outputs), step_accuracy
                 (a step is correct when every output is within 0.49 of its target: Gers et al.
                 2000), and on evaluation streams error_free_length (mean over streams of the
                 symbols before the first error; the whole stream when none) and perfect (the
                 fraction of streams without an error)
    regression   loss = mse, and accuracy (|error| < task.tolerance; 0.04 in the 1997 paper)
    classes      loss (cross-entropy), accuracy
"""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ltf import config_lib
from ltf.data.synthetic import frequency, long_lag, reber
from ltf.tasks.base import add_sums
from ltf.writers import json_safe

EVAL_SEEDS = {"validation": 2**31 - 2, "test": 2**31 - 1}  # never a training seed in practice
OBJECTIVES = ("multilabel", "regression", "classes")


class SequenceTask:
    """A generator of batches + SequenceModel + an objective; see the module docstring."""

    eval_splits = ("validation", "test")

    def __init__(self, config, *, d_values: int, d_out: int, head: str, objective: str, tolerance: float = 0.0):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective {objective!r}: allowed values are {OBJECTIVES}")
        self.config, self.objective, self.tolerance = config, objective, tolerance
        model_cfg = config.model
        if model_cfg.head != head:
            raise ValueError(f"config.model.head: {model_cfg.head!r}, but task {config.task.name!r} is scored "
                             f"with head {head!r}; set --config.model.head={head}.")
        self.model = config_lib.build_sequence_model(model_cfg, d_values, d_out)

    # -- data: subclasses give `batches(batch_size, seed, num_batches)` -------------------------

    def describe(self, workdir: Path) -> None:
        import json

        (workdir / "task.json").write_text(json.dumps(json_safe(self.config.task.to_dict(), strict=False)))

    def train_batches(self, seed: int):
        return self.batches(self.config.data.batch_size, seed=seed, num_batches=None)

    def eval_batches(self, split: str):
        d = self.config.data
        return self.batches(d.eval_batch_size, seed=EVAL_SEEDS[split], num_batches=d.eval_batches)

    # -- loss and metrics -------------------------------------------------------------------------

    def _outputs(self, params, carry, batch, dropout_rng):
        obs = batch.get("obs_mask")
        return self.model.apply(params, batch["inputs"], batch["dt"], batch["mask"], obs, carry,
                                dropout_rng=dropout_rng, resets_BxT=batch.get("reset_T"),
                                times_BxT=batch.get("times"))

    def _sums(self, outputs, batch):
        if self.objective == "multilabel":  # outputs, targets: B x T x L
            mask_BxT = batch["mask"]
            losses = optax.sigmoid_binary_cross_entropy(outputs, batch["targets"]).sum(-1)
            errors = jnp.abs(jax.nn.sigmoid(outputs) - batch["targets"])
            correct_BxT = jnp.all(errors < reber.CORRECT_TOLERANCE, axis=-1).astype(outputs.dtype)
            return {"loss_sum": jnp.sum(losses * mask_BxT), "count": jnp.sum(mask_BxT),
                    "correct": jnp.sum(correct_BxT * mask_BxT)}, correct_BxT
        if self.objective == "regression":  # outputs, targets: B x O
            errors = outputs - batch["targets"]
            correct = jnp.all(jnp.abs(errors) < self.tolerance, axis=-1)
            count = jnp.asarray(errors.shape[0], outputs.dtype)
            return {"loss_sum": jnp.sum(jnp.mean(errors**2, axis=-1)), "count": count,
                    "correct": jnp.sum(correct.astype(outputs.dtype))}, None
        losses = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])  # B x C, B
        correct = (jnp.argmax(outputs, axis=-1) == batch["targets"]).astype(outputs.dtype)
        return {"loss_sum": jnp.sum(losses), "count": jnp.asarray(losses.shape[0], outputs.dtype),
                "correct": jnp.sum(correct)}, None

    def loss(self, params, carry, batch, dropout_rng):
        outputs, carry = self._outputs(params, carry, batch, dropout_rng)
        sums, _ = self._sums(outputs, batch)
        return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), (carry, sums)

    def eval_outputs(self, params, carry, batch):
        outputs, carry = self._outputs(params, carry, batch, None)
        sums, correct_BxT = self._sums(outputs, batch)
        if correct_BxT is not None:  # kept per step, in order: the error-free length of each stream
            sums = {**sums, "correct_BxT": correct_BxT, "mask_BxT": batch["mask"]}
        return carry, sums

    def scalars(self, sums):
        count = max(sums["count"], 1.0)
        name = {"multilabel": "step_accuracy"}.get(self.objective, "accuracy")
        out = {"loss": sums["loss_sum"] / count, name: sums["correct"] / count}
        if self.objective == "regression":
            out["mse"] = out["loss"]
        return out

    def eval_scalars(self, outputs):
        out = self.scalars(add_sums([{k: v for k, v in o.items() if not k.endswith("_BxT")} for o in outputs]))
        if outputs and "correct_BxT" in outputs[0]:
            correct = np.concatenate([o["correct_BxT"] for o in outputs], axis=1)
            valid = np.concatenate([o["mask_BxT"] for o in outputs], axis=1) > 0
            lengths = reber.error_free_length(np.where(valid, correct > 0, True))
            total = valid.sum(axis=1)
            lengths = np.minimum(lengths, total)
            out["error_free_length"] = float(np.mean(lengths))
            out["perfect"] = float(np.mean(lengths >= total))
        return out


class RestartingStreams:
    """Training streams that start afresh (zero state, a new stream) every `every` windows.

    The paper trains on streams that end at the first error and then start anew from a reset
    net; a model trained on one endless stream never sees a zero state after its first window,
    and then fails on the first symbols of a test stream, which starts from zeros. Episode e of
    run seed s draws its streams from seed s * EPISODES + e. Position: {"episode", "inner"}."""

    EPISODES = 100_000

    def __init__(self, make_stream, every: int, seed: int):
        self.make_stream, self.every, self.seed = make_stream, every, seed
        self._episode, self._inner = 0, make_stream(seed * self.EPISODES)

    def __iter__(self):
        return self

    def __next__(self):
        if self.every and self._inner.get_state()["batch"] >= self.every:
            self._episode += 1
            self._inner = self.make_stream(self.seed * self.EPISODES + self._episode)
        return next(self._inner)  # its first batch has reset = True

    def get_state(self):
        return {"episode": self._episode, "inner": self._inner.get_state()}

    def set_state(self, state):
        self._episode = int(state["episode"])
        self._inner = self.make_stream(self.seed * self.EPISODES + self._episode)
        self._inner.set_state(state["inner"])


class CERG(SequenceTask):
    """Continual embedded Reber grammar: each row one stream, the state carried across windows of
    data.seq_len symbols and never reset within a stream; training streams restart every
    task.restart_every windows (0: one endless stream); evaluation streams of
    data.eval_batches x data.seq_len symbols (the paper: 10 streams of 100,000)."""

    def __init__(self, config):
        super().__init__(config, d_values=len(reber.SYMBOLS), d_out=len(reber.SYMBOLS), head="per_step",
                         objective="multilabel")

    stream = staticmethod(reber.cerg_batches)

    def batches(self, batch_size, *, seed, num_batches):
        make = lambda s: self.stream(batch_size, self.config.data.seq_len, seed=s)  # noqa: E731
        if num_batches is not None:  # evaluation: one stream per row, from its start
            return itertools.islice(make(seed), num_batches)
        return RestartingStreams(make, self.config.task.restart_every, seed)


class ERG(CERG):
    """The paper's first row: the CERG streams, but the state is reset at every string start
    (`reset_T`, inside windows too), so the net never has to learn to forget by itself."""

    stream = staticmethod(reber.erg_batches)


class Adding(SequenceTask):
    def __init__(self, config):
        super().__init__(config, d_values=2, d_out=1, head="last", objective="regression",
                         tolerance=long_lag.ADDING_TOLERANCE)

    def batches(self, batch_size, *, seed, num_batches):
        t = self.config.task
        return long_lag.adding_batches(batch_size, self.config.data.seq_len, seed=seed, scaled=t.scaled,
                                       variable_length=t.variable_length, num_batches=num_batches)


class TemporalOrder(SequenceTask):
    def __init__(self, config):
        n = config.task.num_relevant
        super().__init__(config, d_values=8, d_out=2**n, head="last", objective="classes")

    def batches(self, batch_size, *, seed, num_batches):
        t = self.config.task
        return long_lag.temporal_order_batches(batch_size, self.config.data.seq_len, seed=seed,
                                               num_relevant=t.num_relevant, variable_length=t.variable_length,
                                               num_batches=num_batches)


class Frequency(SequenceTask):
    def __init__(self, config):
        if config.task.sampling not in frequency.SAMPLINGS:
            raise ValueError(f"config.task.sampling: {config.task.sampling!r}; allowed values are "
                             f"{frequency.SAMPLINGS}.")
        self.inputs = config.task.get("inputs", "value_dt")
        if self.inputs not in frequency.INPUTS:
            raise ValueError(f"config.task.inputs: {self.inputs!r}; allowed values are {frequency.INPUTS} "
                             "(ltf.data.synthetic.frequency).")
        super().__init__(config, d_values=frequency.input_width(self.inputs), d_out=2, head="last",
                         objective="classes")

    def batches(self, batch_size, *, seed, num_batches):
        task = self.config.task
        return frequency.frequency_batches(batch_size, task.sampling, seed=seed, balanced=task.balanced,
                                           pad_to=frequency.max_steps(task.sampling), num_batches=num_batches,
                                           inputs=self.inputs)


# config.task.name -> task; ltf.tasks.registry collects these
TASKS = {"cerg": CERG, "erg": ERG, "adding": Adding, "temporal_order": TemporalOrder, "frequency": Frequency}
