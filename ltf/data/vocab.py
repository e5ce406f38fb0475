"""Vocabularies for language modelling: characters or whitespace-separated words.

A `Vocab` is built from the training split only and saved beside a run as JSON, so that
sampling from a trained model can decode its ids without the corpus.

- level "char": one id per distinct character of the training text, in code-point order,
  then `<unk>` as the last id. Characters unseen in train (in validation or test) map to
  `<unk>`; `<unk>` decodes to the five characters "<unk>".
- level "word": a text is split on whitespace line by line and `<eos>` closes every line
  (PTB's convention). Ids go by descending training frequency, ties alphabetical; `<eos>` and
  `<unk>` are always in the vocabulary (PTB's files already contain `<unk>`). Out-of-vocabulary
  words map to `<unk>`. Decoding joins words with spaces and turns `<eos>` into a line break.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

UNK = "<unk>"
EOS = "<eos>"
LEVELS = ("char", "word")


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"data.level: unknown level {level!r}; use one of {LEVELS}")
    return level


def split_words(text: str) -> list[str]:
    """Whitespace split with `<eos>` appended at each line end (empty lines give `<eos>` too)."""
    words = []
    for line in text.splitlines():
        words.extend(line.split())
        words.append(EOS)
    return words


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token strings by id; `level` says how text is cut into tokens."""

    level: str
    tokens: tuple[str, ...]

    def __post_init__(self):
        check_level(self.level)
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("Vocab: duplicate tokens")
        if UNK not in self.tokens:
            raise ValueError(f"Vocab: the tokens must include {UNK!r}")

    # -- building ----------------------------------------------------------------------
    @classmethod
    def build(cls, train_text: str, level: str) -> Vocab:
        """Builds the vocabulary of a training text (see the module docstring for the order)."""
        if check_level(level) == "char":
            return cls("char", tuple(sorted(set(train_text))) + (UNK,))
        counts = collections.Counter(split_words(train_text))
        counts.setdefault(UNK, 0)
        counts.setdefault(EOS, 0)
        return cls("word", tuple(sorted(counts, key=lambda w: (-counts[w], w))))

    # -- lookups -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int:
        return self.index[UNK]

    @property
    def eos_id(self) -> int | None:
        return self.index.get(EOS)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    # -- encode / decode ---------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        """Text -> int32 ids (words: `<eos>` after every line)."""
        if self.level == "word":
            return self.encode_tokens(split_words(text))
        # Vectorised char lookup: code points of the text against the sorted vocab code points.
        chars = [t for t in self.tokens if len(t) == 1]
        if not chars:
            return np.full(len(text), self.unk_id, np.int32)
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        ids = np.array([self.index[c] for c in chars], dtype=np.int32)
        order = np.argsort(codes)
        codes, ids = codes[order], ids[order]
        text_codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        pos = np.minimum(np.searchsorted(codes, text_codes), len(codes) - 1)
        return np.where(codes[pos] == text_codes, ids[pos], self.unk_id).astype(np.int32)

    def encode_tokens(self, tokens: Iterable[str]) -> np.ndarray:
        index, unk = self.index, self.unk_id
        return np.fromiter((index.get(t, unk) for t in tokens), dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> text; the inverse of `encode` up to `<unk>` and whitespace (words)."""
        toks = [self.tokens[int(i)] for i in np.asarray(ids).reshape(-1)]
        if self.level == "char":
            return "".join(toks)
        lines, line = [], []
        for t in toks:
            if t == EOS:
                lines.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(t)
        return "".join(lines) + " ".join(line)

    # -- JSON --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"level": self.level, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, d: dict) -> Vocab:
        return cls(d["level"], tuple(d["tokens"]))

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(json.load(f))
