"""PhysioNet/CinC 2012 loader: records written here in the challenge's format, odd cases
included; the tests marked `data` read ../shared/data/physionet2012 and skip when it is absent."""

import io
import tarfile

import numpy as np
import pytest

from conftest import SHARED_DATA, require_file
from ltf.series import physionet as pn
from ltf.series.physionet import VARIABLES, PhysioNetFormatError

V = {v: i for i, v in enumerate(VARIABLES)}
HAND = """Time,Parameter,Value
00:00,RecordID,1001
00:00,Age,54
00:00,Gender,0
00:00,Height,-1
00:00,ICUType,4
00:00,Weight,80
00:07,HR,73
00:07,Temp,35.1
00:37,HR,77
00:37,HR,79
01:37,Weight,81
01:37,Temp,-1
02:00,GCS,15
03:00,Temp,-1
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test writes ~/.cache."""
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "env_cache"))


def record(rid: int, rng, n_events: int = 5, age: float = 60, icu: int = 2, scale: float = 1.0,
           height: float = 170) -> str:
    lines = ["Time,Parameter,Value", f"00:00,RecordID,{rid}", f"00:00,Age,{age}",
             f"00:00,Gender,{rid % 2}", f"00:00,Height,{height}", f"00:00,ICUType,{icu}",
             "00:00,Weight,75"]
    for k in range(n_events):
        t = 30 * (k + 1) + int(rng.integers(0, 20))
        lines.append(f"{t // 60:02d}:{t % 60:02d},HR,{scale * rng.normal(80, 10):.1f}")
        if k % 2:
            lines.append(f"{t // 60:02d}:{t % 60:02d},MAP,{scale * rng.normal(90, 5):.1f}")
    return "\n".join(lines) + "\n"


def write_set(folder, letter="a", n=40, seed=0, deaths_every=4, scale=None):
    """A set of n records <folder>/set-<letter>/<id>.txt and <folder>/Outcomes-<letter>.txt."""
    rng = np.random.default_rng(seed)
    d = folder / f"set-{letter}"
    d.mkdir(parents=True, exist_ok=True)
    out = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
    ids = [200000 + 7 * i for i in range(n)]
    for i, rid in enumerate(ids):
        s = 1.0 if scale is None else scale(rid)
        (d / f"{rid}.txt").write_text(record(rid, rng, 3 + i % 6, scale=s))
        out.append(f"{rid},{10 + i % 5},-1,{5 + i % 3},-1,{int(i % deaths_every == 0)}")
    (folder / f"Outcomes-{letter}.txt").write_text("\n".join(out) + "\n")
    return ids


def tar_folder(folder, letter="a"):
    path = folder / f"set-{letter}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder / f"set-{letter}", arcname=f"set-{letter}")
    return path


# -- one record: rules and the hand-computed example -------------------------------------------


def test_hand_computed_record():
    rid, static, times, values = pn.parse_record(HAND, "hand.txt")
    assert rid == 1001
    np.testing.assert_array_equal(static, [54, 0, np.nan, 4, 80])  # Height -1: missing
    # 01:37 has Weight; 03:00 only a -1 (missing) Temp, so it is no event
    np.testing.assert_allclose(times, [7 / 60, 37 / 60, 97 / 60, 2.0])
    np.testing.assert_allclose(values[:, V["HR"]], [73, 78, np.nan, np.nan])  # duplicate: mean
    np.testing.assert_allclose(values[:, V["Temp"]], [35.1, np.nan, np.nan, np.nan])
    # the 00:00 Weight is the static admission weight, not a time-series observation
    np.testing.assert_allclose(values[:, V["Weight"]], [np.nan, np.nan, 81, np.nan])
    np.testing.assert_allclose(values[:, V["GCS"]], [np.nan, np.nan, np.nan, 15])
    assert np.isnan(values[:, V["Albumin"]]).all()


