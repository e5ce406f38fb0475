"""Time series for ltf: regular series from PyPI packages, irregular versions, PhysioNet 2012.

Forecasting (numpy batches with inputs, mask, dt, targets and loc/scale to undo normalisation):

    series = load_series("taylor")                          # regular.py: SERIES
    obs = make_irregular(series, "subset", keep=0.3, seed=0)  # irregular.py: or "poisson"
    data = make_windows(obs, L=96, H=48)                    # windows.py: splits, normaliser
    batch = next(data.batches("train", 32))
    baselines.forecast_baselines(data, series.season)       # last value, seasonal naive

Classification, PhysioNet/CinC 2012 in-hospital mortality:

    data = load_physionet("../shared/data/physionet2012", extra_sets=("b",))
    batch = next(data.batches("train", 64))                 # inputs [B,T,37], dt_var, static, ...
    baselines.physionet_logistic_baseline(data)             # AUROC/AUPRC via metrics.py

Modules: `regular`, `irregular`, `windows`, `physionet`, `baselines`, `metrics`.
"""

from ltf.series.irregular import KINDS, Observed, make_irregular, poisson, regular, subset
from ltf.series.physionet import (VARIABLES, PhysioNetData, PhysioNetFormatError, Stays,
                                  load_physionet)
from ltf.series.regular import SERIES, Series, load_series, series_names
from ltf.series.windows import Batches, ForecastData, Normaliser, WindowSet, make_windows

__all__ = [
    "KINDS",
    "SERIES",
    "VARIABLES",
    "Batches",
    "ForecastData",
    "Normaliser",
    "Observed",
    "PhysioNetData",
    "PhysioNetFormatError",
    "Series",
    "Stays",
    "WindowSet",
    "load_physionet",
    "load_series",
    "make_irregular",
    "make_windows",
    "poisson",
    "regular",
    "series_names",
    "subset",
]
