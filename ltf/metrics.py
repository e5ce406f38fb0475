"""Metrics for forecasting (MSE, MAE on the original scale) and classification (AUROC, AUPRC).

Plain numpy, so they run on any host arrays without scikit-learn; the tests check them against
scikit-learn's `roc_auc_score` and `average_precision_score`, whose definitions they follow:

- AUROC: the probability that a random positive scores above a random negative, ties counting
  one half (Mann-Whitney U with average ranks).
- AUPRC: average precision, sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, from
  the highest down (a step function, no interpolation).

Both return NaN when `labels` holds one class only (scikit-learn raises or warns there).
Forecast errors come from sums and counts, so batches and splits combine without means of
means: add the `*_sum`s and counts of `forecast_error_sums`, then call `errors_from_sums`.
"""

from __future__ import annotations

import numpy as np


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return y.astype(bool), s


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """Ranks 1..n of s, ties sharing their mean rank."""
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(labels, scores) -> float:
    """Area under the ROC curve of scores [N] (higher = positive) for labels [N] in {0, 1}."""
    y, s = _check(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = _average_ranks(s)[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auprc(labels, scores) -> float:
    """Average precision of scores [N] for labels [N] in {0, 1} (scikit-learn's definition)."""
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_desc, y_desc = s[order], y[order]
    last = np.r_[np.flatnonzero(s_desc[1:] != s_desc[:-1]), len(s) - 1]  # end of each tie
    tps = np.cumsum(y_desc)[last]
    precision = tps / (last + 1.0)
    recall = tps / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def classification_metrics(labels, scores) -> dict[str, float]:
    """auroc, auprc, n and the fraction of positives."""
    y, _ = _check(labels, scores)
    return {"auroc": auroc(labels, scores), "auprc": auprc(labels, scores),
            "n": int(y.size), "positive_rate": float(y.mean()) if y.size else float("nan")}


def to_original(pred_BxH, batch) -> np.ndarray:
    """Normalised forecasts back to the original scale with the batch's loc/scale [B,1]."""
    return np.asarray(pred_BxH, np.float64) * batch["scale"] + batch["loc"]


def forecast_error_sums(pred, target, mask=None) -> dict[str, float]:
    """Sums of squared and absolute errors and their count over the entries where `mask` is
    nonzero and the target is finite (NaN targets are missing values)."""
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    keep = np.isfinite(target)
    if mask is not None:
        keep &= np.asarray(mask) != 0
    err = np.where(keep, pred - np.where(keep, target, 0.0), 0.0)
    return {"se_sum": float(np.sum(err**2)), "ae_sum": float(np.sum(np.abs(err))),
            "count": int(keep.sum())}


def errors_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """mse, mae and count from (added-up) `forecast_error_sums`."""
    n = sums["count"]
    nan = float("nan")
    return {"mse": sums["se_sum"] / n if n else nan, "mae": sums["ae_sum"] / n if n else nan,
            "count": n}


def forecast_errors(pred, target, mask=None) -> dict[str, float]:
    """MSE and MAE over the observed targets; pass both on the original scale."""
    return errors_from_sums(forecast_error_sums(pred, target, mask))
