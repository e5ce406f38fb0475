"""Forecasting windows over one series: chronological splits, train-only normalisation, batches.

A series here is an `Observed` (ltf.data.series.irregular): observation times and values (what a
model may see) beside the regular grid y_0..y_{N-1} (NaN where missing) that holds the targets.
Times are in grid steps (the series' sampling interval), so Δt = 1 on a regular series.

Splits. The grid is cut chronologically by `fractions` (train, validation, test):
train = [0, n_train), validation = [n_train, n_val_end), test = [n_val_end, N), with
n_train = floor(N·f_train) and n_val_end = floor(N·(f_train + f_val)).

Windows. A window starting at grid step s has the look-back [s, s+L) and the forecast origin
o = s + L; its targets are y_o .. y_{o+H-1}. The rule against leakage:

- a window belongs to the split that holds all H of its targets, and only then (a window whose
  targets straddle a boundary is in no split), so no training target comes from validation or
  test time; the look-back may reach back into earlier splits (those values are the known past
  at forecast time), never forward;
- the inputs are the observations at times t <= o - 1, the last look-back step; an off-grid
  observation in (o - 1, o) is excluded because its interpolated value uses y_o (see
  ltf.data.series.irregular.poisson);
- a window with no observed target (co2's gaps) is dropped; one with no observed input is kept,
  so a regular series and its irregular versions have the same windows and targets;
- the normaliser (one mean and std) comes from the observed training grid values y_0..y_{n_train-1}
  only, and is the same for a series and its irregular versions.

Layouts of the look-back (both give `inputs` [B,L',1], `mask` [B,L'], `dt` [B,L',1]):

- "grid" (L' = L): one step per grid point, the value where observed, else 0, with mask 0;
  needs observations on the grid (regular, co2, subset).
- "events" (L' = max_events): only the observations of the look-back, in time order, padded at
  the end (mask 0); the layout for off-grid (Poisson) times. Windows with more observations
  than `max_events` keep the latest.

Δt at an observation is its time minus the previous observation's time, that observation
possibly before the window (the past is known); before the first observation of the series the
reference is time -1, so a regular series has Δt = 1 everywhere. In the grid layout an
unobserved step gets the time since the last observation too (GRU-D's δ), and padding gets 0.

Batches are dicts of fixed-shape numpy arrays: `inputs` float32 [B,L',1] (normalised),
`mask` float32 [B,L'] (1 = an observation: the step a recurrent model updates on), `obs_mask`
float32 [B,L',1], `dt` float32 [B,L',1], `times` float32 [B,L'] (grid step of each input),
`targets` float32 [B,H] (normalised, 0 where missing), `target_mask` float32 [B,H],
`loc`, `scale` float32 [B,1] (original = normalised · scale + loc, broadcasting over H),
`example_mask` float32 [B] (0 for the padding rows of the last evaluation batch), `reset` bool [B].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from ltf.data.series.irregular import Observed, as_observed

Batch = dict[str, np.ndarray]
SPLITS = ("train", "validation", "test")
LAYOUTS = ("grid", "events")
# Keys whose padding rows are zeroed so that padding never counts in a loss or metric.
MASK_KEYS = ("mask", "obs_mask", "target_mask", "static_mask")


# -- normalisation ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """z = (x - mean) / std per feature (scalars for a univariate series, [D] for D features)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values, axis=0) -> Normaliser:
        """NaN-aware mean/std over `axis`; a feature with no finite value gets (0, 1), a
        constant one std 1 (so that normalising never divides by zero)."""
        x = np.asarray(values, np.float64)
        count = np.sum(np.isfinite(x), axis=axis)
        total = np.nansum(x, axis=axis)
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        centred = np.where(np.isfinite(x), x - np.expand_dims(mean, axis), 0.0)
        var = np.sum(centred**2, axis=axis) / np.maximum(count, 1)
        std = np.sqrt(var)
        return cls(mean=np.asarray(mean), std=np.asarray(np.where(std > 0, std, 1.0)))

    def apply(self, x):
        return (np.asarray(x, np.float64) - self.mean) / self.std

    def invert(self, z):
        return np.asarray(z, np.float64) * self.std + self.mean


# -- splits -------------------------------------------------------------------------------


def split_bounds(n: int, fractions=(0.7, 0.1, 0.2)) -> tuple[int, int]:
    """(n_train, n_val_end) of a chronological split of n grid steps; see the module docstring."""
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions={tuple(fractions)}: need (train, validation, test) >= 0 "
                         "summing to 1")
    # round() first so that 0.7 + 0.1 = 0.7999... does not lose a step to floating point
    return int(np.floor(round(n * f[0], 9))), int(np.floor(round(n * (f[0] + f[1]), 9)))