def test_hand_computed_dt_and_masks(tmp_path):
    (tmp_path / "set-a").mkdir()
    (tmp_path / "set-a" / "1001.txt").write_text(HAND)
    (tmp_path / "Outcomes-a.txt").write_text("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,"
                                             "In-hospital_death\n1001,-1,3,5,-1,1\n")
    stays = pn.read_stays(tmp_path / "set-a", tmp_path / "Outcomes-a.txt")
    assert stays.labels.tolist() == [1] and np.isnan(stays.outcomes[0, 0])
    a = pn.stay_arrays(stays, 0)
    t = np.array([7, 37, 97, 120]) / 60
    np.testing.assert_allclose(a["dt"][:, 0], [7 / 60, 30 / 60, 1.0, 23 / 60], rtol=1e-6)
    expect_mask = {"HR": [1, 1, 0, 0], "Temp": [1, 0, 0, 0], "Weight": [0, 0, 1, 0],
                   "GCS": [0, 0, 0, 1], "Albumin": [0, 0, 0, 0]}
    # hours since the variable's previous observation strictly before the event (else admission)
    expect_dt = {"HR": [t[0], t[1] - t[0], t[2] - t[1], t[3] - t[1]],
                 "Temp": [t[0], t[1] - t[0], t[2] - t[0], t[3] - t[0]],
                 "Weight": list(t[:3]) + [t[3] - t[2]],
                 "GCS": list(t), "Albumin": list(t)}
    for name in expect_mask:
        np.testing.assert_array_equal(a["mask"][:, V[name]], expect_mask[name], err_msg=name)
        np.testing.assert_allclose(a["dt_var"][:, V[name]], expect_dt[name], rtol=1e-6,
                                   err_msg=name)
    assert a["mask"].sum() == 5  # HR twice, Temp, Weight, GCS


@pytest.mark.parametrize("line, why", [
    ("00:07,HR", "3 comma-separated fields"),
    ("00:07,HR,73,1", "3 comma-separated fields"),
    ("0x:07,HR,73", "HH:MM"),
    ("00:7,HR,73", "HH:MM"),
    ("00:61,HR,73", "HH:MM"),
    ("00:07,HR,seventy", "not a number"),
    ("00:07,HR,nan", "not finite"),
    ("00:07,Pulse,73", "unknown parameter 'Pulse'"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, why):
    write_set(tmp_path, n=3)
    bad = tmp_path / "set-a" / "200007.txt"
    lines = bad.read_text().splitlines()
    lines.insert(8, line)  # becomes line 9 of the file
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(PhysioNetFormatError, match=why) as err:
        pn.read_stays(tmp_path / "set-a", tmp_path / "Outcomes-a.txt")
    assert f"{bad}, line 9" in str(err.value)
    # the same through a tarball names the archive and the member
    with pytest.raises(PhysioNetFormatError, match="set-a.tar.gz:set-a/200007.txt, line 9"):
        pn.read_stays(tar_folder(tmp_path), tmp_path / "Outcomes-a.txt")


def test_bad_header_and_outcomes(tmp_path):
    with pytest.raises(PhysioNetFormatError, match="x.txt, line 1: expected the header"):
        pn.parse_record("Time,Param,Value\n00:00,HR,1\n", "x.txt")
    write_set(tmp_path, n=3)
    out = tmp_path / "Outcomes-a.txt"
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2] + ["200007,1,1,1,1,2"] + lines[3:]) + "\n")
    with pytest.raises(PhysioNetFormatError, match=r"Outcomes-a.txt, line 3: In-hospital_death"):
        pn.read_outcomes(out)
    out.write_text("\n".join(lines[:3]) + "\n")  # no outcome for 200014
    with pytest.raises(PhysioNetFormatError, match=r"no outcome for 1 record.*200014"):
        pn.read_stays(tmp_path / "set-a", out)


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="physionet.org/files/challenge-2012") as err:
        pn.load_physionet(tmp_path)
    assert "set-a.tar.gz" in str(err.value) and "Outcomes-a.txt" in str(err.value)
    with pytest.raises(FileNotFoundError, match="data_dir=None"):
        pn.load_physionet(None)
    write_set(tmp_path, n=3)
    (tmp_path / "Outcomes-a.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no outcomes file .*Outcomes-a.txt"):
        pn.load_physionet(tmp_path)


def test_record_without_time_series_is_kept(tmp_path):
    write_set(tmp_path, n=4)
    (tmp_path / "set-a" / "200000.txt").write_text(
        "Time,Parameter,Value\n00:00,RecordID,200000\n00:00,Age,70\n00:00,Weight,-1\n")
    stays = pn.read_stays(tmp_path / "set-a", tmp_path / "Outcomes-a.txt")
    assert stays.lengths[0] == 0 and np.isnan(stays.static[0, pn.STATIC.index("Weight")])
    a = pn.stay_arrays(stays, 0)
    assert a["values"].shape == (0, 37) and a["dt"].shape == (0, 1)


