"""The TFDS builder ptb: a tiny PTB-like folder written here, prepared and read back with
tfds.data_source; the stream rebuilt from the records is the file, and tokenises as the corpus
loader does. The test marked `data` prepares ../shared/data/ptb and skips when it is absent."""

import pytest
import tensorflow_datasets as tfds

from conftest import SHARED_DATA, require_file
from ltf.data.corpora import PTB_FILES, load_lm_corpus, read_text
from ltf.data.tfds import prepare
from ltf.data.tfds.ptb import NAME, Ptb
from ltf.data.vocab import Vocab


def write_ptb(d, test=True):
    d.mkdir()
    (d / "ptb.train.txt").write_text(" the cat sat \n the <unk> ran \n\n the cat \n N dogs \n")
    (d / "ptb.valid.txt").write_text(" the dog sat \n a cat")  # no final line break
    if test:
        (d / "ptb.test.txt").write_text(" cat \n")
    return d


def stream(data_dir, split) -> str:
    """The split's text in file order: records sorted by their index."""
    source = tfds.data_source(NAME, data_dir=str(data_dir), split=split)
    records = sorted((source[i] for i in range(len(source))), key=lambda r: r["index"])
    assert [r["index"] for r in records] == list(range(len(records)))
    return "".join(r["text"].decode() for r in records)


def test_records_rebuild_each_file_and_its_tokens(tmp_path):
    manual = write_ptb(tmp_path / "ptb")
    builder = prepare.prepare(Ptb, manual, tmp_path / "data")
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {
        "train": 5, "validation": 2, "test": 1}
    texts = {s: stream(tmp_path / "data", s) for s in ("train", "validation", "test")}
    assert texts == {s: read_text(manual / f) for s, f in PTB_FILES.items()}
    corpus = load_lm_corpus("ptb", data_dir=manual, cache_dir=tmp_path / "cache")
    vocab = Vocab.build(texts["train"], "word")
    assert vocab == corpus.vocab
    for s, text in texts.items():
        assert vocab.encode(text).tolist() == corpus.splits[s].tolist(), s


def test_test_split_only_when_its_file_is_there_and_missing_files_are_named(tmp_path):
    builder = prepare.prepare(Ptb, write_ptb(tmp_path / "ptb", test=False), tmp_path / "data")
    assert set(builder.info.splits) == {"train", "validation"}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ptb.train.txt").write_text(" a \n")
    with pytest.raises(FileNotFoundError, match="(?s)no file .*ptb.valid.txt.*Zaremba"):
        prepare.prepare(Ptb, tmp_path / "bad", tmp_path / "data2")


@pytest.mark.data
@pytest.mark.slow
def test_real_ptb(tmp_path):
    """~4 s to prepare and ~3 s to read back 45,438 lines (~25 s when the 2 cores are busy)."""
    manual = require_file(SHARED_DATA / "ptb" / "ptb.train.txt").parent
    builder = prepare.prepare(Ptb, manual, tmp_path)
    sizes = {s: i.num_examples for s, i in builder.info.splits.items()}
    assert {s: sizes[s] for s in ("train", "validation")} == {"train": 42_068, "validation": 3_370}
    for split, words in [("train", 887_521), ("validation", 70_390)]:
        text = stream(tmp_path, split)
        assert text == read_text(manual / PTB_FILES[split])
        assert len(text.split()) == words  # + one <eos> a line in the LM stream
    if "test" in sizes:  # the usual 78,669 words in 3,761 lines
        assert sizes["test"] == 3_761
