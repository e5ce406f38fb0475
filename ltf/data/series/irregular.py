"""Irregularly observed versions of regular series, built in code, seeded and deterministic.

An `Observed` series is what a model may see, observation times and values, beside the regular
grid it came from, which keeps the forecasting targets. Times are in grid steps (0 = the first
grid point), so the versions of one series share windows, targets and normalisation
(ltf.data.series.windows) and differ only in their inputs:

- `regular(series)`: every grid point with a value (co2's gaps are left out), Δt = 1 mostly.
- `subset(series, keep, seed)`: exactly round(keep · n) of the n observed grid points, drawn
  without replacement: true measurements at irregular (integer) times.
- `poisson(series, rate, seed)`: times of a homogeneous Poisson process of `rate` events per
  grid step on [0, N-1]: Poisson(rate·(N-1)) times drawn uniformly and sorted. A time t
  between grid points j and j+1 gets the linear interpolation (1-u)·y_j + u·y_{j+1},
  u = t - j, so it is a resampling, not a subset of measurements; times whose neighbours are
  missing are dropped. Because the value at t in (j, j+1) uses y_{j+1}, windows only take
  observations at t <= o - 1 as inputs for a forecast origin o.

Every draw uses `np.random.default_rng(seed)` alone, so a version depends only on the series,
its parameters and the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("regular", "subset", "poisson")


@dataclasses.dataclass(frozen=True)
class Observed:
    """times [M] float64 strictly increasing (grid steps), values [M] float64 finite,
    grid [N] float64 the regular series (NaN where missing) that holds the targets."""

    name: str
    kind: str
    times: np.ndarray
    values: np.ndarray
    grid: np.ndarray
    params: tuple = ()  # e.g. (("keep", 0.3), ("seed", 0))

    @property
    def on_grid(self) -> bool:
        return bool(np.all(self.times == np.rint(self.times)))

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v}" for k, v in self.params)
        return (f"Observed({self.name!r}, {self.kind}{opts}: {len(self.times):,} observations "
                f"on a grid of {len(self.grid):,})")


def _grid(series) -> tuple[str, np.ndarray]:
    """(name, values [N] float64) of a Series (ltf.data.series.regular) or a 1-D array."""
    name = getattr(series, "name", "series")
    grid = np.asarray(getattr(series, "values", series), np.float64)
    if grid.ndim != 1 or len(grid) < 2:
        raise ValueError(f"{name}: expected a 1-D series of at least 2 points, got shape "
                         f"{grid.shape}")
    return name, grid


def regular(series) -> Observed:
    """Every grid point that has a value."""
    name, grid = _grid(series)
    (j,) = np.nonzero(np.isfinite(grid))
    return Observed(name, "regular", j.astype(np.float64), grid[j], grid)


def subset(series, keep: float, seed: int = 0) -> Observed:
    """A random subset of round(keep · n) of the n observed grid points (at least 1)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep}: the fraction of points kept must be in (0, 1]")
    name, grid = _grid(series)
    (j,) = np.nonzero(np.isfinite(grid))
    k = max(1, int(round(keep * len(j))))
    j = np.sort(np.random.default_rng(seed).choice(j, size=k, replace=False))
    return Observed(name, "subset", j.astype(np.float64), grid[j], grid,
                    (("keep", keep), ("seed", seed)))


def poisson(series, rate: float, seed: int = 0) -> Observed:
    """Observation times from a Poisson process of `rate` per grid step, values interpolated."""
    if rate <= 0:
        raise ValueError(f"rate={rate}: the expected observations per grid step must be > 0")
    name, grid = _grid(series)
    N = len(grid)
    rng = np.random.default_rng(seed)
    times = np.unique(rng.uniform(0.0, N - 1, size=rng.poisson(rate * (N - 1))))
    j = np.minimum(np.floor(times).astype(np.int64), N - 2)
    u = times - j
    lo, hi = grid[j], grid[j + 1]
    ok = np.isfinite(lo) & np.isfinite(hi)
    values = (1 - u[ok]) * lo[ok] + u[ok] * hi[ok]
    return Observed(name, "poisson", times[ok], values, grid, (("rate", rate), ("seed", seed)))


def make_irregular(series, kind: str = "regular", *, keep: float = 0.3, rate: float = 0.3,
                   seed: int = 0) -> Observed:
    """The version `kind` of a series: "regular", "subset" (uses keep) or "poisson" (rate)."""
    if kind == "regular":
        return regular(series)
    if kind == "subset":
        return subset(series, keep, seed)
    if kind == "poisson":
        return poisson(series, rate, seed)
    raise ValueError(f"kind={kind!r}: allowed values are {KINDS}")


def as_observed(series) -> Observed:
    """An Observed as it is; a Series or array as its regular version."""
    return series if isinstance(series, Observed) else regular(series)
