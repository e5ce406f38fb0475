"""Naive baselines, reported beside the models as sanity checks.

Forecasting (on the original scale, from the same observations a model sees, but free to look
before the window when the look-back is too short):

- `last_value`: ŷ_{o+h} = the last observation at time <= o - 1, for every h.
- `seasonal_naive` with season m: ŷ_{o+h} = the last observation at time <= o + h - m·(1 + ⌊h/m⌋)
  (h = 0..H-1), i.e. the value one season back, the textbook y_{o+h-m(k+1)}, k = ⌊h/m⌋, on a
  regular series; on an irregular one the latest observation at or before that time.
- `seasonal_change`: the seasonal naive plus the change over the last season before the origin,
  ŷ_{o+h} = seasonal_naive_{o+h} + (y_{o-1} − y_{o-1-m}): on a series that trends (co2 rises by
  ~1.5 ppm a year) the seasonal naive lags by a season's rise, which this removes. Exact on a
  linear trend plus any pattern of period m.
  Each falls back to the training mean where no observation precedes the time.

PhysioNet 2012: logistic regression on per-variable summaries of each stay (`SummaryLogistic`):
for each of the 37 variables the last, mean, min and max value and log(1 + count), then the
static Age, Gender, Height, Weight and ICUType one-hot; a summary that is missing (a variable
never observed) takes the training mean, then every feature is standardised with training
statistics (`ltf.data.series.physionet_summaries`, which a model's head reads too). The fit
minimises ½‖w‖² + C·Σ log-loss (bias not penalised), scikit-learn's `LogisticRegression(C=C)`
objective, by Newton's method with backtracking, in numpy.
`physionet_logistic_baseline` picks C on validation AUROC.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ltf import metrics
from ltf.data.series.physionet import PhysioNetData
from ltf.data.series.physionet_format import Stays
from ltf.data.series.physionet_summaries import (  # noqa: F401  (re-exported: the baseline's features)
    SUMMARIES, SummaryScaler, summary_feature_names, summary_features)
from ltf.data.series.windows import ForecastData

# -- forecasting ----------------------------------------------------------------------------


def _latest_at_or_before(data: ForecastData, t_KxH: np.ndarray) -> np.ndarray:
    obs = data.observed
    i = np.searchsorted(obs.times, t_KxH, "right") - 1
    return np.where(i >= 0, obs.values[np.maximum(i, 0)], float(data.normaliser.mean))


def last_value(data: ForecastData, split: str) -> np.ndarray:
    """[K,H] forecasts of the split's windows: the last observation before the origin."""
    origin_K = data.splits[split].starts + data.L
    t_KxH = np.repeat((origin_K - 1)[:, None], data.H, axis=1).astype(np.float64)
    return _latest_at_or_before(data, t_KxH)


