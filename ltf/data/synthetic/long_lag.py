"""Long-lag checks from Hochreiter & Schmidhuber (1997): the adding problem and temporal order.

S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8):
1735-1780, 1997: Experiment 4 (adding problem) and Experiments 6a/6b (temporal order). Both are
sequence-level tasks: one output, read at the last valid step (SequenceModel head="last").

Adding problem (Experiment 4), as in the paper:
- Each step is a pair (value, marker). Values ~ U[-1, 1] (the paper's choice; the U[0, 1]
  variant of later papers, e.g. Le et al. 2015, is not implemented).
- Length: an integer drawn uniformly from [T, T + T // 10] (`variable_length=False` fixes it at
  T); rows are right-padded to T + T // 10 with mask 0.
- Markers: X1's position uniform over the first 10 steps; X2's uniform over the other T//2 − 1
  of the first T//2 steps (the paper's "one of the first T/2 − 1 still unmarked pairs"). Both
  get marker 1. The first and the last step get marker −1 unless marked; every other marker
  is 0. Where the first step is marked its value is set to 0 (the paper says "X1 is set to zero
  in the rare case where the first pair got marked"; we apply it to X2 too, which can also
  land on the first step).
- Target: 0.5 + (X1 + X2) / 4, the sum scaled to [0, 1] (`scaled=False` gives X1 + X2), one
  regression target per sequence. A sequence is correct when the absolute error is < 0.04.

Temporal order (Experiments 6a and 6b), with T the minimum length (the paper's T = 100):
- 8 symbols, one-hot in the order of `TEMPORAL_SYMBOLS`: distractors a b c d, the relevant X Y,
  E (always the first step) and B (the trigger, always the last step). Every other step is a
  distractor drawn uniformly.
- Length uniform in [T, T + T // 10] (the paper's 100 to 110).
- 6a (num_relevant=2): X or Y (0.5 each) at t1 ∈ [0.1T, 0.2T] and t2 ∈ [0.5T, 0.6T];
  6b (num_relevant=3): t1 ∈ [0.1T, 0.2T], t2 ∈ [0.33T, 0.43T], t3 ∈ [0.66T, 0.76T]. At T = 100
  these are the paper's 10-20, 50-60 (6a) and 10-20, 33-43, 66-76 (6b); other T scale them.
  Positions are 0-based indices with E at index 0 (the paper does not say which base).
- Class = the order read as binary, X = 0, Y = 1, first symbol most significant: 6a XX→0 (the
  paper's Q), XY→1 (R), YX→2 (S), YY→3 (U); 6b XXX→0 (Q), XXY→1 (R), ... YYY→7. Classes are
  uniform. The paper counts a sequence correct when every output unit's error is < 0.3.

Batch keys: inputs BxTxD float32 (D = 2 or 8), mask BxT (1 on real steps, 0 on padding: the
scan carries h through padding, so the last step holds the last valid h), target_mask BxT (1
only at the last valid step: the one scored), dt BxTx1 ones, reset B all True (independent
sequences); targets Bx1 float32 (adding) or B int32 (temporal order).

Baselines for results tables: `adding_baseline` (MSE and fraction correct of always predicting
the mean 0.5, exact), `temporal_order_baseline` (chance accuracy 1/K, cross-entropy ln K).
"""

from __future__ import annotations

import math

import numpy as np

from ltf.data.synthetic.seeded import Batch, SeededBatches, last_step_mask, prefix_mask

ADDING_TOLERANCE = 0.04          # H&S 1997, Exp. 4: correct when |error| < 0.04 (scaled target)
TEMPORAL_ORDER_TOLERANCE = 0.3   # H&S 1997, Exp. 6: correct when every output's |error| < 0.3
TEMPORAL_SYMBOLS = "abcdXYEB"
NUM_TEMPORAL_SYMBOLS = len(TEMPORAL_SYMBOLS)
_X, _E, _B = TEMPORAL_SYMBOLS.index("X"), TEMPORAL_SYMBOLS.index("E"), TEMPORAL_SYMBOLS.index("B")
# Windows of the relevant symbols as fractions of the minimum length T (the paper's at T = 100).
RELEVANT_WINDOWS = {2: ((0.10, 0.20), (0.50, 0.60)),
                    3: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76))}


def _lengths(rng: np.random.Generator, batch_size: int, seq_len: int, variable_length: bool):
    """(lengths_B, padded length): uniform in [T, T + T // 10], or T."""
    extra = seq_len // 10 if variable_length else 0
    return seq_len + rng.integers(0, extra + 1, size=batch_size), seq_len + extra


def _check_seq_len(seq_len: int) -> None:
    if seq_len < 20:
        raise ValueError(f"seq_len={seq_len}: must be >= 20 (the paper uses 100 to 1,000)")


# -- adding problem ------------------------------------------------------------------------
def adding_batch(rng: np.random.Generator, batch_size: int, seq_len: int, *, scaled: bool = True,
                 variable_length: bool = True) -> Batch:
    """One batch of the adding problem: inputs BxLx2 (value, marker), targets Bx1; see the module."""
    _check_seq_len(seq_len)
    B, half = batch_size, seq_len // 2
    lengths_B, L = _lengths(rng, B, seq_len, variable_length)
    mask_BxL = prefix_mask(lengths_B, L)
    rows = np.arange(B)
    values_BxL = rng.uniform(-1.0, 1.0, size=(B, L)) * mask_BxL
    p1_B = rng.integers(0, 10, size=B)
    q_B = rng.integers(0, half - 1, size=B)
    p2_B = q_B + (q_B >= p1_B)  # uniform over [0, half) without p1
    markers_BxL = np.zeros((B, L))
    markers_BxL[:, 0] = -1.0
    markers_BxL[rows, lengths_B - 1] = -1.0
    markers_BxL[rows, p1_B] = 1.0
    markers_BxL[rows, p2_B] = 1.0
    values_BxL[:, 0] = np.where(markers_BxL[:, 0] == 1.0, 0.0, values_BxL[:, 0])
    sums_B = values_BxL[rows, p1_B] + values_BxL[rows, p2_B]
    targets_B = 0.5 + sums_B / 4.0 if scaled else sums_B
    return {
        "inputs": np.stack([values_BxL, markers_BxL], axis=-1).astype(np.float32),
        "targets": targets_B[:, None].astype(np.float32),
        "mask": mask_BxL,
        "target_mask": last_step_mask(lengths_B, L),
        "dt": np.ones((B, L, 1), np.float32),
        "reset": np.ones((B,), bool),
    }


