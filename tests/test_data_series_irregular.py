"""Irregular versions of regular series: subsets and Poisson times, seeded and deterministic."""

import numpy as np
import pytest

from ltf.data.series import irregular
from ltf.data.series.irregular import make_irregular


def test_regular_skips_gaps():
    y = np.array([1.0, np.nan, 3, 4, np.nan])
    obs = irregular.regular(y)
    assert obs.times.tolist() == [0, 2, 3] and obs.values.tolist() == [1, 3, 4]
    assert obs.on_grid and obs.kind == "regular"


@pytest.mark.parametrize("keep", [0.1, 0.3, 0.5])
def test_subset_keeps_true_points(keep):
    y = np.random.default_rng(0).normal(size=1000)
    y[::7] = np.nan
    n = int(np.isfinite(y).sum())
    obs = irregular.subset(y, keep, seed=4)
    assert len(obs.times) == round(keep * n)
    assert np.all(np.diff(obs.times) > 0) and obs.on_grid
    j = obs.times.astype(int)
    np.testing.assert_array_equal(obs.values, y[j])  # true measurements, never a gap
    assert np.isfinite(obs.values).all()
    same = irregular.subset(y, keep, seed=4)
    other = irregular.subset(y, keep, seed=5)
    np.testing.assert_array_equal(obs.times, same.times)
    assert not np.array_equal(obs.times, other.times)


def test_poisson_times_and_interpolation():
    N, rate = 5001, 0.2
    y = 3.0 * np.arange(N) - 7  # linear: interpolation is exact
    obs = irregular.poisson(y, rate, seed=0)
    expected = rate * (N - 1)
    assert abs(len(obs.times) - expected) < 5 * np.sqrt(expected)
    assert obs.times.min() >= 0 and obs.times.max() <= N - 1
    assert np.all(np.diff(obs.times) > 0) and not obs.on_grid
    np.testing.assert_allclose(obs.values, 3.0 * obs.times - 7, atol=1e-9)
    gaps = np.diff(obs.times)  # exponential with mean 1 / rate
    assert abs(gaps.mean() - 1 / rate) < 0.1 * (1 / rate)
    np.testing.assert_array_equal(irregular.poisson(y, rate, seed=0).times, obs.times)
    assert not np.array_equal(irregular.poisson(y, rate, seed=1).times[:10], obs.times[:10])


def test_poisson_drops_times_next_to_gaps():
    y = np.arange(100.0)
    y[50] = np.nan
    obs = irregular.poisson(y, 2.0, seed=0)
    assert not np.any((obs.times > 49) & (obs.times < 51))
    assert np.isfinite(obs.values).all()


def test_make_irregular_and_errors():
    y = np.arange(30.0)
    assert make_irregular(y).kind == "regular"
    assert make_irregular(y, "subset", keep=0.5, seed=1).params == (("keep", 0.5), ("seed", 1))
    assert make_irregular(y, "poisson", rate=0.5).kind == "poisson"
    with pytest.raises(ValueError, match="allowed values"):
        make_irregular(y, "jitter")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        irregular.subset(y, 0.0)
    with pytest.raises(ValueError, match="> 0"):
        irregular.poisson(y, 0.0)
    with pytest.raises(ValueError, match="1-D"):
        irregular.regular(np.zeros((3, 2)))