# -- sets: folder or tarball, cache, split, normalisation, batches ------------------------------


def test_tarball_equals_folder_and_cache(tmp_path, monkeypatch):
    write_set(tmp_path, n=12)
    folder = pn.read_stays(tmp_path / "set-a", tmp_path / "Outcomes-a.txt")
    tar = pn.load_stays(tar_folder(tmp_path), tmp_path / "Outcomes-a.txt", cache_dir=tmp_path / "c")
    assert np.all(np.diff(folder.record_ids) > 0)
    for k in ("record_ids", "offsets", "times", "values", "static", "labels", "outcomes"):
        np.testing.assert_array_equal(getattr(folder, k), getattr(tar, k), err_msg=k)
    monkeypatch.setattr(pn, "read_stays", lambda *a, **k: pytest.fail("cache missed"))
    again = pn.load_stays(tmp_path / "set-a.tar.gz", tmp_path / "Outcomes-a.txt",
                          cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.values, folder.values)
    assert len(list((tmp_path / "c" / "physionet2012").glob("set-a-*.npz"))) == 1


def test_stratified_split_is_documented_and_deterministic():
    labels = np.r_[np.zeros(86, int), np.ones(14, int)]
    s = pn.stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert [len(s[k]) for k in ("train", "validation", "test")] == [80, 10, 10]
    assert [int(labels[s[k]].sum()) for k in ("train", "validation", "test")] == [11, 1, 2]
    assert sorted(np.concatenate(list(s.values()))) == list(range(100))
    again = pn.stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    other = pn.stratified_split(labels, (0.8, 0.1, 0.1), seed=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["test"], other["test"])


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


def test_batches_shapes_padding_and_static(tmp_path):
    write_set(tmp_path, n=40)
    (tmp_path / "set-a" / "200000.txt").write_text(record(200000, np.random.default_rng(1), 4,
                                                          icu=3, height=-1))
    data = pn.load_physionet(tmp_path)
    T = data.max_len
    assert T == max(int(s.lengths.max()) for s in data.splits.values())
    it = data.batches("validation", 3)
    batches = list(it)
    assert len(batches) == 2 and it.get_state() == {"epoch": 0, "batch": 2}
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
def test_real_set_a_subset(tmp_path):
    """The first 300 records of the real tarball, parsed from an extracted folder."""
    tarball = require_file(SHARED_DATA / "physionet2012" / "set-a.tar.gz")
    outcomes = require_file(SHARED_DATA / "physionet2012" / "Outcomes-a.txt")
    with tarfile.open(tarball) as tar:
        members = [m for m in tar if m.isfile() and m.name.endswith(".txt")][:300]
        tar.extractall(tmp_path, members=members, filter="data")
    stays = pn.read_stays(tmp_path / "set-a", outcomes)
    labels = pn.read_outcomes(outcomes)
    assert len(stays) == 300 and len(labels) == 4000
    assert stays.labels.tolist() == [labels[int(i)][0] for i in stays.record_ids]
    assert stays.times.min() >= 0 and stays.times.max() <= 48
    hr = stays.values[:, V["HR"]]
    assert 20 < np.nanmedian(hr) < 150
    ages = stays.static[:, pn.STATIC.index("Age")]
    assert np.all((ages >= 15) & (ages <= 90))


@pytest.mark.data
@pytest.mark.slow
def test_real_set_a_whole(tmp_path):
    """All 4,000 stays (about 3 s to parse on 2 cores), the documented split and the baseline."""
    from ltf.series import baselines

    data_dir = require_file(SHARED_DATA / "physionet2012")
    require_file(data_dir / "set-a.tar.gz")
    data = pn.load_physionet(data_dir, cache_dir=tmp_path)
    sizes = {k: (len(s), int(s.labels.sum())) for k, s in data.splits.items()}
    assert sizes == {"train": (3200, 443), "validation": (400, 55), "test": (400, 56)}
    assert data.max_len == 202
    result = baselines.physionet_logistic_baseline(data)
    assert result["metrics"]["test"]["auroc"] > 0.75
