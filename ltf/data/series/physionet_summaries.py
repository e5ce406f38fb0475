"""Per-stay summaries of PhysioNet 2012: what the logistic-regression baseline reads
(`ltf.baselines.SummaryLogistic`) and what a model's head can read beside h (`task.use_summaries`).

For each of the 37 variables the last, mean, min and max value and log(1 + count) over the stay,
then the static Age, Gender, Height, Weight and ICUType one-hot: 37·5 + 8 = 193 features, NaN
where a summary is missing (a variable never observed, a static field not recorded).
`SummaryScaler` makes them model inputs as the baseline does: a missing summary takes the
training stays' mean, then every feature is standardised with the training stays' mean and std.

One implementation on padded arrays (`padded_summaries`, values [B,T,37] with NaN where
unobserved and after the stay's end), used per batch; `summary_features` pads a `Stays` in
chunks and calls it, so the baseline and the batches cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from ltf.data.series.physionet_format import STATIC, VARIABLES, Stays

SUMMARIES = ("last", "mean", "min", "max", "log1p_count")
N_FEATURES = len(SUMMARIES) * len(VARIABLES) + len(STATIC) - 1 + 4  # ICUType as 4 one-hot columns
_CHUNK = 256  # stays padded at a time by `summary_features`


def summary_feature_names() -> list[str]:
    static = [k for k in STATIC if k != "ICUType"] + [f"ICUType={i}" for i in range(1, 5)]
    return [f"{v}:{s}" for s in SUMMARIES for v in VARIABLES] + static


def padded_summaries(values_BxTxV, static_Bx5) -> np.ndarray:
    """[B, 193] raw summaries of padded stays (float64; NaN where missing)."""
    x = np.asarray(values_BxTxV, np.float64)
    obs = np.isfinite(x)
    count_BxV = obs.sum(axis=1)
    seen = count_BxV > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen, np.where(obs, x, 0.0).sum(axis=1) / count_BxV, np.nan)
    low = np.where(seen, np.where(obs, x, np.inf).min(axis=1, initial=np.inf), np.nan)
    high = np.where(seen, np.where(obs, x, -np.inf).max(axis=1, initial=-np.inf), np.nan)
    last_i_BxV = x.shape[1] - 1 - np.argmax(obs[:, ::-1], axis=1)  # the last observed row
    last = np.where(seen, np.take_along_axis(x, last_i_BxV[:, None, :], axis=1)[:, 0], np.nan)
    s = np.asarray(static_Bx5, np.float64)
    icu = s[:, STATIC.index("ICUType")]
    onehot = np.where(np.isfinite(icu)[:, None], (icu[:, None] == np.arange(1, 5)) * 1.0, np.nan)
    static = s[:, [STATIC.index(k) for k in STATIC if k != "ICUType"]]
    by_name = {"last": last, "mean": mean, "min": low, "max": high, "log1p_count": np.log1p(count_BxV)}
    return np.concatenate([by_name[k] for k in SUMMARIES] + [static, onehot], axis=1)


def summary_features(stays: Stays) -> np.ndarray:
    """[N, 193] raw summaries of every stay of a set (NaN where missing)."""
    out = []
    for start in range(0, len(stays), _CHUNK):
        idx = range(start, min(start + _CHUNK, len(stays)))
        T = max(1, int(stays.lengths[start:idx.stop].max()))
        values = np.full((len(idx), T, len(VARIABLES)), np.nan)
        for row, i in enumerate(idx):
            a, b = stays.offsets[i], stays.offsets[i + 1]
            values[row, :b - a] = stays.values[a:b]
        out.append(padded_summaries(values, stays.static[start:idx.stop]))
    return np.concatenate(out) if out else np.zeros((0, N_FEATURES))


@dataclasses.dataclass(frozen=True)
class SummaryScaler:
    """Missing summaries filled with the training mean, then standardised with training statistics."""

    fill: np.ndarray  # [F]
    mean: np.ndarray  # [F]
    std: np.ndarray   # [F], 1 where a feature is constant in training

    @classmethod
    def fit(cls, X_NxF) -> SummaryScaler:
        """From the raw summaries of the training stays only."""
        X = np.asarray(X_NxF, np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column never observed in training
            fill = np.nan_to_num(np.nanmean(X, axis=0))
        X = np.where(np.isfinite(X), X, fill)
        std = X.std(axis=0)
        return cls(fill, X.mean(axis=0), np.where(std > 0, std, 1.0))

    def apply(self, X_NxF) -> np.ndarray:
        """[N, F] finite, float64."""
        X = np.asarray(X_NxF, np.float64)
        return (np.where(np.isfinite(X), X, self.fill) - self.mean) / self.std
