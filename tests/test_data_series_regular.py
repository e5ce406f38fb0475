"""Regular series shipped inside PyPI packages (statsmodels, pmdarima) and their cache."""

import numpy as np
import pytest

from ltf.data.series import regular
from ltf.data.series.regular import SERIES, load_series

EXPECTED = {  # name: (points, missing, first value, season)
    "sunspots_yearly": (309, 0, 5.0, 11),
    "sunspots_monthly": (2820, 0, 58.0, 132),
    "co2": (2284, 59, 316.1, 52),
    "nile": (100, 0, 1120.0, None),
    "elnino": (732, 0, 23.11, 12),
    "taylor": (4032, 0, 22262.0, 336),
    "airpassengers": (144, 0, 112.0, 12),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("series_cache")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_series_load(name, cache):
    s = load_series(name, cache_dir=cache)
    n, missing, first, season = EXPECTED[name]
    assert s.values.shape == (n,) and s.values.dtype == np.float64
    assert int(np.isnan(s.values).sum()) == missing
    assert s.values[0] == first and s.season == season
    assert s.interval and s.description and s.citation and SERIES[name].package in s.source


def test_registry_is_the_expected_one():
    assert set(SERIES) == set(EXPECTED) == set(regular.series_names())


def test_cache_hit_imports_nothing(cache, monkeypatch):
    first = load_series("taylor", cache_dir=cache)
    assert list(cache.glob("series/taylor-pmdarima-*.npz"))
    spec = SERIES["taylor"]
    boom = lambda: pytest.fail("the cache was not used")  # noqa: E731
    monkeypatch.setitem(SERIES, "taylor", regular._Spec(**{**spec.__dict__, "load": boom}))
    np.testing.assert_array_equal(load_series("taylor", cache_dir=cache).values, first.values)


def test_unknown_series():
    with pytest.raises(ValueError, match="allowed names: sunspots_yearly"):
        load_series("sunspot")
