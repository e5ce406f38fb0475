"""Frequency discrimination of sine waves under three samplings (Phased LSTM, task 1).

D. Neil, M. Pfeiffer and S.-C. Liu, "Phased LSTM: Accelerating Recurrent Network Training for
Long or Event-based Sequences", NIPS 2016, section 4.1. Where the paper is terse we follow its
authors' code (github.com/dannyneil/public_plstm, freq_task.py, `SinWaveIterator`); departures
are marked "ours". Times are in ms.

Per sequence:
- period P: log-uniform on [1, 100]; class 1 when P ∈ [5, 6]. In each batch exactly B // 2
  rows are forced into class 1 with P ~ U[5, 6] (uniform, as the authors' code draws it), at
  random rows (ours; the code takes the first half).
- ours, `balanced=True` (default): the other rows draw P log-uniformly from [1, 100] without
  [5, 6], so every batch is exactly half class 1. `balanced=False` is the authors' code: the
  other rows draw from all of [1, 100] and ~2% of them land in [5, 6] (class 1 in 52% of rows).
- phase φ ~ U[0, 2π) (ours; the code subtracts a shift ~ U[0, duration], a near-uniform phase);
  value(t) = sin(2π t / P + φ).
- duration d ~ U[15, 125]; start s ~ U[0, 125 − d], so the wave lies within [0, 125].

Samplings (`SAMPLINGS`):
- "regular": t = s, s + 1, s + 2, ... < s + d (every 1 ms: 15 to 125 samples);
- "high_res": t = s, s + 0.1, ... < s + d (every 0.1 ms: 150 to 1,250 samples);
- "async": n ~ uniform integer in [15, 125] samples at sorted times s + d·U[0, 1) (the code
  draws n ~ int(U[15, 125)), i.e. 15 to 124).

Batch: inputs BxLxD float32 per step, chosen by `inputs` (`INPUTS`): "value_dt" (default, D = 2:
the value and Δt, the issue's input pair), "value" (D = 1: the value alone, as the authors' code
feeds its Phased LSTM, whose time gate reads `times`) or "value_time" (D = 2: the value and the
absolute time, as the authors' code feeds its LSTM); dt BxLx1 = Δt; times BxL;
mask BxL (1 on samples; right padding with mask 0 and zeros everywhere); target_mask BxL (1 at
the last sample); targets B int32 (the class); reset B all True. Δt_k = t_k − t_{k−1} and Δt_0 = 0
(ours: the first sample has no predecessor), so regular rows read Δt = 0, 1, 1, ... (0.1 for
high_res). Padding: to the batch's longest row (as the authors' code, which pads on the left;
we pad on the right, as the rest of ltf), or to `pad_to` steps: pass `pad_to=max_steps(sampling)`
for one fixed shape (one compilation).

The published task trained for 70 epochs of 5,000 sequences, batch 32, Adam 1e-3, 110 units; the
authors' iterator draws fresh sequences on every pass (as ltf's training batches), and the
published figure is the accuracy on 500 fresh sequences after the 70th epoch, the mean of 5
seeds (their A_Freq_Task notebook). `frequency_batches(..., num_batches=n)` gives a fixed set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ltf.data.synthetic.seeded import Batch, SeededBatches, last_step_mask, prefix_mask

SAMPLINGS = ("regular", "high_res", "async")
RESOLUTION_MS = {"regular": 1.0, "high_res": 0.1}
PERIOD_MS = (1.0, 100.0)
BAND_MS = (5.0, 6.0)            # class 1
DURATION_MS = (15.0, 125.0)
WINDOW_MS = 125.0               # every wave lies within [0, WINDOW_MS]
ASYNC_POINTS = (15, 125)        # inclusive
INPUTS = ("value_dt", "value", "value_time")  # what each step's input vector holds (docstring)


@dataclass(frozen=True)
class Waves:
    """The parameters of B waves (all arrays of shape B; times in ms)."""

    period: np.ndarray    # float64
    phase: np.ndarray     # float64, radians in [0, 2π)
    duration: np.ndarray  # float64
    start: np.ndarray     # float64
    label: np.ndarray     # int32: 1 where period ∈ BAND_MS


def _check_sampling(sampling: str) -> None:
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r}: allowed values are {SAMPLINGS}")


def max_steps(sampling: str) -> int:
    """The most samples a sequence can have: 125 (regular, async) or 1,250 (high_res)."""
    _check_sampling(sampling)
    if sampling == "async":
        return ASYNC_POINTS[1]
    return math.ceil(DURATION_MS[1] / RESOLUTION_MS[sampling] - 1e-9)


def outside_band_log_periods(u) -> np.ndarray:
    """Maps u ~ U[0, 1) to log P log-uniform on [1, 100] without [5, 6] (inverse CDF)."""
    lo, hi = np.log(PERIOD_MS)
    band_lo, band_hi = np.log(BAND_MS)
    x = lo + np.asarray(u) * ((hi - lo) - (band_hi - band_lo))
    return np.where(x < band_lo, x, x + (band_hi - band_lo))


def sample_waves(rng: np.random.Generator, batch_size: int, *, balanced: bool = True) -> Waves:
    """Periods, phases, durations, starts and labels of B waves; see the module docstring."""
    B = batch_size
    in_band_B = np.zeros(B, bool)
    in_band_B[rng.permutation(B)[: B // 2]] = True
    if balanced:
        log_period_B = outside_band_log_periods(rng.random(B))
    else:
        log_period_B = rng.uniform(*np.log(PERIOD_MS), size=B)
    period_B = np.where(in_band_B, rng.uniform(*BAND_MS, size=B), np.exp(log_period_B))
    phase_B = rng.uniform(0.0, 2 * np.pi, size=B)
    duration_B = rng.uniform(*DURATION_MS, size=B)
    start_B = rng.uniform(0.0, 1.0, size=B) * (WINDOW_MS - duration_B)
    label_B = ((period_B >= BAND_MS[0]) & (period_B <= BAND_MS[1])).astype(np.int32)
    return Waves(period_B, phase_B, duration_B, start_B, label_B)


def sample_times(rng: np.random.Generator, waves: Waves, sampling: str) -> list[np.ndarray]:
    """Per wave, its sorted sample times (float64, ms) within [start, start + duration)."""
    _check_sampling(sampling)
    times = []
    for start, duration in zip(waves.start.tolist(), waves.duration.tolist()):
        if sampling == "async":
            n = int(rng.integers(ASYNC_POINTS[0], ASYNC_POINTS[1] + 1))
            times.append(start + duration * np.sort(rng.random(n)))
        else:
            res = RESOLUTION_MS[sampling]
            n = math.ceil(duration / res - 1e-9)  # the grid points before start + duration
            times.append(start + res * np.arange(n))
    return times


def _check_inputs(inputs: str) -> None:
    if inputs not in INPUTS:
        raise ValueError(f"inputs={inputs!r}: allowed values are {INPUTS}")


def input_width(inputs: str) -> int:
    """D, the width of each step's input vector under `inputs`."""
    _check_inputs(inputs)
    return 1 if inputs == "value" else 2


