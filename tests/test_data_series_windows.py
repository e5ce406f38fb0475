"""Forecasting windows: split rule, no leakage into training targets or normalisation, Δt and
masks against hand-computed examples, both layouts, batches."""

import numpy as np
import pytest

from ltf.data.series import irregular
from ltf.data.series.irregular import Observed
from ltf.data.series.windows import (Batches, Normaliser, make_windows, split_bounds,
                                window_starts)


def test_split_bounds():
    assert split_bounds(100) == (70, 80)
    assert split_bounds(10, (0.7, 0.1, 0.2)) == (7, 8)  # 0.7 + 0.1 = 0.7999... in floats
    assert split_bounds(20, (0.5, 0.25, 0.25)) == (10, 15)
    with pytest.raises(ValueError, match="summing to 1"):
        split_bounds(10, (0.5, 0.5, 0.5))


def test_window_starts_hand_example():
    # N = 20, train [0,10), validation [10,15), test [15,20); L = 3, H = 2
    b = (10, 15)
    assert window_starts(20, b, "train", 3, 2).tolist() == [0, 1, 2, 3, 4, 5]
    assert window_starts(20, b, "validation", 3, 2).tolist() == [7, 8, 9, 10]  # looks back
    assert window_starts(20, b, "test", 3, 2).tolist() == [12, 13, 14, 15]
    assert window_starts(20, b, "train", 3, 2, stride=2).tolist() == [0, 2, 4]
    assert window_starts(20, b, "validation", 3, 6).tolist() == []  # 6 targets never fit in 5


@pytest.mark.parametrize("N, L, H", [(50, 5, 1), (97, 10, 7), (200, 24, 12)])
def test_targets_never_cross_a_boundary(N, L, H):
    data = make_windows(np.arange(N, dtype=float), L, H, fractions=(0.6, 0.2, 0.2))
    n_train, n_val = data.bounds
    lo_hi = {"train": (0, n_train), "validation": (n_train, n_val), "test": (n_val, N)}
    for split, ws in data.splits.items():
        lo, hi = lo_hi[split]
        assert np.all(ws.y_true >= lo) and np.all(ws.y_true < hi), split  # y = time index
        assert np.all(ws.arrays["times"] < ws.y_true.min(axis=1, keepdims=True))
        assert np.all(ws.arrays["times"] >= 0)
    # every forecast origin that fits is used once per split
    assert len(data.splits["train"]) == n_train - L - H + 1


def test_windows_values_and_inverse():
    y = np.sin(np.arange(120) / 5.0) * 3 + 10
    data = make_windows(y, 12, 4)
    n_train = data.bounds[0]
    np.testing.assert_allclose(data.normaliser.mean, y[:n_train].mean())
    np.testing.assert_allclose(data.normaliser.std, y[:n_train].std())
    ws = data.splits["test"]
    s = ws.starts[3]
    np.testing.assert_allclose(data.normaliser.invert(ws.arrays["inputs"][3, :, 0]), y[s:s + 12],
                               rtol=1e-5)
    np.testing.assert_allclose(ws.y_true[3], y[s + 12:s + 16])
    a = ws.arrays
    np.testing.assert_allclose(a["targets"] * a["scale"] + a["loc"], ws.y_true, rtol=1e-5)
    assert (a["dt"] == 1).all() and (a["mask"] == 1).all() and (a["target_mask"] == 1).all()


def test_validation_and_test_values_do_not_reach_training():
    y = np.random.default_rng(0).normal(size=300)
    data = make_windows(y, 20, 5)
    changed = y.copy()
    changed[data.bounds[0]:] = changed[data.bounds[0]:] * 100 + 7  # validation and test
    moved = make_windows(changed, 20, 5)
    np.testing.assert_array_equal(data.normaliser.mean, moved.normaliser.mean)
    np.testing.assert_array_equal(data.normaliser.std, moved.normaliser.std)
    for k, v in data.splits["train"].arrays.items():
        np.testing.assert_array_equal(v, moved.splits["train"].arrays[k], err_msg=k)
    assert not np.allclose(data.splits["validation"].y_true, moved.splits["validation"].y_true)


def test_grid_dt_and_mask_hand_example():
    grid = np.arange(12, dtype=float)
    obs = Observed("hand", "subset", np.array([1.0, 2, 5, 6, 9]), np.array([1.0, 2, 5, 6, 9]), grid)
    data = make_windows(obs, 5, 1, fractions=(0.75, 0.25, 0.0))
    ws = data.splits["train"]
    k = int(np.flatnonzero(ws.starts == 3)[0])  # look-back steps 3..7, target step 8
    a = ws.take([k])
    assert a["times"][0].tolist() == [3, 4, 5, 6, 7]
    assert a["mask"][0].tolist() == [0, 0, 1, 1, 0]
    # time since the last observation strictly before each step: 2, 2, 2, 5, 6
    assert a["dt"][0, :, 0].tolist() == [1, 2, 3, 1, 1]
    np.testing.assert_allclose(data.normaliser.invert(a["inputs"][0, 2:4, 0]), [5, 6], rtol=1e-6)
    assert a["inputs"][0, [0, 1, 4], 0].tolist() == [0, 0, 0]
    # before the first observation the reference is time -1: step 0 gets 1, the first
    # observation (step 1) gets 2
    assert ws.take([0])["dt"][0, :3, 0].tolist() == [1, 2, 1]
    # the same window as events: only the observations 5 and 6, padded at the end
    ev = make_windows(obs, 5, 1, fractions=(0.75, 0.25, 0.0), layout="events")
    e = ev.splits["train"].take([k])
    E = ev.splits["train"].arrays["mask"].shape[1]
    assert E == 3  # the most observations in any window (steps 1..5: 1, 2 and 5)
    assert e["mask"][0].tolist() == [1, 1, 0] and e["times"][0].tolist() == [5, 6, 0]
    assert e["dt"][0, :, 0].tolist() == [3, 1, 0]