def adding_batches(batch_size: int, seq_len: int, *, seed: int = 0, scaled: bool = True,
                   variable_length: bool = True, num_batches: int | None = None) -> SeededBatches:
    """Resumable iterator of `adding_batch`es (batch k from rng (seed, k))."""
    _check_seq_len(seq_len)
    return SeededBatches(lambda rng: adding_batch(rng, batch_size, seq_len, scaled=scaled,
                                                  variable_length=variable_length),
                         seed=seed, num_batches=num_batches)


def adding_baseline(seq_len: int, *, scaled: bool = True) -> dict[str, float]:
    """Exact scores of always predicting the mean target (0.5 scaled, 0 unscaled).

    mse: Var(target) = (Var X1 + Var X2) / 16, where Var Xi = (1 − P(Xi on step 0)) / 3, since
    a value on step 0 is zeroed; P(X1 on 0) = 1/10, P(X2 on 0) = (9/10) / (T//2 − 1).
    accuracy: P(|target − mean| < 0.04) = P(|X1 + X2| < 0.16): 0.16 when one of them is zeroed,
    else 0.16 − 0.16²/4 (the sum of two U[-1, 1] is triangular on [-2, 2]).
    """
    _check_seq_len(seq_len)
    p1, p2 = 0.1, 0.9 / (seq_len // 2 - 1)
    var_sum = ((1 - p1) + (1 - p2)) / 3.0
    a = 4 * ADDING_TOLERANCE
    accuracy = (p1 + p2) * a + (1 - p1 - p2) * (a - a * a / 4)
    return {"mse": var_sum / 16.0 if scaled else var_sum, "accuracy": accuracy}


# -- temporal order ------------------------------------------------------------------------
def relevant_windows(seq_len: int, num_relevant: int = 2) -> list[tuple[int, int]]:
    """The inclusive index ranges of the relevant symbols for minimum length `seq_len`."""
    if num_relevant not in RELEVANT_WINDOWS:
        raise ValueError(f"num_relevant={num_relevant}: allowed values are 2 (6a) and 3 (6b)")
    return [(int(round(lo * seq_len)), int(round(hi * seq_len))) for lo, hi in RELEVANT_WINDOWS[num_relevant]]


def temporal_order_batch(rng: np.random.Generator, batch_size: int, seq_len: int = 100, *,
                         num_relevant: int = 2, variable_length: bool = True) -> Batch:
    """One batch of temporal order: inputs BxLx8 one-hot, targets B int32 in [0, 2**num_relevant)."""
    _check_seq_len(seq_len)
    windows = relevant_windows(seq_len, num_relevant)
    B = batch_size
    lengths_B, L = _lengths(rng, B, seq_len, variable_length)
    rows = np.arange(B)
    symbols_BxL = rng.integers(0, 4, size=(B, L))  # distractors a, b, c, d
    symbols_BxL[:, 0] = _E
    symbols_BxL[rows, lengths_B - 1] = _B
    bits_BxK = rng.integers(0, 2, size=(B, num_relevant))  # 0 = X, 1 = Y
    for k, (lo, hi) in enumerate(windows):
        symbols_BxL[rows, rng.integers(lo, hi + 1, size=B)] = _X + bits_BxK[:, k]
    classes_B = bits_BxK @ (2 ** np.arange(num_relevant - 1, -1, -1))
    mask_BxL = prefix_mask(lengths_B, L)
    return {
        "inputs": np.eye(NUM_TEMPORAL_SYMBOLS, dtype=np.float32)[symbols_BxL] * mask_BxL[..., None],
        "targets": classes_B.astype(np.int32),
        "mask": mask_BxL,
        "target_mask": last_step_mask(lengths_B, L),
        "dt": np.ones((B, L, 1), np.float32),
        "reset": np.ones((B,), bool),
    }


def temporal_order_batches(batch_size: int, seq_len: int = 100, *, num_relevant: int = 2,
                           seed: int = 0, variable_length: bool = True,
                           num_batches: int | None = None) -> SeededBatches:
    """Resumable iterator of `temporal_order_batch`es (batch k from rng (seed, k))."""
    _check_seq_len(seq_len)
    relevant_windows(seq_len, num_relevant)  # validates num_relevant now, not at the first batch
    return SeededBatches(lambda rng: temporal_order_batch(rng, batch_size, seq_len, num_relevant=num_relevant,
                                                          variable_length=variable_length),
                         seed=seed, num_batches=num_batches)


def temporal_order_baseline(num_relevant: int = 2) -> dict[str, float]:
    """Chance scores with uniform classes: accuracy 1/K and cross-entropy ln K (nats), K = 2**n."""
    relevant_windows(100, num_relevant)
    num_classes = 2 ** num_relevant
    return {"accuracy": 1.0 / num_classes, "cross_entropy": math.log(num_classes)}