def seasonal_naive(data: ForecastData, split: str, season: int) -> np.ndarray:
    """[K,H] forecasts of the split's windows: the value one season back (see the docstring)."""
    if season is None or season < 1:
        raise ValueError(f"season={season}: seasonal naive needs a season length >= 1 "
                         f"({data.name} has none; use last_value)")
    h = np.arange(data.H)
    origin_K = data.splits[split].starts + data.L
    t_KxH = (origin_K[:, None] + h - season * (1 + h // season)).astype(np.float64)
    return _latest_at_or_before(data, t_KxH)


def seasonal_change(data: ForecastData, split: str, season: int) -> np.ndarray:
    """[K,H] forecasts: the seasonal naive shifted by the last season's change (see the docstring)."""
    last_Kx1 = (data.splits[split].starts + data.L - 1)[:, None].astype(np.float64)  # o - 1
    change_Kx1 = _latest_at_or_before(data, last_Kx1) - _latest_at_or_before(data, last_Kx1 - season)
    return seasonal_naive(data, split, season) + change_Kx1


# name -> forecast(data, split, season): the baselines that need a season (also `task.residual`'s choices)
SEASONAL_FORECASTS = {"seasonal_naive": seasonal_naive, "seasonal_change": seasonal_change}


def forecast_baselines(data: ForecastData, season: int | None = None) -> dict:
    """{split: {"last_value": {mse, mae, count}, "seasonal_naive": ..., "seasonal_change": ...}}
    on the original scale (the seasonal ones only with a season)."""
    out = {}
    for split, ws in data.splits.items():
        if not len(ws):
            continue
        row = {"last_value": metrics.forecast_errors(last_value(data, split), ws.y_true)}
        if season:
            for name, forecast in SEASONAL_FORECASTS.items():
                row[name] = metrics.forecast_errors(forecast(data, split, season), ws.y_true)
        out[split] = row
    return out


# -- PhysioNet: logistic regression on summaries ---------------------------------------------


def _log_loss_sum(z, y):
    return np.sum(np.logaddexp(0.0, z) - y * z)


def fit_logistic(X, y, C: float = 1.0, *, max_iter: int = 100, tol: float = 1e-10):
    """(w [F], b) minimising ½‖w‖² + C·Σ_i log(1 + exp(-(2y_i-1)(x_i·w + b)))."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    Xb = np.concatenate([X, np.ones((len(X), 1))], axis=1)
    reg = np.r_[np.ones(X.shape[1]), 0.0]  # the bias is not penalised
    theta = np.zeros(Xb.shape[1])

    def objective(th):
        return 0.5 * np.sum(reg * th**2) + C * _log_loss_sum(Xb @ th, y)

    f = objective(theta)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(Xb @ theta)))
        grad = C * Xb.T @ (p - y) + reg * theta
        hess = C * (Xb.T * (p * (1 - p))) @ Xb + np.diag(reg + 1e-12)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking (Armijo): Newton's full step can overshoot far from the optimum
            new = theta - t * step
            f_new = objective(new)
            if f_new <= f - 1e-4 * t * grad @ step or t < 1e-10:
                break
            t /= 2
        theta, f = new, f_new
        if np.max(np.abs(t * step)) < tol * max(1.0, np.max(np.abs(theta))):
            break
    return theta[:-1], float(theta[-1])


@dataclasses.dataclass
class SummaryLogistic:
    """Imputation and standardisation from the training stays (`SummaryScaler`), then logistic regression."""

    scaler: SummaryScaler
    w: np.ndarray
    b: float
    C: float

    @classmethod
    def fit(cls, train: Stays, C: float = 1.0) -> SummaryLogistic:
        return cls.fit_features(summary_features(train), train.labels, C)

    @classmethod
    def fit_features(cls, X, labels, C: float = 1.0) -> SummaryLogistic:
        """From precomputed `summary_features` X [N,F] of the training stays."""
        scaler = SummaryScaler.fit(X)
        w, b = fit_logistic(scaler.apply(X), labels, C)
        return cls(scaler, w, b, C)

    def predict(self, stays: Stays) -> np.ndarray:
        """[N] probabilities of in-hospital death."""
        return self.predict_features(summary_features(stays))

    def predict_features(self, X) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.scaler.apply(X) @ self.w + self.b)))


def physionet_logistic_baseline(data: PhysioNetData, Cs=(0.001, 0.01, 0.1, 1.0)) -> dict:
    """Fits on train for each C, keeps the best validation AUROC; returns {"C", "model",
    "metrics": {split: {auroc, auprc, n, positive_rate}}, "scores": {split: [N]}}."""
    X = {k: summary_features(s) for k, s in data.splits.items()}
    labels = {k: s.labels for k, s in data.splits.items()}
    fits = [SummaryLogistic.fit_features(X["train"], labels["train"], C) for C in Cs]
    best = max(fits, key=lambda m: metrics.auroc(labels["validation"],
                                                 m.predict_features(X["validation"])))
    scores = {k: best.predict_features(x) for k, x in X.items()}
    return {"C": best.C, "model": best, "scores": scores,
            "metrics": {k: metrics.classification_metrics(labels[k], v)
                        for k, v in scores.items()}}
