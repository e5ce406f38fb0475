"""Regularly sampled series shipped inside PyPI packages: `load_series(name) -> Series`.

| name | package | points | interval | season | what |
|---|---|---|---|---|---|
| sunspots_yearly | statsmodels | 309 | 1 year | 11 | yearly sunspot numbers 1700-2008 |
| sunspots_monthly | pmdarima | 2,820 | 1 month | 132 | monthly sunspot numbers 1749-1983 |
| co2 | statsmodels | 2,284 (59 missing) | 1 week | 52 | Mauna Loa CO2, ppm, 1958-2001 |
| nile | statsmodels | 100 | 1 year | - | Nile flow at Aswan, 1871-1970 |
| elnino | statsmodels | 732 | 1 month | 12 | Niño 1+2 sea surface temperature, 1950-2010 |
| taylor | pmdarima | 4,032 | 30 minutes | 336 | electricity demand, England and Wales, 2000 |
| airpassengers | pmdarima | 144 | 1 month | 12 | airline passengers, thousands, 1949-1960 |

Seasons are in steps and feed the seasonal-naive baseline. Sunspots have no yearly season:
their season is the ~11-year solar cycle (its length varies from about 9 to 14 years), so the
baseline is rough there. taylor's is the week (336 half-hours), which contains the daily
cycle (48); co2's year is 52.18 weeks, rounded.

Every series is a 1-D float64 array, NaN where the source has no value (only co2's gaps). The
arrays are cached as `<cache>/series/<name>-<package>-<version>.npz` (`<cache>`: the
`cache_dir` argument, else `$LTF_CACHE_DIR`, else ~/.cache/ltf), so that the packages (pmdarima
takes ~2.5 s to import) are imported only on a cache miss.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ltf.data.corpora import cache_root


@dataclasses.dataclass(frozen=True)
class Series:
    """values [N] float64 (NaN = missing) sampled every `interval` from `start`."""

    name: str
    values: np.ndarray
    interval: str
    season: int | None
    start: str
    description: str
    source: str
    citation: str

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        missing = int(np.isnan(self.values).sum())
        return (f"Series({self.name!r}, {len(self):,} points every {self.interval} from "
                f"{self.start}, season={self.season}, {missing} missing)")


@dataclasses.dataclass(frozen=True)
class _Spec:
    package: str
    load: Callable[[], np.ndarray]  # imports the package only when called
    interval: str
    season: int | None
    start: str
    description: str
    source: str
    citation: str


def _statsmodels(dataset: str, column: str | None = None) -> Callable[[], np.ndarray]:
    def load():
        data = importlib.import_module(f"statsmodels.datasets.{dataset}").load_pandas().data
        if column is None:  # elnino: one row a year, one column a month
            return data.drop(columns="YEAR").to_numpy(np.float64).ravel()
        return data[column].to_numpy(np.float64)

    return load


def _pmdarima(loader: str) -> Callable[[], np.ndarray]:
    return lambda: np.asarray(getattr(importlib.import_module("pmdarima.datasets"), loader)(),
                              np.float64)


SERIES: dict[str, _Spec] = {
    "sunspots_yearly": _Spec(
        "statsmodels", _statsmodels("sunspots", "SUNACTIVITY"), "1 year", 11, "1700",
        "Yearly mean sunspot numbers, 1700-2008 (season: the ~11-year solar cycle).",
        "statsmodels.datasets.sunspots (from NOAA's National Geophysical Data Center)",
        "NOAA NGDC solar data; public domain."),
    "sunspots_monthly": _Spec(
        "pmdarima", _pmdarima("load_sunspots"), "1 month", 132, "1749-01",
        "Monthly mean relative sunspot numbers, 1749-1983 (Zurich, then Tokyo); season: the "
        "~11-year cycle in months.",
        "pmdarima.datasets.load_sunspots (R's datasets::sunspots)",
        "Andrews, D. F. and Herzberg, A. M. (1985) Data. Springer; R datasets::sunspots."),
    "co2": _Spec(
        "statsmodels", _statsmodels("co2", "co2"), "1 week", 52, "1958-03-29",
        "Weekly atmospheric CO2 (ppm) from flask samples at Mauna Loa, 1958-2001, with gaps.",
        "statsmodels.datasets.co2",
        "Keeling, C. D. and Whorf, T. P. (2004) Atmospheric CO2 concentrations derived from "
        "flask air samples at sites in the SIO network. Trends: A Compendium of Data on "
        "Global Change, CDIAC, Oak Ridge National Laboratory; public domain."),
    "nile": _Spec(
        "statsmodels", _statsmodels("nile", "volume"), "1 year", None, "1871",
        "Annual flow of the Nile at Aswan (10^8 m^3), 1871-1970, with a change point near 1898.",
        "statsmodels.datasets.nile",
        "Cobb, G. W. (1978) The problem of the Nile: conditional solution to a changepoint "
        "problem. Biometrika 65(2), 243-251; public domain."),
    "elnino": _Spec(
        "statsmodels", _statsmodels("elnino"), "1 month", 12, "1950-01",
        "Monthly sea surface temperature (°C) of the Niño 1+2 region, 1950-2010.",
        "statsmodels.datasets.elnino (NOAA ERSST.V3B)",
        "NOAA National Weather Service, Climate Prediction Center, ERSST.V3B Niño 1+2 index; "
        "public domain."),
    "taylor": _Spec(
        "pmdarima", _pmdarima("load_taylor"), "30 minutes", 336, "2000-06-05 00:00",
        "Half-hourly electricity demand (MW) in England and Wales, 5 June - 27 August 2000; "
        "seasons of a day (48) and a week (336).",
        "pmdarima.datasets.load_taylor (R's forecast::taylor)",
        "Taylor, J. W. (2003) Short-term electricity demand forecasting using double seasonal "
        "exponential smoothing. J. Operational Research Society 54, 799-805."),
    "airpassengers": _Spec(
        "pmdarima", _pmdarima("load_airpassengers"), "1 month", 12, "1949-01",
        "Monthly international airline passengers (thousands), 1949-1960.",
        "pmdarima.datasets.load_airpassengers (R's datasets::AirPassengers)",
        "Box, G. E. P., Jenkins, G. M. and Reinsel, G. C. (1976) Time Series Analysis, "
        "Forecasting and Control, 3rd ed., Holden-Day, Series G."),
}


def series_names() -> tuple[str, ...]:
    return tuple(SERIES)


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"the series need the PyPI package {package!r}, which is not installed: "
            f"pip install {package} (or reinstall ltf: pip install -e .)") from None


def load_series(name: str, *, cache_dir: str | os.PathLike | None = None) -> Series:
    """The series `name` (see the module docstring), from the cache when it can."""
    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}; allowed names: {', '.join(SERIES)}")
    spec = SERIES[name]
    version = _package_version(spec.package)
    path = cache_root(cache_dir) / "series" / f"{name}-{spec.package}-{version}.npz"
    values = None
    if path.exists():
        try:
            with np.load(path) as f:
                values = f["values"]
        except (OSError, ValueError, KeyError):
            values = None  # unreadable entry: rebuilt below
    if values is None:
        values = spec.load()
        _save_npz(path, values=values)
    return Series(name, values.astype(np.float64), spec.interval, spec.season, spec.start,
                  spec.description, f"{spec.source}; {spec.package} {version}", spec.citation)


def _save_npz(path: Path, **arrays) -> None:
    """Writes to a temporary file and renames it, so a crash leaves no half-written entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
