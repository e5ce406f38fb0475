"""ltf.baselines: the naive forecasts, and the logistic regression on PhysioNet summaries
(against scikit-learn, the reference)."""

import numpy as np
import pytest

from ltf import baselines
from ltf.data.series import irregular
from ltf.data.series.windows import make_windows

sk_linear = pytest.importorskip(
    "sklearn.linear_model", reason="scikit-learn is the reference for the logistic "
    "regression (pip install scikit-learn)")


def test_naive_forecasts_hand_example():
    y = np.arange(40.0) % 4 * 10 + np.arange(40.0)  # season 4 on a trend
    data = make_windows(y, 6, 5, fractions=(0.5, 0.25, 0.25))
    ws = data.splits["test"]
    o = ws.starts + 6
    np.testing.assert_array_equal(baselines.last_value(data, "test"),
                                  np.repeat(y[o - 1][:, None], 5, axis=1))
    h = np.arange(5)
    expect = y[o[:, None] + h - 4 * (1 + h // 4)]
    np.testing.assert_array_equal(baselines.seasonal_naive(data, "test", 4), expect)
    table = baselines.forecast_baselines(data, season=4)
    assert set(table["test"]) == {"last_value", "seasonal_naive", "seasonal_change"}
    assert table["test"]["seasonal_naive"]["mae"] == pytest.approx(
        np.abs(expect - ws.y_true).mean())
    with pytest.raises(ValueError, match="season"):
        baselines.seasonal_naive(data, "test", None)


def test_the_seasonal_change_is_exact_on_a_trend_where_the_seasonal_naive_lags_a_season():
    """y = slope·t + a pattern of period m: the seasonal naive is off by slope·m·(1 + ⌊h/m⌋),
    the seasonal naive plus the last season's change by slope·m·⌊h/m⌋ (zero within a season)."""
    m, slope = 5, 0.3
    t = np.arange(80.0)
    y = slope * t + np.array([0.0, 3, -1, 4, 2])[t.astype(int) % m]
    data = make_windows(y, 12, 4, fractions=(0.5, 0.25, 0.25))  # H = 4 < m
    truth = data.splits["test"].y_true
    np.testing.assert_allclose(baselines.seasonal_change(data, "test", m), truth, atol=1e-9)
    np.testing.assert_allclose(baselines.seasonal_naive(data, "test", m), truth - slope * m, atol=1e-9)


def test_naive_forecasts_on_irregular_observations():
    y = np.arange(30.0)
    obs = irregular.Observed("s", "subset", np.array([6.0, 9, 13]), np.array([6.0, 9, 13]), y)
    data = make_windows(obs, 5, 2, fractions=(0.6, 0.2, 0.2))
    ws = data.splits["train"]
    lv = baselines.last_value(data, "train")
    assert ws.starts[0] + 4 < 6  # the first window has no observation before its origin
    for k, s in enumerate(ws.starts):
        before = [t for t in (6, 9, 13) if t <= s + 4]
        expect = before[-1] if before else float(data.normaliser.mean)  # none: the train mean
        assert lv[k].tolist() == [expect, expect]


def test_logistic_matches_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = (X @ rng.normal(size=6) + rng.normal(size=300) > 0.5).astype(int)
    for C in (0.05, 1.0):
        w, b = baselines.fit_logistic(X, y, C)
        ref = sk_linear.LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
        np.testing.assert_allclose(w, ref.coef_[0], atol=1e-5)
        np.testing.assert_allclose(b, ref.intercept_[0], atol=1e-5)


def test_summary_features_hand_example():
    from ltf.data.series.physionet_format import VARIABLES, Stays

    V = len(VARIABLES)
    hr = VARIABLES.index("HR")
    values = np.full((4, V), np.nan, np.float32)
    values[:, hr] = [70, np.nan, 90, 60]  # stay 0: events 0-2, stay 1: event 3
    stays = Stays("t", np.array([1, 2, 3]), np.array([0, 3, 4, 4]), np.arange(4.0), values,
                  np.array([[50, 1, 170, 2, 80], [60, 0, np.nan, 4, 70], [70, 0, 160, np.nan, 60]]),
                  np.array([0, 1, 0]), np.zeros((3, 4)))
    X = baselines.summary_features(stays)
    names = baselines.summary_feature_names()
    assert X.shape == (3, len(names)) == (3, 37 * 5 + 8)
    f = {n: X[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(f["HR:last"], [90, 60, np.nan])
    np.testing.assert_array_equal(f["HR:mean"], [80, 60, np.nan])
    np.testing.assert_array_equal(f["HR:min"], [70, 60, np.nan])
    np.testing.assert_array_equal(f["HR:max"], [90, 60, np.nan])
    np.testing.assert_allclose(f["HR:log1p_count"], np.log1p([2, 1, 0]))
    np.testing.assert_array_equal(f["Albumin:mean"], [np.nan] * 3)
    np.testing.assert_array_equal(f["ICUType=2"], [1, 0, np.nan])
    np.testing.assert_array_equal(f["Height"], [170, np.nan, 160])
    model = baselines.SummaryLogistic.fit(stays, C=1.0)
    p = model.predict(stays)
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))


def test_summaries_the_same_in_chunks_and_padded_longer(monkeypatch):
    """`summary_features` pads a set in chunks: neither the chunk size nor extra padding after a
    stay's end changes a summary."""
    from ltf.data.series import physionet_summaries as ps
    from ltf.data.series.physionet_format import VARIABLES, Stays

    rng = np.random.default_rng(0)
    lengths = np.array([3, 0, 5, 1, 4])
    values = rng.normal(size=(lengths.sum(), len(VARIABLES)))
    values[rng.random(values.shape) < 0.6] = np.nan
    static = rng.normal(size=(5, 5))
    static[:, 3] = [1, 2, 3, 4, np.nan]
    stays = Stays("t", np.arange(5), np.r_[0, np.cumsum(lengths)], np.arange(lengths.sum() * 1.0), values,
                  static, np.zeros(5, int), np.zeros((5, 4)))
    whole = ps.summary_features(stays)
    monkeypatch.setattr(ps, "_CHUNK", 2)
    np.testing.assert_array_equal(ps.summary_features(stays), whole)
    padded = np.full((5, 9, len(VARIABLES)), np.nan)
    for i in range(5):
        padded[i, :lengths[i]] = values[stays.offsets[i]:stays.offsets[i + 1]]
    np.testing.assert_array_equal(ps.padded_summaries(padded, static), whole)
    assert np.isnan(whole[1, :37 * 4]).all() and (whole[1, 37 * 4:37 * 5] == 0).all()  # the empty stay