def window_starts(n: int, bounds: tuple[int, int], split: str, L: int, H: int,
                  stride: int = 1) -> np.ndarray:
    """Starts s of the windows whose H targets [s+L, s+L+H) all lie in `split`; inputs may
    reach back into earlier splits but not before step 0."""
    lo, hi = {"train": (0, bounds[0]), "validation": bounds, "test": (bounds[1], n)}[split]
    first, last = max(lo - L, 0), hi - L - H
    return np.arange(first, last + 1, stride, dtype=np.int64) if last >= first else \
        np.zeros(0, np.int64)


# -- batches ------------------------------------------------------------------------------


class Batches(Iterator[Batch]):
    """Fixed-shape batches of examples 0..n-1, resumable like grain's iterators.

    `take(idx_B)` makes the batch of the examples idx_B. Training (`train=True`) runs epochs
    forever, each a permutation from `np.random.default_rng((seed, epoch))`, in full batches
    (the last incomplete one is dropped). Evaluation is one pass in order, ceil(n/B) batches,
    the last padded with copies of example 0 whose `example_mask` and masks (MASK_KEYS) are 0.
    Position: `get_state()` -> {"epoch", "batch"}, restored by `set_state()`.
    """

    def __init__(self, take: Callable[[np.ndarray], Batch], n: int, batch_size: int, *,
                 train: bool, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be positive")
        if n < 1 or (train and n < batch_size):
            need = (f"training needs at least batch_size={batch_size}" if train
                    else "evaluation needs at least 1")
            raise ValueError(f"{n} examples: {need}; lower the batch size, or change the "
                             "window sizes or split fractions")
        self.take, self.n, self.batch_size = take, n, batch_size
        self.train, self.seed = train, seed
        self._epoch, self._batch = 0, 0

    def num_batches(self) -> int:
        return self.n // self.batch_size if self.train else -(-self.n // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches()

    def order(self, epoch: int) -> np.ndarray:
        if not self.train:
            return np.arange(self.n)
        return np.random.default_rng((self.seed, epoch)).permutation(self.n)

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> Batch:
        if self._batch >= self.num_batches():
            if not self.train:
                raise StopIteration
            self._epoch, self._batch = self._epoch + 1, 0
        B = self.batch_size
        idx = self.order(self._epoch)[self._batch * B:(self._batch + 1) * B]
        self._batch += 1
        pad = B - len(idx)
        batch = self.take(np.concatenate([idx, np.zeros(pad, idx.dtype)]))
        example_mask = np.ones(B, np.float32)
        if pad:
            example_mask[B - pad:] = 0.0
            for k in MASK_KEYS:
                if k in batch:
                    batch[k][B - pad:] = 0
        batch["example_mask"] = example_mask
        batch["reset"] = np.ones(B, bool)  # every example is its own sequence
        return batch

    def get_state(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batch": self._batch}

    def set_state(self, state: dict[str, int]) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or (not self.train and epoch) or not 0 <= batch <= self.num_batches():
            raise ValueError(f"set_state: position {state} out of range")
        self._epoch, self._batch = epoch, batch


# -- windows ------------------------------------------------------------------------------


@dataclasses.dataclass
class WindowSet:
    """The windows of one split: `arrays[key]` has the batch keys' shapes with K (windows)
    first; `starts` [K]; `y_true` [K,H] the targets on the original scale (NaN if missing)."""

    arrays: dict[str, np.ndarray]
    starts: np.ndarray
    y_true: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, idx) -> Batch:
        return {k: v[idx] for k, v in self.arrays.items()}

    def batches(self, batch_size: int, *, train: bool, seed: int = 0) -> Batches:
        return Batches(self.take, len(self), batch_size, train=train, seed=seed)


@dataclasses.dataclass
class ForecastData:
    """Windows of every split of one series; see the module docstring."""

    observed: Observed
    L: int
    H: int
    layout: str
    bounds: tuple[int, int]
    normaliser: Normaliser
    splits: dict[str, WindowSet]

    @property
    def name(self) -> str:
        return self.observed.name

    def batches(self, split: str, batch_size: int, *, train: bool | None = None,
                seed: int = 0) -> Batches:
        """Batches of a split; training order (shuffled, forever) by default for "train"."""
        return self.splits[split].batches(batch_size, train=split == "train" if train is None
                                          else train, seed=seed)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v):,}" for k, v in self.splits.items())
        return (f"ForecastData({self.name!r}, {self.observed.kind}, L={self.L}, H={self.H}, "
                f"{self.layout}, windows: {sizes})")


