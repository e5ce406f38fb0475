"""What a training run learns: a `Task` bundles the data, the model, the loss and the metrics,
so that one trainer (`ltf.train`) serves language modelling, the synthetic forgetting tasks and
time series alike.

    task = make_task(config)              # config.task.name: "lm" (the default) or a registered task
    task.model                            # LanguageModel or SequenceModel (pure init / apply)
    task.train_batches(seed)              # an endless iterator with get_state() / set_state()
    task.eval_batches("validation")       # a finite iterable, the same every time
    task.loss(params, carry, batch, rng)  # -> (mean loss, (new carry, sums))   inside jit / vmap
    task.eval_outputs(params, carry, batch)  # -> (new carry, outputs)          inside jit / vmap
    task.scalars(sums)                    # summed statistics -> logged scalars (host)
    task.eval_scalars([outputs, ...])     # a split's outputs -> logged scalars (host)

Every batch is a dict of arrays with at least `mask` [B, T] (1 on real steps) and `reset` [B]
(True where a row starts a new stream; the trainer zeroes those rows' carried state first).
`sums` are per-batch statistics that add up over batches (a loss sum and a count, never a mean,
so that a split's metric is not a mean of means); the trainer adds them over a logging window.
`outputs` may be anything a split's metric needs (predictions for an AUROC); by default they
are sums too. Every task reports "loss", which picks the best checkpoint.

Adding a task: write a class with these members and register a factory with `register_task`;
its config section `config.task` holds its own options (see configs/*.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltf import config_lib
from ltf.data import lm_batches, load_lm_corpus
from ltf.losses import lm_metrics, token_cross_entropy

Batch = dict[str, Any]


class Task(Protocol):
    model: Any
    eval_splits: tuple[str, ...]  # the first is evaluated every eval_every steps, the rest at the end

    def describe(self, workdir: Path) -> None: ...
    def train_batches(self, seed: int) -> Iterator[Batch]: ...
    def eval_batches(self, split: str) -> Iterable[Batch]: ...
    def loss(self, params, carry, batch: Batch, dropout_rng) -> tuple[jax.Array, tuple[Any, dict]]: ...
    def eval_outputs(self, params, carry, batch: Batch) -> tuple[Any, Any]: ...
    def scalars(self, sums: dict[str, float]) -> dict[str, float]: ...
    def eval_scalars(self, outputs: Sequence[Any]) -> dict[str, float]: ...


def add_sums(outputs: Sequence[dict]) -> dict[str, float]:
    """Per-batch sums -> their totals (float64 on the host)."""
    return {k: float(np.sum([np.asarray(o[k], np.float64) for o in outputs])) for k in outputs[0]}


class LanguageModelling:
    """Next-token prediction on a corpus (`ltf.data`): stateful truncated BPTT, cross-entropy,
    bits per character or perplexity."""

    def __init__(self, config):
        self.config = config
        d = config.data
        self.corpus = load_lm_corpus(d.corpus, data_dir=d.data_dir, level=d.level)
        self.model = config_lib.build_language_model(config.model, self.corpus.vocab.size)
        test = self.corpus.splits.get("test")
        self.eval_splits = ("validation",) + (("test",) if test is not None and len(test) > 1 else ())

    def describe(self, workdir: Path) -> None:
        self.corpus.vocab.save(workdir / "vocab.json")
        (workdir / "corpus.json").write_text(json.dumps({"name": self.corpus.name,
                                                         "description": self.corpus.description}))

    def train_batches(self, seed: int):
        d = self.config.data
        return lm_batches(self.corpus.splits["train"], d.batch_size, d.seq_len, train=True, seed=seed,
                          carry_state=d.carry_state, random_offset=d.random_offset)

    def eval_batches(self, split: str):
        d = self.config.data
        return lm_batches(self.corpus.splits[split], d.eval_batch_size, d.seq_len, train=False)

    def _sums(self, params, carry, batch, dropout_rng):
        logits, carry = self.model.apply(params, batch["inputs"], batch["dt"], batch["mask"], carry,
                                         dropout_rng=dropout_rng)
        loss_sum, count = token_cross_entropy(logits, batch["targets"], batch["mask"])
        return carry, {"loss_sum": loss_sum, "count": count}

    def loss(self, params, carry, batch, dropout_rng):
        carry, sums = self._sums(params, carry, batch, dropout_rng)
        return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), (carry, sums)

    def eval_outputs(self, params, carry, batch):
        return self._sums(params, carry, batch, None)

    def scalars(self, sums):
        return lm_metrics(sums["loss_sum"], sums["count"], self.corpus.level)

    def eval_scalars(self, outputs):
        return self.scalars(add_sums(outputs))


TASKS: dict[str, Callable[[Any], Task]] = {"lm": LanguageModelling}


def register_task(name: str, factory: Callable[[Any], Task]) -> None:
    """Makes `config.task.name = name` build `factory(config)`."""
    TASKS[name] = factory


def task_name(config) -> str:
    """config.task.name; configs without a task section are language models."""
    return config.task.name if "task" in config else "lm"


def make_task(config) -> Task:
    name = task_name(config)
    if name not in TASKS:
        import ltf.sequence_tasks  # noqa: F401  (registers the synthetic tasks)
        import ltf.series_tasks  # noqa: F401  (registers the time-series tasks)
    if name not in TASKS:
        raise ValueError(f"config.task.name: {name!r} is not a task; allowed values are {tuple(TASKS)}.")
    return TASKS[name](config)
