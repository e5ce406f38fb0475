"""Adding problem and temporal order (Hochreiter & Schmidhuber 1997): layout, targets, balance."""

import json
import math

import numpy as np
import pytest

from ltf.data.synthetic import long_lag


def lengths_of(batch):
    return batch["mask"].sum(axis=1).astype(int)


@pytest.mark.parametrize("seq_len", [100, 500, 1000])
def test_adding_layout_markers_and_targets(seq_len):
    batch = long_lag.adding_batch(np.random.default_rng(seq_len), 64, seq_len)
    L = seq_len + seq_len // 10
    assert batch["inputs"].shape == (64, L, 2) and batch["inputs"].dtype == np.float32
    assert batch["targets"].shape == (64, 1) and batch["dt"].shape == (64, L, 1)
    assert batch["reset"].all() and np.all(batch["dt"] == 1)
    lengths = lengths_of(batch)
    assert lengths.min() >= seq_len and lengths.max() <= L
    for b in range(64):
        n = lengths[b]
        np.testing.assert_array_equal(batch["mask"][b], np.arange(L) < n)  # a prefix
        np.testing.assert_array_equal(batch["target_mask"][b], np.arange(L) == n - 1)
        values, markers = batch["inputs"][b, :, 0], batch["inputs"][b, :, 1]
        assert np.all(batch["inputs"][b, n:] == 0)  # padding
        assert np.all(np.abs(values) <= 1)
        marked = np.flatnonzero(markers == 1)
        assert len(marked) == 2
        assert marked[0] < 10 and marked[1] < seq_len // 2  # one in the first 10, both in the first half
        assert set(np.flatnonzero(markers == -1)) == {0, n - 1} - set(marked)
        assert np.all(markers[1 : n - 1][~np.isin(np.arange(1, n - 1), marked)] == 0)
        if 0 in marked:
            assert values[0] == 0
        x1, x2 = values[marked]
        assert batch["targets"][b, 0] == pytest.approx(0.5 + (x1 + x2) / 4, abs=1e-6)


def test_adding_marker_positions_cover_their_ranges():
    """One mark in the first 10 steps, the other anywhere in the first half (step 0 included)."""
    batch = long_lag.adding_batch(np.random.default_rng(0), 4000, 100)
    marked = np.array([np.flatnonzero(row == 1) for row in batch["inputs"][..., 1]])  # 4000x2, sorted
    assert marked[:, 0].max() < 10
    assert marked.min() == 0 and marked.max() == 49
    counts = np.bincount(marked.ravel(), minlength=50)
    assert counts[:10].min() > counts[10:].max()  # the first ten hold X1 and their share of X2
    # X2 alone, outside the first ten, is uniform over the 40 other steps of the first half.
    outside = counts[10:]
    assert outside.min() > 0.6 * outside.mean() and outside.max() < 1.4 * outside.mean()


def test_adding_unscaled_fixed_length():
    batch = long_lag.adding_batch(np.random.default_rng(1), 16, 200, scaled=False, variable_length=False)
    assert batch["inputs"].shape == (16, 200, 2) and np.all(batch["mask"] == 1)
    values, markers = batch["inputs"][..., 0], batch["inputs"][..., 1]
    np.testing.assert_allclose(batch["targets"][:, 0], (values * (markers == 1)).sum(axis=1), atol=1e-6)


def test_adding_baseline_matches_the_data():
    batch = long_lag.adding_batch(np.random.default_rng(2), 20_000, 100)
    errors = batch["targets"][:, 0] - 0.5
    base = long_lag.adding_baseline(100)
    assert base["mse"] == pytest.approx((0.9 + 1 - 0.9 / 49) / 3 / 16)
    assert np.mean(errors ** 2) == pytest.approx(base["mse"], rel=0.04)
    assert np.mean(np.abs(errors) < long_lag.ADDING_TOLERANCE) == pytest.approx(base["accuracy"], abs=0.01)
    assert long_lag.adding_baseline(100, scaled=False)["mse"] == pytest.approx(16 * base["mse"])


