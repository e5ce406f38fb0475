"""Language-model batches for stateful truncated BPTT, resumable like grain's iterators.

The token stream of a split (length N) is cut into B contiguous rows of L = N // B tokens
(the last N mod B tokens are dropped), `rows_BxL = tokens[:B*L].reshape(B, L)`. Window k
starts at s = o + k·T and gives

    inputs  = rows[:, s     : s + T]
    targets = rows[:, s + 1 : s + T + 1]

so batch k+1 continues every row of batch k (`inputs[k+1][:, 0] == targets[k][:, -1]`) and a
recurrent state can be carried from one batch to the next. Every batch is a dict of numpy
arrays of fixed shapes: inputs/targets int32 BxT, mask float32 BxT (1 real, 0 padding),
dt float32 BxT (all ones for text, padding included), times float32 BxT (the position in the
row, s + 1 ... s + T, so that a cell that reads the absolute time (Phased LSTM) sees one clock
across the windows it carries its state through, not one restarting at every window), reset
bool B (True where a carried state must be reset: the first batch of an epoch, or every batch
with `carry_state=False`).

- Training (`train=True`) runs epochs forever. An epoch is one pass over the rows in full
  windows; the last incomplete window is dropped. The window offset o is 0 by default, so
  every epoch sees the same windows (as in Zaremba et al.'s PTB setup); with
  `random_offset=True` each epoch draws o uniformly from [0, T) with
  `np.random.default_rng((seed, epoch))`, so window boundaries move between epochs (the first
  o tokens of each row are then skipped in that epoch). The seed matters only for that.
- Evaluation (`train=False`) is one pass, o = 0, ceil((L-1)/T) windows, the last one padded
  (ids 0) and masked. It scores every target position of the rows exactly once: rows[:, 1:],
  i.e. B·(L-1) = B·(N//B) - B tokens; the first token of each row is only ever an input.

The iterator's position is `{"epoch": e, "batch": k}` (the next batch to give), JSON-able,
from `get_state()` and restored by `set_state()` as with grain's `DatasetIterator`, so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would.

Why not grain: a batch here is a strided slice of one in-memory array, O(1) to make and
ordered by construction; grain's record sources, shuffling and worker processes have no work
to do. Measured (PTB, B = 20, T = 35): 48k batches/s here against 18k for a grain pipeline over
the same windows, and importing grain adds 0.2-0.6 s to a script's start after jax. (PhysioNet's
stays, which are shuffled and padded, do come from grain.) The iterator keeps grain's
`get_state`/`set_state` contract, so checkpoints treat both kinds of iterator alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Batch = dict[str, np.ndarray]


class LMBatchIterator(Iterator[Batch]):
    """See the module docstring; build with `lm_batches(...)`."""

    def __init__(self, tokens, batch_size: int, seq_len: int, *, train: bool, seed: int = 0,
                 carry_state: bool = True, random_offset: bool = False):
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens: expected a 1-D integer array, got {tokens.dtype} "
                             f"{tokens.shape}")
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"data.batch_size={batch_size} and data.seq_len={seq_len} "
                             "must be positive")
        self.batch_size, self.seq_len = batch_size, seq_len
        self.train, self.seed = train, seed
        self.carry_state, self.random_offset = carry_state, random_offset
        row_len = len(tokens) // batch_size
        self.rows_BxL = tokens[: batch_size * row_len].astype(np.int32).reshape(batch_size, row_len)
        max_offset = seq_len - 1 if (train and random_offset) else 0
        need = (seq_len + 1 + max_offset) if train else 2
        if row_len < need:
            raise ValueError(
                f"data: a split of {len(tokens):,} tokens gives rows of {row_len:,} tokens for "
                f"data.batch_size={batch_size}; {'training' if train else 'evaluation'} with "
                f"data.seq_len={seq_len} needs rows of at least {need} tokens; lower "
                "data.batch_size or data.seq_len"
            )
        self._epoch, self._batch = 0, 0

    # -- layout --------------------------------------------------------------------------
    @property
    def row_len(self) -> int:
        return self.rows_BxL.shape[1]

    def offset(self, epoch: int) -> int:
        """Window offset o of an epoch (0 unless training with `random_offset`)."""
        if not (self.train and self.random_offset):
            return 0
        return int(np.random.default_rng((self.seed, epoch)).integers(self.seq_len))

    def num_batches(self, epoch: int = 0) -> int:
        """Batches in an epoch: full windows when training, all windows (padded) in eval."""
        targets = self.row_len - 1 - self.offset(epoch)
        return targets // self.seq_len if self.train else -(-targets // self.seq_len)

    def __len__(self) -> int:
        """Batches of one (eval) pass, or of epoch 0 (training: epochs repeat forever)."""
        return self.num_batches(0)

    # -- iteration -----------------------------------------------------------------------
    def __iter__(self) -> LMBatchIterator:
        return self

    def __next__(self) -> Batch:
        if self._batch >= self.num_batches(self._epoch):
            if not self.train:
                raise StopIteration
            self._epoch, self._batch = self._epoch + 1, 0
        batch = self._make(self._epoch, self._batch)
        self._batch += 1
        return batch

    def _make(self, epoch: int, k: int) -> Batch:
        B, T = self.batch_size, self.seq_len
        start = self.offset(epoch) + k * T
        n = min(T, self.row_len - 1 - start)  # < T only for the last eval window
        inputs_BxT = np.zeros((B, T), np.int32)
        targets_BxT = np.zeros((B, T), np.int32)
        mask_BxT = np.zeros((B, T), np.float32)
        inputs_BxT[:, :n] = self.rows_BxL[:, start : start + n]
        targets_BxT[:, :n] = self.rows_BxL[:, start + 1 : start + 1 + n]
        mask_BxT[:, :n] = 1.0
        return {
            "inputs": inputs_BxT,
            "targets": targets_BxT,
            "mask": mask_BxT,
            "dt": np.ones((B, T), np.float32),
            "times": np.broadcast_to(np.arange(start + 1, start + T + 1, dtype=np.float32), (B, T)).copy(),
            "reset": np.full((B,), k == 0 or not self.carry_state),
        }

    # -- checkpointing (grain's DatasetIterator API) -------------------------------------
    def get_state(self) -> dict[str, int]:
        """The position of the next batch, `{"epoch": e, "batch": k}`."""
        return {"epoch": self._epoch, "batch": self._batch}

    def set_state(self, state: dict[str, int]) -> None:
        """Moves to a position from `get_state()` (of an iterator with the same arguments)."""
        if set(state) != {"epoch", "batch"}:
            raise ValueError(f"set_state: expected keys epoch, batch; got {sorted(state)}")
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or (not self.train and epoch != 0):
            raise ValueError(f"set_state: epoch {epoch} out of range (eval has epoch 0 only)")
        if not 0 <= batch <= self.num_batches(epoch):
            raise ValueError(f"set_state: batch {batch} out of range [0, "
                             f"{self.num_batches(epoch)}] for epoch {epoch}")
        self._epoch, self._batch = epoch, batch


def lm_batches(tokens, batch_size: int, seq_len: int, *, train: bool, seed: int = 0,
               carry_state: bool = True, random_offset: bool = False) -> LMBatchIterator:
    """A resumable iterator of fixed-shape LM batches; see the module docstring."""
    return LMBatchIterator(tokens, batch_size, seq_len, train=train, seed=seed,
                           carry_state=carry_state, random_offset=random_offset)