def test_events_keep_the_latest_when_capped():
    data = make_windows(np.arange(40.0), 10, 2, layout="events", max_events=4)
    a = data.splits["train"].take([0])
    assert a["times"][0].tolist() == [6, 7, 8, 9] and a["mask"][0].tolist() == [1, 1, 1, 1]


def test_poisson_inputs_never_use_the_first_target():
    y = np.cumsum(np.random.default_rng(1).normal(size=500))
    obs = irregular.poisson(y, 0.4, seed=3)
    with pytest.raises(ValueError, match="layout='events'"):
        make_windows(obs, 30, 5)
    data = make_windows(obs, 30, 5, layout="events")
    for ws in data.splits.values():
        origin = ws.starts + 30
        times = np.where(ws.arrays["mask"] > 0, ws.arrays["times"], -np.inf)
        assert np.all(times.max(axis=1) <= origin - 1)
        t = ws.arrays["times"][ws.arrays["mask"] > 0]
        assert t.min() >= 0
    # identical windows and targets to the regular version
    reg = make_windows(y, 30, 5)
    for s in reg.splits:
        np.testing.assert_array_equal(reg.splits[s].starts, data.splits[s].starts)
        np.testing.assert_array_equal(reg.splits[s].arrays["targets"],
                                      data.splits[s].arrays["targets"])


def test_gaps_mask_inputs_and_targets():
    y = np.arange(60, dtype=float)
    y[[10, 11, 30]] = np.nan
    y[40:43] = np.nan  # inside validation [30, 45)
    data = make_windows(y, 8, 2, fractions=(0.5, 0.25, 0.25))
    assert np.isfinite(data.normaliser.mean)
    for ws in data.splits.values():
        a = ws.arrays
        np.testing.assert_array_equal(a["target_mask"], np.isfinite(ws.y_true))
        assert np.all(a["target_mask"].sum(axis=1) >= 1)  # all-missing targets are dropped
        assert np.all(a["targets"][a["target_mask"] == 0] == 0)
        miss = np.isnan(y[a["times"].astype(int)])
        np.testing.assert_array_equal(a["mask"] == 0, miss)
    starts = data.splits["validation"].starts.tolist()
    assert 32 not in starts and 33 not in starts  # targets 40,41 and 41,42: all missing
    assert 31 in starts and 22 in starts  # targets 39,40 and 30,31: one of two observed


def test_normaliser_fit():
    n = Normaliser.fit(np.array([[1.0, np.nan, 5], [3.0, np.nan, 5]]), axis=0)
    np.testing.assert_allclose(n.mean, [2, 0, 5])
    np.testing.assert_allclose(n.std, [1, 1, 1])  # no value / constant: std 1
    np.testing.assert_allclose(n.invert(n.apply([[7.0, 2, 6]])), [[7, 2, 6]])


def test_batches_train_eval_and_resume():
    data = make_windows(np.sin(np.arange(300) / 4.0), 16, 4)
    ws = data.splits["validation"]
    K = len(ws)
    it = data.batches("validation", 8)
    batches = list(it)
    assert len(batches) == -(-K // 8)
    got = np.concatenate([b["targets"][b["example_mask"] > 0] for b in batches])
    np.testing.assert_array_equal(got, ws.arrays["targets"])  # every window once, in order
    pad = batches[-1]["example_mask"] == 0
    assert pad.sum() == (-K) % 8
    assert batches[-1]["mask"][pad].sum() == 0 and batches[-1]["target_mask"][pad].sum() == 0
    assert batches[0]["reset"].all() and batches[0]["inputs"].dtype == np.float32

    train = data.batches("train", 32, seed=1)
    assert len(train) == len(data.splits["train"]) // 32
    first = [next(train) for _ in range(len(train) + 2)]  # into the second epoch
    state = train.get_state()
    assert state == {"epoch": 1, "batch": 2}
    after = next(train)
    resumed = data.batches("train", 32, seed=1)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["inputs"], after["inputs"])
    again = data.batches("train", 32, seed=1)
    np.testing.assert_array_equal(next(again)["targets"], first[0]["targets"])
    other = data.batches("train", 32, seed=2)
    assert not np.array_equal(next(other)["targets"], first[0]["targets"])
    with pytest.raises(ValueError, match="batch_size"):
        Batches(ws.take, 3, 8, train=True)
    with pytest.raises(ValueError, match="out of range"):
        train.set_state({"epoch": 0, "batch": 10_000})


def test_argument_errors():
    with pytest.raises(ValueError, match="layout"):
        make_windows(np.arange(50.0), 5, 1, layout="dense")
    with pytest.raises(ValueError, match="must be positive"):
        make_windows(np.arange(50.0), 0, 1)


def test_batches_feed_the_sequence_model():
    """The batch keys and shapes are what ltf.models.SequenceModel takes."""
    import jax

    from ltf.models import SequenceModel

    data = make_windows(irregular.poisson(np.sin(np.arange(200) / 3.0), 0.5), 16, 3,
                        layout="events")
    b = next(data.batches("train", 4))
    model = SequenceModel.build(d_values=1, d_out=3, head="last", use_obs_mask=True,
                                cell="time_aware", d_hidden=8)
    out, _ = model.apply(model.init(jax.random.PRNGKey(0)), b["inputs"], b["dt"], b["mask"],
                         b["obs_mask"])
    assert out.shape == b["targets"].shape and np.isfinite(np.asarray(out)).all()