def test_adding_determinism_and_resume():
    a = long_lag.adding_batches(8, 100, seed=3)
    first = [next(a) for _ in range(3)]
    again = [next(long_lag.adding_batches(8, 100, seed=3)) for _ in range(1)]
    np.testing.assert_array_equal(first[0]["inputs"], again[0]["inputs"])
    other = next(long_lag.adding_batches(8, 100, seed=4))
    assert not np.array_equal(first[0]["inputs"], other["inputs"])
    state = json.loads(json.dumps(a.get_state()))
    want = next(a)
    b = long_lag.adding_batches(8, 100, seed=3)
    b.set_state(state)
    got = next(b)
    for key in want:
        np.testing.assert_array_equal(want[key], got[key])
    fixed = long_lag.adding_batches(8, 100, seed=3, num_batches=2)
    assert len(list(fixed)) == 2


@pytest.mark.parametrize("num_relevant", [2, 3])
@pytest.mark.parametrize("seq_len", [100, 1000])
def test_temporal_order_layout_and_classes(num_relevant, seq_len):
    batch = long_lag.temporal_order_batch(np.random.default_rng(5), 64, seq_len, num_relevant=num_relevant)
    L = seq_len + seq_len // 10
    assert batch["inputs"].shape == (64, L, 8) and batch["targets"].dtype == np.int32
    windows = long_lag.relevant_windows(seq_len, num_relevant)
    symbols = batch["inputs"].argmax(-1)
    lengths = lengths_of(batch)
    assert lengths.min() >= seq_len and lengths.max() <= L
    np.testing.assert_array_equal(batch["inputs"].sum(-1), batch["mask"])  # one-hot on real steps only
    for b in range(64):
        row = "".join(long_lag.TEMPORAL_SYMBOLS[s] for s in symbols[b, : lengths[b]])
        assert row[0] == "E" and row[-1] == "B" and set(row[1:-1]) <= set("abcdXY")
        relevant = [t for t, s in enumerate(row) if s in "XY"]
        assert len(relevant) == num_relevant
        assert all(lo <= t <= hi for t, (lo, hi) in zip(relevant, windows))
        order = "".join(row[t] for t in relevant)
        assert batch["targets"][b] == int(order.replace("X", "0").replace("Y", "1"), 2)
        assert batch["target_mask"][b, lengths[b] - 1] == 1 and batch["target_mask"][b].sum() == 1


def test_temporal_order_windows_are_the_papers_at_100():
    assert long_lag.relevant_windows(100, 2) == [(10, 20), (50, 60)]
    assert long_lag.relevant_windows(100, 3) == [(10, 20), (33, 43), (66, 76)]
    assert long_lag.relevant_windows(1000, 2) == [(100, 200), (500, 600)]
    with pytest.raises(ValueError):
        long_lag.relevant_windows(100, 4)


@pytest.mark.parametrize("num_relevant", [2, 3])
def test_temporal_order_classes_are_balanced(num_relevant):
    batch = long_lag.temporal_order_batch(np.random.default_rng(6), 8000, 100, num_relevant=num_relevant)
    K = 2 ** num_relevant
    counts = np.bincount(batch["targets"], minlength=K)
    p = 1 / K  # each count within 5 binomial standard errors: cannot flake at this seed
    assert np.all(np.abs(counts / 8000 - p) < 5 * np.sqrt(p * (1 - p) / 8000)), counts
    base = long_lag.temporal_order_baseline(num_relevant)
    assert base == {"accuracy": p, "cross_entropy": pytest.approx(math.log(K))}


def test_temporal_order_determinism_and_resume():
    a = long_lag.temporal_order_batches(4, 100, num_relevant=3, seed=9)
    next(a)
    state = a.get_state()
    want = next(a)
    b = long_lag.temporal_order_batches(4, 100, num_relevant=3, seed=9)
    b.set_state(state)
    got = next(b)
    for key in want:
        np.testing.assert_array_equal(want[key], got[key])
    with pytest.raises(ValueError):
        long_lag.temporal_order_batches(4, 10)
