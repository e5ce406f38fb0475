"""The Reber grammar, the embedded Reber grammar (ERG) and the continual ERG stream (CERG).

Gers, Schmidhuber & Cummins (2000), "Learning to Forget: Continual Prediction with LSTM",
Neural Computation 12(10): 2451-2471 (the grammar after Reber 1967 and Cleeremans,
Servan-Schreiber & McClelland 1989).

Reber grammar: seven symbols, one-hot in the order of `SYMBOLS` = B T P S X V E. A string is B,
a walk through nodes 0..5, then E; at a node with two arcs each is taken with probability 0.5:

    B -> 0    0: T->1 P->2    1: S->1 X->3    2: T->2 V->4    3: X->2 S->5    4: P->3 V->5    5: E

(e.g. BTXSE, BPVVE, BTSSXXTVVE; 8 symbols on average).

ERG: B, then T or P (probability 0.5 each), then a Reber string, then the same T or P again,
then E (e.g. B T BTXSE T E; 12 symbols on average). Predicting the symbol after the inner E
needs the second symbol, held across the whole inner string: the long-lag part of the task.

CERG: ERG strings concatenated into one stream with no reset and no marker between strings.

Targets: the input at step t is the symbol x_t; the target is the multi-hot set of the symbols
the grammar allows at t+1 given x_0..x_t, computed by walking the grammar's graph (never read
off the sample): {T, P} after the outer B, {B} after the branch symbol, the Reber sets inside,
{T} or {P} (the branch symbol) after the inner E, {E} after it, and {B} after the outer E (the
next string of the stream). The outputs are 7 sigmoids (multi-label).

Scoring, as in the paper: a step is correct when every output is within 0.49 of its 0/1 target
(`step_correct`); a network's performance on a stream is the length of its error-free prefix
(`error_free_length`, or `ErrorFreeLength` window by window). The paper's protocol: a training
stream stops at the first error; after each training stream the net is tested on 10 streams of
100,000 symbols; "perfect" = all 10 test streams error-free, "good" = mean error-free length
over 1,000, "bad" = the rest (`rate_run`).

Batches (`cerg_batches`, `erg_batches`): B rows, each its own endless CERG stream; window k
gives steps [k·T, (k+1)·T) of every row, so batch k+1 continues batch k and a carried state
flows on. inputs/targets BxTx7 float32, mask BxT ones, dt BxTx1 ones (regular symbols).

- `cerg_batches`: `reset` is True in the first batch only: the net is never reset, it has to
  learn to reset itself (the forget gate's job).
- `erg_batches`: the same streams (same seed, same symbols) for the "LSTM with external reset"
  arm, plus `reset_T` BxT bool, True at every step whose input is the outer B of a new string.
  Strings do not align with windows, so the trainer must reset inside the scan: before step t,
  `carry = where(reset_T[:, t], 0, carry)` for (c, h) of every layer (one line in the scan's
  step; `ltf.rnn` has no such input yet). `reset` is `reset_T[:, 0]`, so a trainer that only
  honours `reset` resets at window starts and misses the resets inside windows.

Row b's stream is a pure function of (seed, b): it is made of chunks of 64 ERG strings, chunk c
sampled with `np.random.default_rng((seed, b, c))`, so a row's stream does not depend on the
batch size, and the position (per row: chunk and offset in it) is a few JSON-able ints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ltf.data.synthetic.seeded import Batch

SYMBOLS = "BTPSXVE"
NUM_SYMBOLS = len(SYMBOLS)
CORRECT_TOLERANCE = 0.49  # Gers et al. (2000): every output's absolute error below 0.49
STRINGS_PER_CHUNK = 64

_ID = {s: i for i, s in enumerate(SYMBOLS)}

# The Reber graph: node -> its arcs (symbol, next node). "in" waits for the B, "out" follows E.
REBER_GRAPH = {
    "in": (("B", 0),),
    0: (("T", 1), ("P", 2)),
    1: (("S", 1), ("X", 3)),
    2: (("T", 2), ("V", 4)),
    3: (("X", 2), ("S", 5)),
    4: (("P", 3), ("V", 5)),
    5: (("E", "out"),),
}


def _compile(embedded: bool):
    """The grammar as a DFA over a stream of strings: (arcs, allowed_Sx7).

    State 0 waits for a string's first B; the state after a string's last E is state 0 again,
    so one walk covers a whole stream. arcs[s] lists (symbol id, next state); allowed_Sx7[s] is
    the multi-hot set of symbols that state s accepts.
    """
    graph: dict = {}
    if embedded:
        # Outer states are strings, inner Reber nodes are (branch, node).
        graph["start"] = (("B", "branch"),)
        graph["branch"] = (("T", ("T", "in")), ("P", ("P", "in")))
        for branch in "TP":
            for node, node_arcs in REBER_GRAPH.items():
                graph[(branch, node)] = tuple(
                    (sym, (branch, "close") if nxt == "out" else (branch, nxt)) for sym, nxt in node_arcs)
            graph[(branch, "close")] = ((branch, "last"),)  # one arc: the branch symbol again
        graph["last"] = (("E", "start"),)
    else:
        graph = {("start" if node == "in" else node): tuple(
            (sym, "start" if nxt in ("in", "out") else nxt) for sym, nxt in node_arcs)
            for node, node_arcs in REBER_GRAPH.items()}
    names = ["start"] + [name for name in graph if name != "start"]
    index = {name: i for i, name in enumerate(names)}
    arcs = [tuple((_ID[sym], index[nxt]) for sym, nxt in graph[name]) for name in names]
    allowed_Sx7 = np.zeros((len(names), NUM_SYMBOLS), np.float32)
    for s, state_arcs in enumerate(arcs):
        allowed_Sx7[s, [sym for sym, _ in state_arcs]] = 1.0
    return arcs, allowed_Sx7


_GRAMMARS = {embedded: _compile(embedded) for embedded in (False, True)}


# -- strings -------------------------------------------------------------------------------
def encode(string: str) -> np.ndarray:
    """Symbol ids (int32, N) of a string over SYMBOLS."""
    try:
        return np.array([_ID[s] for s in string], np.int32)
    except KeyError as e:
        raise ValueError(f"{string!r}: symbol {e} is not one of {SYMBOLS}") from None


def decode(ids) -> str:
    """The string of symbol ids (any shape flattened)."""
    return "".join(SYMBOLS[i] for i in np.asarray(ids).ravel())


def one_hot(ids) -> np.ndarray:
    """ids_... int -> one-hot float32 ...x7."""
    return np.eye(NUM_SYMBOLS, dtype=np.float32)[np.asarray(ids)]


def _sample_ids(rng: np.random.Generator, embedded: bool) -> list[int]:
    """One string as symbol ids: a walk from the start state back to it, uniform over arcs."""
    arcs = _GRAMMARS[embedded][0]
    ids, state = [], 0
    while True:
        options = arcs[state]
        sym, state = options[0] if len(options) == 1 else options[int(rng.random() < 0.5)]
        ids.append(sym)
        if state == 0:
            return ids


def sample_reber_string(rng: np.random.Generator) -> str:
    """One Reber string, e.g. "BTSSXXTVVE"."""
    return decode(_sample_ids(rng, embedded=False))


def sample_erg_string(rng: np.random.Generator) -> str:
    """One embedded Reber string, e.g. "BTBTXSETE" (same T or P in second and next-to-last place)."""
    return decode(_sample_ids(rng, embedded=True))


def next_symbol_sets(symbols: str | Sequence[int] | np.ndarray, *, embedded: bool = True) -> np.ndarray:
    """The true next-symbol sets of a stream: targets_Nx7 float32 multi-hot.

    `symbols` (a string or ids) must start at a string's first B and may run over several
    concatenated strings (a stream; after a string's E the set is {B}). Row t is the set of
    symbols the grammar allows after symbols[: t + 1], from its graph. Raises ValueError at the
    first symbol the grammar does not allow there.
    """
    ids = encode(symbols) if isinstance(symbols, str) else np.asarray(symbols).ravel()
    arcs, allowed_Sx7 = _GRAMMARS[embedded]
    states = np.empty(len(ids), np.int64)
    state = 0
    for t, sym in enumerate(ids.tolist()):
        for arc_sym, nxt in arcs[state]:
            if arc_sym == sym:
                state = nxt
                break
        else:
            raise ValueError(f"{'ERG' if embedded else 'Reber'} grammar: symbol {t} "
                             f"({SYMBOLS[sym] if 0 <= sym < NUM_SYMBOLS else sym}) is not allowed "
                             f"after {decode(ids[max(0, t - 12):t])!r}")
        states[t] = state
    return allowed_Sx7[states]


# -- scoring -------------------------------------------------------------------------------
def step_correct(outputs_BxTx7, targets_BxTx7, tolerance: float = CORRECT_TOLERANCE) -> np.ndarray:
    """correct_BxT bool: every output within `tolerance` (0.49) of the multi-hot target."""
    err = np.abs(np.asarray(outputs_BxTx7, np.float64) - np.asarray(targets_BxTx7, np.float64))
    return np.all(err < tolerance, axis=-1)


def error_free_length(correct_BxT) -> np.ndarray:
    """Steps before the first incorrect one, along the last axis (T when all are correct)."""
    correct = np.asarray(correct_BxT, bool)
    num_steps = correct.shape[-1]
    return np.where(correct.all(axis=-1), num_steps, np.argmin(correct, axis=-1)).astype(np.int64)


class ErrorFreeLength:
    """The error-free prefix length of B streams scored window by window.

        tracker = ErrorFreeLength(10)
        for batch in windows:           # 10 test streams, e.g. 100 windows of 1,000 symbols
            tracker.update(step_correct(outputs, batch["targets"]))
            if tracker.failed.all(): break
        tracker.lengths                 # int64 B
    """

    def __init__(self, batch_size: int):
        self.lengths = np.zeros(batch_size, np.int64)
        self.failed = np.zeros(batch_size, bool)

    def update(self, correct_BxT) -> np.ndarray:
        """Adds a window's per-step correctness; returns the lengths so far."""
        correct = np.asarray(correct_BxT, bool)
        n_B = error_free_length(correct)
        self.lengths += np.where(self.failed, 0, n_B)
        self.failed |= n_B < correct.shape[-1]
        return self.lengths


def rate_run(lengths, stream_length: int = 100_000, good_length: float = 1_000) -> str:
    """The paper's rating of one network from its test streams' error-free lengths.

    "perfect": every test stream error-free (length == stream_length); "good": mean error-free
    length over `good_length` (1,000); "bad": the rest.
    """
    lengths = np.asarray(lengths)
    if np.all(lengths >= stream_length):
        return "perfect"
    return "good" if lengths.mean() > good_length else "bad"


# -- batches -------------------------------------------------------------------------------
class ErgStreamBatches(Iterator[Batch]):
    """Windows of B endless CERG streams; build with `cerg_batches` or `erg_batches`."""

    def __init__(self, batch_size: int, seq_len: int, *, seed: int = 0, external_reset: bool = False):
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size={batch_size}, seq_len={seq_len}: must be positive")
        if seed < 0:
            raise ValueError(f"seed={seed}: must be >= 0")
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.external_reset = external_reset
        self._batch = 0
        self._chunk = [0] * batch_size   # per row: the chunk holding the next step
        self._offset = [0] * batch_size  # and the step's offset in it
        self._cache: dict[int, tuple] = {}  # row -> (chunk, ids, targets, starts)

    def chunk(self, row: int, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids_N int32, targets_Nx7, starts_N bool) of one row's chunk of 64 ERG strings."""
        cached = self._cache.get(row)
        if cached is None or cached[0] != chunk:
            rng = np.random.default_rng((self.seed, row, chunk))
            strings = [_sample_ids(rng, embedded=True) for _ in range(STRINGS_PER_CHUNK)]
            ids = np.fromiter((s for string in strings for s in string), np.int32)
            starts = np.zeros(len(ids), bool)
            starts[np.cumsum([0] + [len(s) for s in strings[:-1]])] = True
            cached = (chunk, ids, next_symbol_sets(ids), starts)
            self._cache[row] = cached
        return cached[1:]

    def __iter__(self) -> ErgStreamBatches:
        return self

    def __next__(self) -> Batch:
        B, T = self.batch_size, self.seq_len
        ids_BxT = np.empty((B, T), np.int32)
        targets_BxTx7 = np.empty((B, T, NUM_SYMBOLS), np.float32)
        starts_BxT = np.empty((B, T), bool)
        for b in range(B):
            t = 0
            while t < T:
                ids, targets, starts = self.chunk(b, self._chunk[b])
                o = self._offset[b]
                n = min(T - t, len(ids) - o)
                ids_BxT[b, t:t + n] = ids[o:o + n]
                targets_BxTx7[b, t:t + n] = targets[o:o + n]
                starts_BxT[b, t:t + n] = starts[o:o + n]
                t, self._offset[b] = t + n, o + n
                if self._offset[b] == len(ids):
                    self._chunk[b], self._offset[b] = self._chunk[b] + 1, 0
        batch = {
            "inputs": one_hot(ids_BxT),
            "targets": targets_BxTx7,
            "mask": np.ones((B, T), np.float32),
            "dt": np.ones((B, T, 1), np.float32),
            "reset": np.full((B,), self._batch == 0),
        }
        if self.external_reset:
            batch["reset_T"] = starts_BxT
            batch["reset"] = starts_BxT[:, 0].copy()  # True in the first batch: rows start with B
        self._batch += 1
        return batch

    # -- checkpointing (grain's DatasetIterator API) -------------------------------------
    def get_state(self) -> dict[str, int | list[int]]:
        """`{"batch": k, "chunk": [B ints], "offset": [B ints]}`: JSON-able."""
        return {"batch": self._batch, "chunk": list(self._chunk), "offset": list(self._offset)}

    def set_state(self, state: dict) -> None:
        """Moves to a position from `get_state()` (of an iterator with the same arguments)."""
        if set(state) != {"batch", "chunk", "offset"}:
            raise ValueError(f"set_state: expected keys batch, chunk, offset; got {sorted(state)}")
        chunk, offset = [int(c) for c in state["chunk"]], [int(o) for o in state["offset"]]
        if len(chunk) != self.batch_size or len(offset) != self.batch_size:
            raise ValueError(f"set_state: chunk and offset need {self.batch_size} entries (batch_size)")
        if int(state["batch"]) < 0 or min(chunk) < 0 or min(offset) < 0:
            raise ValueError(f"set_state: negative position in {state}")
        self._batch, self._chunk, self._offset = int(state["batch"]), chunk, offset


def cerg_batches(batch_size: int, seq_len: int, *, seed: int = 0) -> ErgStreamBatches:
    """CERG windows [B, T]: every row one continual stream, `reset` only in the first batch."""
    return ErgStreamBatches(batch_size, seq_len, seed=seed, external_reset=False)


def erg_batches(batch_size: int, seq_len: int, *, seed: int = 0) -> ErgStreamBatches:
    """The same streams with `reset_T` [B, T] at string starts (the external-reset arm)."""
    return ErgStreamBatches(batch_size, seq_len, seed=seed, external_reset=True)
