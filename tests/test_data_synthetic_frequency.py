"""Frequency discrimination (Neil, Pfeiffer & Liu 2016): distributions, samplings, padding."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from ltf.data.synthetic import frequency as fq


def many_waves(n_batches=100, batch_size=32, balanced=True, seed=0):
    rng = np.random.default_rng(seed)
    waves = [fq.sample_waves(rng, batch_size, balanced=balanced) for _ in range(n_batches)]
    return waves, {f: np.concatenate([getattr(w, f) for w in waves])
                   for f in ("period", "phase", "duration", "start", "label")}


def test_every_batch_is_exactly_half_class_one():
    waves, _ = many_waves()
    for w in waves:
        assert w.label.sum() == 16 and w.label.dtype == np.int32
        in_band = (w.period >= 5) & (w.period <= 6)
        np.testing.assert_array_equal(w.label, in_band)
    odd = fq.sample_waves(np.random.default_rng(1), 33)
    assert odd.label.sum() == 16  # B // 2


def test_period_distributions_ks():
    """Class 0: log-uniform on [1, 100] without [5, 6]; class 1: uniform on [5, 6] (KS tests)."""
    _, w = many_waves()  # 1,600 of each class
    lo, hi, blo, bhi = math.log(1), math.log(100), math.log(5), math.log(6)
    width = (hi - lo) - (bhi - blo)

    def outside_cdf(x):  # CDF of log P for class 0
        x = np.asarray(x)
        below = np.where(x < bhi, blo - lo, x - lo - (bhi - blo))
        return np.clip(np.where(x < blo, x - lo, below) / width, 0, 1)

    log_p0 = np.log(w["period"][w["label"] == 0])
    assert stats.kstest(log_p0, outside_cdf).pvalue > 1e-3
    assert stats.kstest(w["period"][w["label"] == 1], stats.uniform(5, 1).cdf).pvalue > 1e-3
    assert log_p0.min() >= lo and log_p0.max() <= hi
    # The test has power: log-uniform is far from uniform in P itself.
    p0 = w["period"][w["label"] == 0]
    assert stats.kstest(p0, stats.uniform(1, 99).cdf).pvalue < 1e-6


def test_unbalanced_is_the_authors_log_uniform():
    _, w = many_waves(balanced=False)
    forced = 1600  # half of every batch is in the band; the rest is log-uniform over [1, 100]
    extra = w["label"].sum() - forced
    p_band = math.log(6 / 5) / math.log(100)
    assert abs(extra / 1600 - p_band) < 5 * math.sqrt(p_band * (1 - p_band) / 1600)
    log_p = np.log(w["period"][w["label"] == 0])
    # Class-0 periods of the unbalanced draw follow the same conditional law as balanced ones.
    _, wb = many_waves(seed=1)
    assert stats.ks_2samp(log_p, np.log(wb["period"][wb["label"] == 0])).pvalue > 1e-3
    assert fq.frequency_baseline(balanced=False)["accuracy"] == pytest.approx(0.5 + p_band / 2)
    assert fq.frequency_baseline() == {"accuracy": 0.5, "cross_entropy": pytest.approx(math.log(2))}


def test_duration_start_and_phase_ranges():
    _, w = many_waves()
    assert w["duration"].min() >= 15 and w["duration"].max() <= 125
    assert w["start"].min() >= 0 and np.all(w["start"] + w["duration"] <= 125 + 1e-9)
    assert w["phase"].min() >= 0 and w["phase"].max() < 2 * np.pi
    assert stats.kstest(w["duration"], stats.uniform(15, 110).cdf).pvalue > 1e-3
    # start / (125 - duration) is U[0, 1]
    assert stats.kstest(w["start"] / (125 - w["duration"]), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("sampling", fq.SAMPLINGS)
def test_batches_times_dt_values_and_padding(sampling):
    rng = np.random.default_rng(7)
    waves = fq.sample_waves(rng, 32)
    times = fq.sample_times(rng, waves, sampling)
    batch = fq.pack_batch(waves, times)
    again = fq.frequency_batch(np.random.default_rng(7), 32, sampling)
    for key in batch:
        np.testing.assert_array_equal(batch[key], again[key])
    lengths = np.array([len(t) for t in times])
    L = lengths.max()
    assert batch["inputs"].shape == (32, L, 2) and batch["dt"].shape == (32, L, 1)
    assert batch["times"].shape == (32, L) and batch["targets"].shape == (32,)
    np.testing.assert_array_equal(batch["targets"], waves.label)
    np.testing.assert_array_equal(batch["mask"], np.arange(L)[None] < lengths[:, None])
    np.testing.assert_array_equal(batch["target_mask"], np.arange(L)[None] == lengths[:, None] - 1)
    assert batch["reset"].all()
    dt = batch["dt"][..., 0]
    np.testing.assert_array_equal(batch["inputs"][..., 1], dt)
    assert np.all(dt >= 0) and np.all(dt[:, 0] == 0)
    for b in range(32):
        n, t = lengths[b], times[b]
        assert np.all(np.diff(t) >= 0)
        assert t[0] >= waves.start[b] and t[-1] < waves.start[b] + waves.duration[b]
        np.testing.assert_allclose(dt[b, 1:n], np.diff(batch["times"][b, :n]), atol=1e-4)
        np.testing.assert_allclose(batch["inputs"][b, :n, 0],
                                   np.sin(2 * np.pi * t / waves.period[b] + waves.phase[b]), atol=1e-6)
        # Padding: masked and zero everywhere.
        assert np.all(batch["inputs"][b, n:] == 0) and np.all(dt[b, n:] == 0)
        assert np.all(batch["times"][b, n:] == 0)
    if sampling == "async":
        assert lengths.min() >= 15 and lengths.max() <= 125
    else:
        res = fq.RESOLUTION_MS[sampling]
        np.testing.assert_allclose(dt[batch["mask"] > 0][dt[batch["mask"] > 0] > 0], res, atol=1e-4)
        np.testing.assert_array_equal(lengths, np.ceil(waves.duration / res - 1e-9).astype(int))
        assert lengths.min() >= round(15 / res) and lengths.max() <= fq.max_steps(sampling)


def test_async_point_counts_cover_15_to_125():
    rng = np.random.default_rng(8)
    counts = np.concatenate([[len(t) for t in fq.sample_times(rng, fq.sample_waves(rng, 32), "async")]
                             for _ in range(100)])
    assert counts.min() == 15 and counts.max() == 125
    assert abs(counts.mean() - 70) < 2


def test_fixed_padding_and_resume():
    assert [fq.max_steps(s) for s in fq.SAMPLINGS] == [125, 1250, 125]
    it = fq.frequency_batches(16, "high_res", seed=2, pad_to=fq.max_steps("high_res"))
    first = next(it)
    assert first["inputs"].shape == (16, 1250, 2)
    state = json.loads(json.dumps(it.get_state()))
    want = next(it)
    resumed = fq.frequency_batches(16, "high_res", seed=2, pad_to=1250)
    resumed.set_state(state)
    got = next(resumed)
    for key in want:
        np.testing.assert_array_equal(want[key], got[key])
    assert not np.array_equal(first["times"], want["times"])
    with pytest.raises(ValueError, match="pad_to"):
        fq.frequency_batch(np.random.default_rng(0), 16, "regular", pad_to=10)
    with pytest.raises(ValueError, match="sampling"):
        fq.frequency_batches(16, "sparse")


@pytest.mark.parametrize("sampling", fq.SAMPLINGS)
def test_inputs_choose_the_input_vector_and_nothing_else(sampling):
    batches = {inputs: fq.frequency_batch(np.random.default_rng(3), 8, sampling, inputs=inputs)
               for inputs in fq.INPUTS}
    value_dt, value, value_time = (batches[k] for k in ("value_dt", "value", "value_time"))
    assert value["inputs"].shape[-1] == fq.input_width("value") == 1
    assert value_time["inputs"].shape[-1] == fq.input_width("value_time") == 2
    np.testing.assert_array_equal(value["inputs"][..., 0], value_dt["inputs"][..., 0])
    np.testing.assert_array_equal(value_time["inputs"][..., 0], value_dt["inputs"][..., 0])
    np.testing.assert_array_equal(value_time["inputs"][..., 1], value_dt["times"])  # absolute time, 0 on padding
    for key in ("targets", "mask", "dt", "times", "target_mask"):  # the same waves, sampled at the same times
        np.testing.assert_array_equal(value[key], value_dt[key])
        np.testing.assert_array_equal(value_time[key], value_dt[key])
    with pytest.raises(ValueError, match="inputs='dt'.*value_time"):
        fq.frequency_batches(8, sampling, inputs="dt")
