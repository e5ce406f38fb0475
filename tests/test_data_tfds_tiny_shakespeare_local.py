"""The TFDS builder tiny_shakespeare_local: a tiny input.txt written here, prepared and read
back with tfds.data_source, split as the corpus loader splits it; its name leaves the catalog's
tiny_shakespeare alone. The test marked `data` reads ../shared/data/tinyshakespeare."""

import pytest
import tensorflow_datasets as tfds

from conftest import SHARED_DATA, require_file
from ltf.data.corpora import load_lm_corpus, read_text, split_90_5_5
from ltf.data.tfds import prepare
from ltf.data.tfds.tiny_shakespeare_local import NAME, TinyShakespeareLocal


def texts(data_dir) -> dict[str, str]:
    out = {}
    for split in ("train", "validation", "test"):
        source = tfds.data_source(NAME, data_dir=str(data_dir), split=split)
        assert len(source) == 1
        out[split] = source[0]["text"].decode()
    return out


def test_splits_are_the_corpus_loaders(tmp_path):
    (tmp_path / "m").mkdir()
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 3
    (tmp_path / "m" / "input.txt").write_text(text)
    prepare.prepare(TinyShakespeareLocal, tmp_path / "m", tmp_path / "data")
    got = texts(tmp_path / "data")
    assert got == split_90_5_5(text) and "".join(got.values()) == text
    corpus = load_lm_corpus("tiny_shakespeare", data_dir=tmp_path / "m", cache_dir=tmp_path / "c")
    assert {s: corpus.vocab.decode(ids) for s, ids in corpus.splits.items()} == got


def test_missing_file_and_the_catalog_name(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(FileNotFoundError, match="(?s)no manual folder .*an empty one.*input.txt"):
        prepare.prepare(TinyShakespeareLocal, tmp_path / "m", tmp_path / "data")
    (tmp_path / "m" / "tiny.txt").write_text("misnamed")
    with pytest.raises(FileNotFoundError, match="(?s)no file .*input.txt.*karpathy/char-rnn"):
        prepare.prepare(TinyShakespeareLocal, tmp_path / "m", tmp_path / "data")
    # the catalog's builder is still the catalog's (importing it needs no network)
    assert tfds.builder_cls("tiny_shakespeare").__module__.startswith("tensorflow_datasets.")
    assert tfds.builder_cls(NAME) is TinyShakespeareLocal


@pytest.mark.data
def test_real_file_matches_tfds_counts(tmp_path):
    path = require_file(SHARED_DATA / "tinyshakespeare" / "input.txt")
    prepare.prepare(TinyShakespeareLocal, path.parent, tmp_path)
    got = texts(tmp_path)
    assert {s: len(t) for s, t in got.items()} == {"train": 1_003_854, "validation": 55_770,
                                                   "test": 55_770}
    assert "".join(got.values()) == read_text(path)
