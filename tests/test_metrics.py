"""ltf.metrics: AUROC and AUPRC against scikit-learn (the reference), forecast errors."""

import numpy as np
import pytest

from ltf import metrics
from ltf.data.series.windows import make_windows

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
