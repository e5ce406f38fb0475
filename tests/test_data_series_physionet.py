"""PhysioNet/CinC 2012 arrays: splits, normalisation, features and batches of sets written here;
the test marked `data` reads ../shared/data/physionet2012 and skips when it is absent."""

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, require_file
from ltf.data.series import physionet as pn
from ltf.data.series import physionet_format as pf
from ltf.data.tfds.physionet2012 import Physionet2012
from physionet_files import V, record, tar_folder, write_set


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test writes ~/.cache."""
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "env_cache"))



# -- sets: folder or tarball, cache, split, normalisation, batches ------------------------------


def test_prepared_once_from_a_tarball_equals_the_folder_and_changed_files_prepare_anew(
        tmp_path, monkeypatch):
    write_set(tmp_path / "folder", n=12)
    folder = pf.read_stays(tmp_path / "folder" / "set-a", tmp_path / "folder" / "Outcomes-a.txt")
    tar_dir = tmp_path / "tar"
    tar_dir.mkdir()
    tar_folder(tmp_path / "folder").rename(tar_dir / "set-a.tar.gz")
    (tar_dir / "Outcomes-a.txt").write_bytes((tmp_path / "folder" / "Outcomes-a.txt").read_bytes())
    tar = pn.load_sets(tar_dir, ["a"], cache_dir=tmp_path / "c")["set-a"]
    assert np.all(np.diff(folder.record_ids) > 0)
    for k in ("record_ids", "offsets", "times", "values", "static", "labels", "outcomes"):
        np.testing.assert_array_equal(getattr(folder, k), getattr(tar, k), err_msg=k)
        assert getattr(folder, k).dtype == getattr(tar, k).dtype, k
    prepared = pn.prepared_dir(tar_dir, tmp_path / "c")
    assert prepared.parent == tmp_path / "c" / "tfds"
    generate = Physionet2012._generate_examples
    monkeypatch.setattr(Physionet2012, "_generate_examples",
                        lambda *a: pytest.fail("prepared twice"))
    again = pn.load_sets(tar_dir, ["a"], cache_dir=tmp_path / "c")["set-a"]
    np.testing.assert_array_equal(again.values, folder.values)
    # an outcome changes: a new key, prepared anew, never the stale set
    monkeypatch.setattr(Physionet2012, "_generate_examples", generate)
    out = tar_dir / "Outcomes-a.txt"
    out.write_text(out.read_text().replace(f"{folder.record_ids[0]},10,", f"{folder.record_ids[0]},11,"))
    moved = pn.load_sets(tar_dir, ["a"], cache_dir=tmp_path / "c")["set-a"]
    assert pn.prepared_dir(tar_dir, tmp_path / "c") != prepared
    assert moved.outcomes[0, 0] == 11 and folder.outcomes[0, 0] == 10


def test_validation_values_do_not_reach_the_normaliser(tmp_path):
    write_set(tmp_path / "one", n=40)
    data = pn.load_physionet(tmp_path / "one")
    held_out = set(data.splits["validation"].record_ids) | set(data.splits["test"].record_ids)
    # the same set with every validation and test value multiplied by 10
    write_set(tmp_path / "two", n=40, scale=lambda rid: 10.0 if rid in held_out else 1.0)
    moved = pn.load_physionet(tmp_path / "two")
    np.testing.assert_array_equal(data.normaliser.mean, moved.normaliser.mean)
    np.testing.assert_array_equal(data.normaliser.std, moved.normaliser.std)
    for k, v in data.take("train", np.arange(8)).items():
        np.testing.assert_array_equal(v, moved.take("train", np.arange(8))[k], err_msg=k)
    assert not np.allclose(data.splits["validation"].values[:, V["HR"]],
                           moved.splits["validation"].values[:, V["HR"]], equal_nan=True)
    # while a training value does move it
    train0 = int(data.splits["train"].record_ids[0])
    write_set(tmp_path / "three", n=40, scale=lambda rid: 10.0 if rid == train0 else 1.0)
    assert not np.array_equal(pn.load_physionet(tmp_path / "three").normaliser.mean,
                              data.normaliser.mean)


def test_normaliser_statistics_and_never_observed_variable(tmp_path):
    write_set(tmp_path, n=40)
    data = pn.load_physionet(tmp_path)
    hr = data.splits["train"].values[:, V["HR"]].astype(np.float64)
    hr = hr[np.isfinite(hr)]
    np.testing.assert_allclose(data.normaliser.mean[V["HR"]], hr.mean(), rtol=1e-6)
    np.testing.assert_allclose(data.normaliser.std[V["HR"]], hr.std(), rtol=1e-5)
    assert (data.normaliser.mean[V["Albumin"]], data.normaliser.std[V["Albumin"]]) == (0, 1)
    batch = data.take("train", np.arange(len(data.splits["train"])))
    assert np.isfinite(batch["inputs"]).all() and batch["obs_mask"][..., V["Albumin"]].sum() == 0
    z = batch["inputs"][..., V["HR"]][batch["obs_mask"][..., V["HR"]] > 0]
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3


def test_winsorise_clips_every_split_to_the_training_quantiles(tmp_path):
    write_set(tmp_path / "one", n=40)
    plain = pn.load_physionet(tmp_path / "one")
    data = pn.load_physionet(tmp_path / "one", winsorise=0.1)
    hr = plain.splits["train"].values[:, V["HR"]].astype(np.float64)  # the raw values
    hr = hr[np.isfinite(hr)]
    low, high = np.quantile(hr, 0.1), np.quantile(hr, 0.9)
    np.testing.assert_allclose((data.bounds.low[V["HR"]], data.bounds.high[V["HR"]]), (low, high))
    clipped = np.clip(hr, low, high)  # the normaliser is fitted on the clipped training values
    np.testing.assert_allclose(data.normaliser.mean[V["HR"]], clipped.mean(), rtol=1e-6)
    np.testing.assert_allclose(data.normaliser.std[V["HR"]], clipped.std(), rtol=1e-5)
    assert data.bounds.low[V["Albumin"]] == -np.inf  # never observed: no bounds, no NaN warnings
    for split in ("train", "validation", "test"):  # every split clipped to the same bounds
        batch = data.take(split, np.arange(len(data.splits[split])))
        seen = batch["obs_mask"][..., V["HR"]] > 0
        z = batch["inputs"][..., V["HR"]][seen]
        raw = (z * data.normaliser.std[V["HR"]]) + data.normaliser.mean[V["HR"]]
        assert raw.min() >= low - 1e-3 and raw.max() <= high + 1e-3, split
        rows = np.arange(len(data.splits[split]))
        np.testing.assert_array_equal(seen, plain.take(split, rows)["obs_mask"][..., V["HR"]] > 0)
    # held-out values never move the bounds
    held_out = set(data.splits["validation"].record_ids) | set(data.splits["test"].record_ids)
    write_set(tmp_path / "two", n=40, scale=lambda rid: 10.0 if rid in held_out else 1.0)
    moved = pn.load_physionet(tmp_path / "two", winsorise=0.1)
    np.testing.assert_array_equal(data.bounds.high, moved.bounds.high)
    with pytest.raises(ValueError, match="winsorise=0.5"):
        pn.load_physionet(tmp_path / "one", winsorise=0.5)


def test_batch_summaries_are_the_baselines_standardised_with_training_statistics(tmp_path):
    from ltf.data.series import physionet_summaries as ps

    write_set(tmp_path / "one", n=40)
    assert "summaries" not in pn.load_physionet(tmp_path / "one").take("train", [0])  # only when asked
    data = pn.load_physionet(tmp_path / "one", summaries=True)
    train_X = ps.summary_features(data.splits["train"])
    ref = ps.SummaryScaler.fit(train_X)
    np.testing.assert_array_equal(data.summary_scaler.mean, ref.mean)
    for split in ("train", "test"):
        rows = np.arange(len(data.splits[split]))
        want = ref.apply(ps.summary_features(data.splits[split]))
        np.testing.assert_allclose(data.take(split, rows)["summaries"], want, rtol=1e-6, atol=1e-6)
    # held-out stays never reach the statistics; a training stay does
    held_out = set(data.splits["validation"].record_ids) | set(data.splits["test"].record_ids)
    write_set(tmp_path / "two", n=40, scale=lambda rid: 10.0 if rid in held_out else 1.0)
    moved = pn.load_physionet(tmp_path / "two", summaries=True).summary_scaler
    for k in ("fill", "mean", "std"):
        np.testing.assert_array_equal(getattr(moved, k), getattr(data.summary_scaler, k), err_msg=k)
    train0 = int(data.splits["train"].record_ids[0])
    write_set(tmp_path / "three", n=40, scale=lambda rid: 10.0 if rid == train0 else 1.0)
    assert not np.array_equal(pn.load_physionet(tmp_path / "three", summaries=True).summary_scaler.mean, ref.mean)


def test_batches_shapes_padding_and_static(tmp_path):
    write_set(tmp_path, n=40)
    (tmp_path / "set-a" / "200000.txt").write_text(record(200000, np.random.default_rng(1), 4,
                                                          icu=3, height=-1))
    data = pn.load_physionet(tmp_path)
    T = data.max_len
    assert T == max(int(s.lengths.max()) for s in data.splits.values())
    batches = list(data.batches("validation", 3))
    assert len(batches) == 2
    assert [b["record_id"][0] for b in batches] == list(data.splits["validation"].record_ids[::3])
    last = batches[-1]
    assert last["example_mask"].tolist() == [1, 0, 0]  # 4 validation stays in batches of 3
    assert last["mask"][1:].sum() == 0 and last["obs_mask"][1:].sum() == 0
    b = next(data.batches("train", 8, seed=3))
    assert b["inputs"].shape == (8, T, 37) and b["dt_var"].shape == (8, T, 37)
    assert b["dt"].shape == (8, T, 1) and b["mask"].shape == (8, T) and b["static"].shape == (8, 8)
    assert b["inputs"].dtype == np.float32 and b["targets"].dtype == np.int32
    np.testing.assert_array_equal(b["mask"].sum(1), b["length"])
    pad = b["mask"] == 0
    assert (b["dt"][pad] == 0).all() and (b["dt_var"][pad] == 0).all()
    assert (b["obs_mask"].sum(-1) >= 1)[~pad].all()  # every event observes something
    assert (b["dt"][~pad] >= 0).all()
    # stay 200000 (ICU 3, Height -1) in whichever split holds it
    split = next(k for k, s in data.splits.items() if 200000 in s.record_ids)
    i = int(np.flatnonzero(data.splits[split].record_ids == 200000)[0])
    one = data.take(split, [i])
    feats = dict(zip(pn.STATIC_FEATURES, one["static"][0]))
    known = dict(zip(pn.STATIC_FEATURES, one["static_mask"][0]))
    assert known["Height"] == 0 and feats["Height"] == 0
    assert [feats[f"ICUType={k}"] for k in range(1, 5)] == [0, 0, 1, 0]
    assert known["Age"] == 1 and known["Gender"] == 1


def test_training_batches_resume_exactly_and_reshuffle_every_epoch(tmp_path):
    write_set(tmp_path, n=40)
    data = pn.load_physionet(tmp_path)
    assert len(data.splits["train"]) == 32  # batches of 5: 6 an epoch, 2 stays left out
    it = data.batches("train", 5, seed=7)
    first = [next(it) for _ in range(4)]
    state = json.loads(json.dumps(it.get_state()))  # as the checkpoint stores it
    rest = [next(it) for _ in range(8)]  # into the second epoch
    resumed = data.batches("train", 5, seed=7)
    resumed.set_state(state)
    for a, b in zip(rest, [next(resumed) for _ in range(8)]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ids = [np.concatenate([b["record_id"] for b in part]) for part in ((first + rest)[:6],
                                                                        (first + rest)[6:])]
    assert len(set(ids[0])) == len(set(ids[1])) == 30
    assert not np.array_equal(ids[0], ids[1])  # a new permutation every epoch
    again = next(data.batches("train", 5, seed=7))["record_id"]
    np.testing.assert_array_equal(again, first[0]["record_id"])
    assert not np.array_equal(next(data.batches("train", 5, seed=8))["record_id"], again)
    with pytest.raises(ValueError, match="training needs at least batch_size=33"):
        data.batches("train", 33)


def test_extra_sets_for_evaluation(tmp_path):
    write_set(tmp_path, "a", n=20)
    write_set(tmp_path, "b", n=10, seed=5)
    tar_folder(tmp_path, "b")
    other = tmp_path / "elsewhere"
    write_set(other, "c", n=6, seed=6)
    data = pn.load_physionet(tmp_path, extra_sets=("b", other / "set-c"))
    assert list(data.splits) == ["train", "validation", "test", "set-b", "set-c"]
    assert len(data.splits["set-b"]) == 10 and len(data.splits["set-c"]) == 6
    assert next(data.batches("set-c", 4))["inputs"].shape[1] == data.max_len
    with pytest.raises(FileNotFoundError, match="set-d"):
        pn.load_physionet(tmp_path, extra_sets=("d",))


# -- the real set A ---------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.slow
def test_real_set_a_whole(tmp_path):
    """All 4,000 stays (about 3 s to parse on 2 cores), the documented split and the baseline."""
    from ltf import baselines

    data_dir = require_file(SHARED_DATA / "physionet2012")
    require_file(data_dir / "set-a.tar.gz")
    data = pn.load_physionet(data_dir, cache_dir=tmp_path)
    sizes = {k: (len(s), int(s.labels.sum())) for k, s in data.splits.items()}
    assert sizes == {"train": (3200, 443), "validation": (400, 55), "test": (400, 56)}
    assert data.max_len == 202
    result = baselines.physionet_logistic_baseline(data)
    assert result["metrics"]["test"]["auroc"] > 0.75
