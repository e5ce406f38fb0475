"""ltf/data/series/splits.py: the split protocols (ltf's 80/10/10, the published 80/20 then 80/20,
GRU-D's 5-fold cross-validation), stratified, deterministic, disjoint and covering."""

import numpy as np
import pytest

from ltf.data.series.splits import N_FOLDS, SPLITS, protocol_split, stratified_folds, stratified_split

LABELS = np.r_[np.zeros(3446, int), np.ones(554, int)]  # set A's size and death count
np.random.default_rng(0).shuffle(LABELS)


def assert_partition(split, n):
    parts = [split[k] for k in SPLITS]
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))  # covering and disjoint
    assert all(np.array_equal(p, np.sort(p)) for p in parts)


def test_stratified_split_is_documented_and_deterministic():
    labels = np.r_[np.zeros(86, int), np.ones(14, int)]
    s = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert [len(s[k]) for k in SPLITS] == [80, 10, 10]
    assert [int(labels[s[k]].sum()) for k in SPLITS] == [11, 1, 2]
    assert_partition(s, 100)
    again = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    other = stratified_split(labels, (0.8, 0.1, 0.1), seed=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["test"], other["test"])


def test_published_is_20_percent_test_then_80_20():
    s = protocol_split(LABELS, "published", seed=0)
    assert_partition(s, len(LABELS))
    assert [len(s[k]) for k in SPLITS] == [2560, 640, 800]
    rates = [LABELS[s[k]].mean() for k in SPLITS]
    np.testing.assert_allclose(rates, LABELS.mean(), atol=0.002)  # stratified
    assert np.array_equal(protocol_split(LABELS, "published", seed=0)["test"], s["test"])
    assert not np.array_equal(protocol_split(LABELS, "published", seed=1)["test"], s["test"])


def test_cv_folds_are_disjoint_cover_set_a_and_each_is_a_test_split_once():
    folds = stratified_folds(LABELS, N_FOLDS, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(LABELS)))
    sizes = [len(f) for f in folds]
    assert sum(sizes) == 4000 and max(sizes) - min(sizes) <= 2  # one per class at most
    tests = []
    for k in range(N_FOLDS):
        s = protocol_split(LABELS, "cv", seed=0, fold=k)
        assert_partition(s, len(LABELS))
        assert np.array_equal(s["test"], folds[k])
        assert abs(len(s["validation"]) - 0.2 * (4000 - len(s["test"]))) <= 2
        np.testing.assert_allclose(LABELS[s["test"]].mean(), LABELS.mean(), atol=0.002)
        tests.append(s["test"])
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(LABELS)))


def test_ltf_protocol_is_the_fractions_split():
    s = protocol_split(LABELS, "ltf", seed=3, fractions=(0.8, 0.1, 0.1))
    t = stratified_split(LABELS, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(s[k], t[k]) for k in SPLITS)


@pytest.mark.parametrize("kwargs,match", [({"protocol": "kfold"}, "protocol='kfold'"),
                                          ({"protocol": "cv", "fold": 5}, "fold=5"),
                                          ({"fractions": (0.5, 0.5, 0.5)}, "fractions")])
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        protocol_split(LABELS, **kwargs)
