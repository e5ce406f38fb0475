"""The TFDS builder physionet2012: prepared from challenge files written here, read back with
tfds.data_source and compared with the plain parser; the test marked `data` prepares the real
set A from ../shared/data/physionet2012 and skips when it is absent."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import SHARED_DATA, require_file
from ltf.data.series import physionet_format as pf
from ltf.data.series.physionet_format import PhysioNetFormatError, Stays
from ltf.data.tfds import prepare
from ltf.data.tfds.physionet2012 import NAME, Physionet2012, present_sets
from physionet_files import tar_folder, write_set

FIELDS = ("record_ids", "offsets", "times", "values", "static", "labels", "outcomes")


def read_back(data_dir, split) -> Stays:
    source = tfds.data_source(NAME, data_dir=str(data_dir), split=split)
    return Stays.from_examples(split, [source[i] for i in range(len(source))])


def assert_same_stays(a: Stays, b: Stays):
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
        assert getattr(a, k).dtype == getattr(b, k).dtype, k


def test_every_set_in_the_folder_is_a_split_equal_to_the_parser(tmp_path):
    manual = tmp_path / "manual"
    write_set(manual, "a", n=9)
    write_set(manual, "b", n=4, seed=3)
    tar_folder(manual, "b")
    (manual / "set-b").rename(tmp_path / "set-b-extracted")  # set B only as a tarball
    assert present_sets(manual) == ["a", "b"]
    builder = prepare.prepare(Physionet2012, manual, tmp_path / "data")
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"set_a": 9, "set_b": 4}
    assert builder.info.features["label"].names == ["survived", "died"]
    assert_same_stays(read_back(tmp_path / "data", "set_a"),
                      pf.read_stays(manual / "set-a", manual / "Outcomes-a.txt"))
    assert_same_stays(read_back(tmp_path / "data", "set_b"),
                      pf.read_stays(manual / "set-b.tar.gz", manual / "Outcomes-b.txt"))
    one = tfds.data_source(NAME, data_dir=str(tmp_path / "data"), split="set_a")[0]
    assert set(one) == {"record_id", "times", "values", "static", "label", "outcomes"}
    assert one["values"].shape == (len(one["times"]), 37) and one["values"].dtype == np.float32


def test_missing_or_corrupt_manual_folder_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)no manual folder .*nowhere.*set-a.tar.gz"):
        prepare.prepare(Physionet2012, tmp_path / "nowhere", tmp_path / "d1")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="(?s)no set-a/, set-a.tar.gz .*physionet.org"):
        prepare.prepare(Physionet2012, tmp_path / "empty", tmp_path / "d2")
    write_set(tmp_path / "m", n=3)
    (tmp_path / "m" / "Outcomes-a.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no outcomes file .*Outcomes-a.txt"):
        prepare.prepare(Physionet2012, tmp_path / "m", tmp_path / "d3")
    write_set(tmp_path / "m", n=3)
    (tmp_path / "m" / "set-a" / "200007.txt").write_text("Time,Parameter,Value\n00:07,HR,x\n")
    with pytest.raises(PhysioNetFormatError, match="200007.txt, line 2: the value is not a number"):
        prepare.prepare(Physionet2012, tmp_path / "m", tmp_path / "d4")
    out = tmp_path / "m" / "Outcomes-a.txt"
    write_set(tmp_path / "m", n=3)
    out.write_text("\n".join(out.read_text().splitlines()[:3]) + "\n")  # none for 200014
    with pytest.raises(PhysioNetFormatError, match="no outcome for RecordID 200014"):
        prepare.prepare(Physionet2012, tmp_path / "m", tmp_path / "d5")
    for d in ("d1", "d2", "d3", "d4", "d5"):  # nothing half-prepared is left to be read
        assert not Physionet2012(data_dir=str(tmp_path / d)).is_prepared()
    (tmp_path / "d6" / NAME / "1.0.0").mkdir(parents=True)  # emptied by hand
    with pytest.raises(FileExistsError, match="1.0.0 holds no complete physionet2012 data set"):
        prepare.prepare(Physionet2012, tmp_path / "m", tmp_path / "d6")


def test_a_preparation_another_process_finished_meanwhile_is_read(tmp_path, monkeypatch):
    """Two runs starting on a cold cache: the one that finishes second reads the first's."""
    write_set(tmp_path / "m", n=4)
    generate = Physionet2012._generate_examples

    def racing(self, records, outcomes):
        monkeypatch.setattr(Physionet2012, "_generate_examples", generate)
        prepare.prepare(Physionet2012, tmp_path / "m", tmp_path / "d")  # the other one wins
        yield from generate(self, records, outcomes)

    monkeypatch.setattr(Physionet2012, "_generate_examples", racing)
    builder = prepare.prepare(Physionet2012, tmp_path / "m", tmp_path / "d")
    assert builder.is_prepared() and builder.info.splits["set_a"].num_examples == 4
    assert len(tfds.data_source(NAME, data_dir=str(tmp_path / "d"), split="set_a")) == 4


def test_the_module_prepares_from_the_command_line(tmp_path, capsys):
    write_set(tmp_path / "m", n=5)
    prepare.main(["physionet2012", "--manual_dir", str(tmp_path / "m"),
                  "--data_dir", str(tmp_path / "d")])
    assert "physionet2012 in " in capsys.readouterr().out
    assert len(tfds.data_source(NAME, data_dir=str(tmp_path / "d"), split="set_a")) == 5


def test_files_key_follows_content_not_time(tmp_path):
    write_set(tmp_path, n=3)
    files = [tmp_path / "set-a", tmp_path / "Outcomes-a.txt"]
    key = prepare.files_key(files)
    (tmp_path / "Outcomes-a.txt").write_bytes((tmp_path / "Outcomes-a.txt").read_bytes())
    assert prepare.files_key(files) == key
    record = tmp_path / "set-a" / "200000.txt"
    record.write_text(record.read_text().replace("00:00,Age,60", "00:00,Age,61"))
    assert prepare.files_key(files) != key


@pytest.mark.data
@pytest.mark.slow
def test_real_set_a(tmp_path):
    """Prepares the real set A (~7-15 s on 2 busy cores) and compares it with the parser."""
    manual = require_file(SHARED_DATA / "physionet2012")
    require_file(manual / "set-a.tar.gz")
    builder = prepare.prepare(Physionet2012, manual, tmp_path)
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"set_a": 4000}
    stays = read_back(tmp_path, "set_a")
    assert len(stays) == 4000 and int(stays.labels.sum()) == 554
    assert_same_stays(stays, pf.read_stays(manual / "set-a.tar.gz", manual / "Outcomes-a.txt"))
