"""What the synthetic generators (reber, long_lag, frequency) share: seeded, resumable batches.

Every batch is a dict of numpy arrays with the keys the rest of ltf uses (see
`ltf.data.lm_batches` and `ltf.models.SequenceModel`):

    inputs   BxTxD float32  one-hot symbols or real values
    targets  per task       BxTx7 multi-hot (Reber), Bx1 float32 (adding), B int32 (classes)
    mask     BxT   float32  1 on real steps, 0 on padding; the scan skips mask-0 steps (carrying
                            h and c through them), so it must not be 0 on real steps
    dt       BxTx1 float32  time since the previous input (1.0 for regularly spaced symbols)
    reset    B     bool     True where a row starts a new stream: zero the carried state first

and, where the task needs them:

    target_mask  BxT float32  1 only at the step whose output is scored (the last valid step of
                              a sequence-level task; with head="last" it is implied by `mask`)
    reset_T      BxT bool     reber.erg_batches: True at the steps where a new string starts,
                              for the external-reset arm (resets inside a window)
    times        BxT float32  frequency: absolute time of each sample (ms)

Iterators keep grain's `get_state()` / `set_state()` contract (JSON-able positions), so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would. Use different
seeds for training and evaluation data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

Batch = dict[str, np.ndarray]


class SeededBatches(Iterator[Batch]):
    """Independent batches: batch k is `make_batch(np.random.default_rng((seed, k)))`.

    Every batch is a pure function of (seed, k), so the position `{"batch": k}` resumes exactly
    and costs nothing to restore. `num_batches=None` runs forever (training); an int gives a
    fixed set (a test set of `num_batches` batches) that raises StopIteration at its end.
    """

    def __init__(self, make_batch: Callable[[np.random.Generator], Batch], *, seed: int = 0,
                 num_batches: int | None = None):
        if seed < 0:
            raise ValueError(f"seed={seed}: must be >= 0 (it seeds numpy's SeedSequence)")
        if num_batches is not None and num_batches < 0:
            raise ValueError(f"num_batches={num_batches}: must be >= 0 or None")
        self.make_batch, self.seed, self.num_batches = make_batch, seed, num_batches
        self._batch = 0

    def __iter__(self) -> SeededBatches:
        return self

    def __next__(self) -> Batch:
        if self.num_batches is not None and self._batch >= self.num_batches:
            raise StopIteration
        batch = self.make_batch(np.random.default_rng((self.seed, self._batch)))
        self._batch += 1
        return batch

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless iterator (num_batches=None) has no length")
        return self.num_batches

    def get_state(self) -> dict[str, int]:
        """The position of the next batch, `{"batch": k}`."""
        return {"batch": self._batch}

    def set_state(self, state: dict[str, int]) -> None:
        """Moves to a position from `get_state()` (of an iterator with the same arguments)."""
        if set(state) != {"batch"}:
            raise ValueError(f"set_state: expected the key batch; got {sorted(state)}")
        batch = int(state["batch"])
        if batch < 0 or (self.num_batches is not None and batch > self.num_batches):
            raise ValueError(f"set_state: batch {batch} out of range")
        self._batch = batch


def last_step_mask(lengths_B, num_steps: int) -> np.ndarray:
    """target_mask_BxT: 1.0 at step lengths[b] - 1 of each row, 0 elsewhere."""
    lengths_B = np.asarray(lengths_B)
    return (np.arange(num_steps)[None, :] == lengths_B[:, None] - 1).astype(np.float32)


def prefix_mask(lengths_B, num_steps: int) -> np.ndarray:
    """mask_BxT: 1.0 on the first lengths[b] steps of each row (right padding)."""
    lengths_B = np.asarray(lengths_B)
    return (np.arange(num_steps)[None, :] < lengths_B[:, None]).astype(np.float32)
