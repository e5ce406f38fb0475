"""What a training run learns: a `Task` bundles the data, the model, the loss and the metrics,
so that one trainer (`ltf.train`) serves language modelling, the synthetic forgetting tasks and
time series alike.

    task = make_task(config)              # ltf.tasks.registry; config.task.name, "lm" by default
    task.model                            # LanguageModel or SequenceModel (pure init / apply)
    task.train_batches(seed)              # an endless iterator with get_state() / set_state()
    task.eval_batches("validation")       # a finite iterable, the same every time
    task.loss(params, carry, batch, rng)  # -> (mean loss, (new carry, sums))   inside jit / vmap
    task.eval_outputs(params, carry, batch)  # -> (new carry, outputs)          inside jit / vmap
    task.scalars(sums)                    # summed statistics -> logged scalars (host)
    task.eval_scalars([outputs, ...])     # a split's outputs -> logged scalars (host)

A task may also have `data_fingerprint() -> str`, a digest of all of its data, which the hosts
of a multi-host run compare at the start (`ltf.parallel.check_same_data`; without it they compare
the first batch of each split).

A task may also have `prediction(params, carry, batch) -> (carry, pred)` and `outputs_from(pred,
batch) -> outputs`: a per-example quantity that can be averaged between models, and the outputs
that eval_outputs would give from it. `ltf.ensemble` scores the mean prediction of several runs
with them (the time-series tasks have them).

Every batch is a dict of arrays with at least `mask` [B, T] (1 on real steps) and `reset` [B]
(True where a row starts a new stream; the trainer zeroes those rows' carried state first).
`sums` are per-batch statistics that add up over batches (a loss sum and a count, never a mean,
so that a split's metric is not a mean of means); the trainer adds them over a logging window.
`outputs` may be anything a split's metric needs (predictions for an AUROC); by default they
are sums too. Every task reports "loss", which picks the best checkpoint.

Adding a task: write a class with these members (language.py, synthetic.py and series.py are
examples) and add it to `ltf.tasks.registry.TASKS`, or call `register_task(name, factory)` from
your own code; its config section `config.task` holds its own options (see configs/*.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

import jax
import numpy as np

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
