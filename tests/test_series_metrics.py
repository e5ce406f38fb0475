"""Metrics (against scikit-learn, the reference) and the naive baselines."""

import numpy as np
import pytest

from ltf.series import baselines, irregular, metrics
from ltf.series.windows import make_windows

sk_metrics = pytest.importorskip(
    "sklearn.metrics", reason="scikit-learn is the reference for AUROC/AUPRC and logistic "
    "regression (pip install scikit-learn)")


@pytest.mark.parametrize("seed", range(6))
def test_auroc_auprc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    y[:2] = [0, 1]
    scores = rng.normal(size=n) + y * rng.uniform(0, 2)
    if seed % 2:
        scores = np.round(scores, 1)  # many ties
    assert metrics.auroc(y, scores) == pytest.approx(sk_metrics.roc_auc_score(y, scores), abs=1e-12)
    assert metrics.auprc(y, scores) == pytest.approx(
        sk_metrics.average_precision_score(y, scores), abs=1e-12)


def test_classification_edge_cases():
    assert metrics.auroc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.3]) == 1.0
    assert metrics.auroc([1, 0], [0.5, 0.5]) == 0.5
    assert np.isnan(metrics.auroc([1, 1], [0.2, 0.3]))
    assert np.isnan(metrics.auprc([0, 0], [0.2, 0.3]))
    m = metrics.classification_metrics([0, 1, 0, 0], [0.1, 0.9, 0.2, 0.3])
    assert m == {"auroc": 1.0, "auprc": 1.0, "n": 4, "positive_rate": 0.25}
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.auroc([0, 2], [0.1, 0.2])


def test_forecast_errors_sums_masks_and_scale():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    target = np.array([[2.0, np.nan], [3.0, 1.0]])
    e = metrics.forecast_errors(pred, target)
    assert e == {"mse": (1 + 0 + 9) / 3, "mae": (1 + 0 + 3) / 3, "count": 3}
    e = metrics.forecast_errors(pred, target, mask=[[1, 1], [1, 0]])
    assert e["count"] == 2 and e["mse"] == 0.5
    a = metrics.forecast_error_sums(pred[:1], target[:1])
    b = metrics.forecast_error_sums(pred[1:], target[1:])
    both = {k: a[k] + b[k] for k in a}
    assert metrics.errors_from_sums(both) == metrics.forecast_errors(pred, target)
    batch = {"loc": np.array([[10.0], [20.0]]), "scale": np.array([[2.0], [0.5]])}
    np.testing.assert_allclose(metrics.to_original(pred, batch), [[12, 14], [21.5, 22]])


def test_model_errors_on_original_scale_from_batches():
    y = np.sin(np.arange(400) / 6.0) * 50 + 300
    data = make_windows(y, 24, 6)
    ws = data.splits["test"]
    sums = {"se_sum": 0.0, "ae_sum": 0.0, "count": 0}
    for batch in data.batches("test", 16):
        perfect = metrics.to_original(batch["targets"], batch)  # a model that predicts the targets
        s = metrics.forecast_error_sums(perfect, metrics.to_original(batch["targets"], batch),
                                        batch["target_mask"])
        sums = {k: sums[k] + s[k] for k in sums}
    assert sums["count"] == ws.y_true.size and sums["se_sum"] == 0


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
    assert set(table["test"]) == {"last_value", "seasonal_naive"}
    assert table["test"]["seasonal_naive"]["mae"] == pytest.approx(
        np.abs(expect - ws.y_true).mean())
    with pytest.raises(ValueError, match="season"):
        baselines.seasonal_naive(data, "test", None)


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
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = (X @ rng.normal(size=6) + rng.normal(size=300) > 0.5).astype(int)
    for C in (0.05, 1.0):
        w, b = baselines.fit_logistic(X, y, C)
        ref = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
        np.testing.assert_allclose(w, ref.coef_[0], atol=1e-5)
        np.testing.assert_allclose(b, ref.intercept_[0], atol=1e-5)


def test_summary_features_hand_example():
    from ltf.series.physionet import VARIABLES, Stays

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