def pack_batch(waves: Waves, times: list[np.ndarray], *, pad_to: int | None = None,
               inputs: str = "value_dt") -> Batch:
    """The batch dict of sampled waves, right-padded to the longest row or to `pad_to` steps."""
    _check_inputs(inputs)
    lengths_B = np.array([len(t) for t in times])
    L = int(lengths_B.max()) if pad_to is None else int(pad_to)
    if L < lengths_B.max():
        raise ValueError(f"pad_to={pad_to}: a row has {lengths_B.max()} samples; use "
                         "pad_to=max_steps(sampling) or None (the batch's longest row)")
    B = len(times)
    times_BxL = np.zeros((B, L))
    dts_BxL = np.zeros((B, L))
    for b, t in enumerate(times):
        times_BxL[b, : len(t)] = t
        dts_BxL[b, 1 : len(t)] = np.diff(t)
    mask_BxL = prefix_mask(lengths_B, L)
    phase_Bx1, period_Bx1 = waves.phase[:, None], waves.period[:, None]
    values_BxL = np.sin(2 * np.pi * times_BxL / period_Bx1 + phase_Bx1) * mask_BxL
    beside_value = {"value_dt": [dts_BxL], "value": [], "value_time": [times_BxL]}[inputs]
    return {
        "inputs": np.stack([values_BxL, *beside_value], axis=-1).astype(np.float32),
        "targets": waves.label.astype(np.int32),
        "mask": mask_BxL,
        "target_mask": last_step_mask(lengths_B, L),
        "dt": dts_BxL[..., None].astype(np.float32),
        "times": times_BxL.astype(np.float32),
        "reset": np.ones((B,), bool),
    }


def frequency_batch(rng: np.random.Generator, batch_size: int, sampling: str, *, balanced: bool = True,
                    pad_to: int | None = None, inputs: str = "value_dt") -> Batch:
    """One batch: `sample_waves`, then `sample_times`, then `pack_batch` (one rng, in that order);
    `inputs` changes only the input vector, never the waves or times drawn."""
    waves = sample_waves(rng, batch_size, balanced=balanced)
    return pack_batch(waves, sample_times(rng, waves, sampling), pad_to=pad_to, inputs=inputs)


def frequency_batches(batch_size: int, sampling: str, *, seed: int = 0, balanced: bool = True,
                      pad_to: int | None = None, num_batches: int | None = None,
                      inputs: str = "value_dt") -> SeededBatches:
    """Resumable iterator of `frequency_batch`es (batch k from rng (seed, k))."""
    _check_sampling(sampling)
    _check_inputs(inputs)
    return SeededBatches(lambda rng: frequency_batch(rng, batch_size, sampling, balanced=balanced,
                                                     pad_to=pad_to, inputs=inputs),
                         seed=seed, num_batches=num_batches)


def frequency_baseline(*, balanced: bool = True) -> dict[str, float]:
    """Majority-class scores: accuracy and cross-entropy (nats) of predicting the class prior.

    balanced: 1/2 and ln 2. Otherwise class 1 has prior p = 1/2 + 1/2 · ln(6/5) / ln(100).
    """
    p_band = math.log(BAND_MS[1] / BAND_MS[0]) / math.log(PERIOD_MS[1] / PERIOD_MS[0])
    p = 0.5 if balanced else 0.5 + 0.5 * p_band
    return {"accuracy": max(p, 1 - p), "cross_entropy": -(p * math.log(p) + (1 - p) * math.log(1 - p))}