def _dt_to_previous(times_M: np.ndarray) -> np.ndarray:
    """Δt of each observation: time since the previous one (the first: since time -1)."""
    return np.diff(times_M, prepend=-1.0)


def _grid_arrays(obs: Observed, norm: Normaliser, starts: np.ndarray, L: int) -> Batch:
    N = len(obs.grid)
    j = np.rint(obs.times).astype(np.int64)
    value_N, mask_N = np.zeros(N), np.zeros(N)
    value_N[j], mask_N[j] = norm.apply(obs.values), 1.0
    # time of the last observation strictly before each grid step (-1 before the first)
    last_N = np.full(N, -np.inf)
    last_N[j] = j
    last_N = np.maximum.accumulate(np.concatenate([[-1.0], last_N[:-1]]))
    dt_N = np.arange(N) - last_N
    idx_KxL = starts[:, None] + np.arange(L)
    return {"inputs": value_N[idx_KxL][..., None], "mask": mask_N[idx_KxL],
            "dt": dt_N[idx_KxL][..., None], "times": idx_KxL.astype(np.float64)}


def _event_spans(obs: Observed, starts: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """[a, b): the observations with time in [s, s+L-1] of each window."""
    return (np.searchsorted(obs.times, starts, "left"),
            np.searchsorted(obs.times, starts + L - 1, "right"))


def _event_arrays(obs: Observed, norm: Normaliser, starts: np.ndarray, L: int,
                  max_events: int) -> Batch:
    a, b = _event_spans(obs, starts, L)
    a = np.maximum(a, b - max_events)  # too many: keep the latest
    idx_KxE = a[:, None] + np.arange(max_events)
    valid_KxE = idx_KxE < b[:, None]
    idx_KxE = np.where(valid_KxE, idx_KxE, 0)
    take = lambda x: np.where(valid_KxE, x[idx_KxE], 0.0)  # noqa: E731
    return {"inputs": take(norm.apply(obs.values))[..., None], "mask": valid_KxE * 1.0,
            "dt": take(_dt_to_previous(obs.times))[..., None], "times": take(obs.times)}


def make_windows(series, L: int, H: int, *, fractions=(0.7, 0.1, 0.2), layout: str = "grid",
                 stride: int = 1, max_events: int | None = None) -> ForecastData:
    """Windows (look-back L, horizon H) of every split of a series.

    series: a `Series` (ltf.data.series.regular), an `Observed` (ltf.data.series.irregular) or a 1-D
    array (NaN = missing). `stride` spaces the window starts of every split. `max_events`
    (events layout) defaults to the most observations any window holds, over all splits, so
    that every split has one shape.
    """
    obs = as_observed(series)
    if L < 1 or H < 1 or stride < 1:
        raise ValueError(f"L={L}, H={H}, stride={stride}: must be positive")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: allowed values are {LAYOUTS}")
    if not len(obs.times):
        raise ValueError(f"{obs!r}: no observations to make windows of")
    if layout == "grid" and not obs.on_grid:
        raise ValueError(f"{obs.name} ({obs.kind}) has observations off the grid; use "
                         "layout='events'")
    N = len(obs.grid)
    bounds = split_bounds(N, fractions)
    norm = Normaliser.fit(obs.grid[:bounds[0]])
    all_starts = {s: window_starts(N, bounds, s, L, H, stride) for s in SPLITS}
    if layout == "events" and max_events is None:
        a, b = _event_spans(obs, np.concatenate(list(all_starts.values())), L)
        max_events = max(int(np.max(b - a, initial=0)), 1)
    splits = {}
    for name, starts in all_starts.items():
        y_KxH = obs.grid[starts[:, None] + L + np.arange(H)].reshape(len(starts), H)
        keep = np.isfinite(y_KxH).any(axis=1)
        starts, y_KxH = starts[keep], y_KxH[keep]
        arrays = (_grid_arrays(obs, norm, starts, L) if layout == "grid"
                  else _event_arrays(obs, norm, starts, L, max_events))
        target_mask = np.isfinite(y_KxH)
        K = len(starts)
        arrays.update(
            obs_mask=arrays["mask"][..., None],
            targets=np.where(target_mask, norm.apply(np.nan_to_num(y_KxH)), 0.0),
            target_mask=target_mask * 1.0,
            loc=np.full((K, 1), norm.mean), scale=np.full((K, 1), norm.std),
        )
        arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
        splits[name] = WindowSet(arrays, starts, y_KxH)
    return ForecastData(obs, L, H, layout, bounds, norm, splits)
