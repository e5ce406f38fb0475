"""The PhysioNet/CinC 2012 files: records written here in the challenge's format, odd cases
included; the test marked `data` reads ../shared/data/physionet2012 and skips when it is absent."""

import tarfile

import numpy as np
import pytest

from conftest import SHARED_DATA, require_file
from ltf.data.series import physionet as pn
from ltf.data.series import physionet_format as pf
from ltf.data.series.physionet_format import PhysioNetFormatError
from physionet_files import HAND, V, tar_folder, write_set


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test writes ~/.cache."""
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "env_cache"))



# -- one record: rules and the hand-computed example -------------------------------------------


def test_hand_computed_record():
    rid, static, times, values = pf.parse_record(HAND, "hand.txt")
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
    stays = pf.read_stays(tmp_path / "set-a", tmp_path / "Outcomes-a.txt")
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
        pf.read_stays(tmp_path / "set-a", tmp_path / "Outcomes-a.txt")
    assert f"{bad}, line 9" in str(err.value)
    # the same through a tarball names the archive and the member
    with pytest.raises(PhysioNetFormatError, match="set-a.tar.gz:set-a/200007.txt, line 9"):
        pf.read_stays(tar_folder(tmp_path), tmp_path / "Outcomes-a.txt")


def test_bad_header_and_outcomes(tmp_path):
    with pytest.raises(PhysioNetFormatError, match="x.txt, line 1: expected the header"):
        pf.parse_record("Time,Param,Value\n00:00,HR,1\n", "x.txt")
    write_set(tmp_path, n=3)
    out = tmp_path / "Outcomes-a.txt"
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2] + ["200007,1,1,1,1,2"] + lines[3:]) + "\n")
    with pytest.raises(PhysioNetFormatError, match=r"Outcomes-a.txt, line 3: In-hospital_death"):
        pf.read_outcomes(out)
    out.write_text("\n".join(lines[:3]) + "\n")  # no outcome for 200014
    with pytest.raises(PhysioNetFormatError, match=r"no outcome for 1 record.*200014"):
        pf.read_stays(tmp_path / "set-a", out)


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
    stays = pf.read_stays(tmp_path / "set-a", tmp_path / "Outcomes-a.txt")
    assert stays.lengths[0] == 0 and np.isnan(stays.static[0, pf.STATIC.index("Weight")])
    a = pn.stay_arrays(stays, 0)
    assert a["values"].shape == (0, 37) and a["dt"].shape == (0, 1)


# -- the real set A ---------------------------------------------------------------------------


@pytest.mark.data
def test_real_set_a_subset(tmp_path):
    """The first 300 records of the real tarball, parsed from an extracted folder."""
    tarball = require_file(SHARED_DATA / "physionet2012" / "set-a.tar.gz")
    outcomes = require_file(SHARED_DATA / "physionet2012" / "Outcomes-a.txt")
    with tarfile.open(tarball) as tar:
        members = [m for m in tar if m.isfile() and m.name.endswith(".txt")][:300]
        tar.extractall(tmp_path, members=members, filter="data")
    stays = pf.read_stays(tmp_path / "set-a", outcomes)
    labels = pf.read_outcomes(outcomes)
    assert len(stays) == 300 and len(labels) == 4000
    assert stays.labels.tolist() == [labels[int(i)][0] for i in stays.record_ids]
    assert stays.times.min() >= 0 and stays.times.max() <= 48
    hr = stays.values[:, V["HR"]]
    assert 20 < np.nanmedian(hr) < 150
    ages = stays.static[:, pf.STATIC.index("Age")]
    assert np.all((ages >= 15) & (ages <= 90))
