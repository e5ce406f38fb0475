"""TFDS builder `tiny_shakespeare_local`: karpathy's tiny_shakespeare from a local input.txt.

The same data and splits as the catalog's `tiny_shakespeare` (one example a split, `text` the
whole split: the first int(0.9·n) characters are train, of the rest the first half (int)
validation and the remainder test, 1,003,854 / 55,770 / 55,770 characters), read from a manual
folder instead of downloaded: the catalog's builder fetches the file from GitHub and reads it
with `tf.io.gfile`, so it needs TensorFlow and the network.

Why another name: TFDS keeps builders in one registry per process, by name. A builder named
`tiny_shakespeare` would take the catalog's place there: `tfds.builder("tiny_shakespeare")`
would silently give this one, and importing the catalog's module afterwards fails with
"Dataset with name tiny_shakespeare already registered" (TFDS 4.9.10). Data prepared under the
catalog's name could also not be told from the catalog's in a shared data_dir.

Build without TensorFlow: `python -m ltf.data.tfds.prepare tiny_shakespeare_local
--manual_dir DIR --data_dir OUT`, then `tfds.data_source("tiny_shakespeare_local", ...)`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import tensorflow_datasets as tfds

from ltf.data.corpora import TINY_SHAKESPEARE_URL, read_text, split_90_5_5

NAME = "tiny_shakespeare_local"
CITATION = """@misc{karpathy2015charrnn,
  author={Karpathy, Andrej},
  title={char-rnn},
  year={2015},
  howpublished={\\url{https://github.com/karpathy/char-rnn}}
}"""


class TinyShakespeareLocal(tfds.core.GeneratorBasedBuilder):
    """tiny_shakespeare from a local input.txt; see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The catalog's splits, read from a manual folder."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download {TINY_SHAKESPEARE_URL}
    (karpathy/char-rnn, data/tinyshakespeare/input.txt, 1,115,394 bytes) into a folder, the
    manual dir, keeping its name: <manual_dir>/input.txt.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="40,000 lines of Shakespeare's plays (karpathy/char-rnn), split 90/5/5 "
                        "by characters as in the TFDS catalog; one example a split.",
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            homepage="https://github.com/karpathy/char-rnn",
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        path = Path(dl_manager.manual_dir) / "input.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{NAME}: no file {path}.\n"
                                    + textwrap.dedent(self.MANUAL_DOWNLOAD_INSTRUCTIONS))
        texts = split_90_5_5(read_text(path))
        return {s: self._generate_examples(s, t) for s, t in texts.items()}

    def _generate_examples(self, split: str, text: str):
        yield split, {"text": text}
