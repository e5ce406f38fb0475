"""TFDS builder `physionet2012`: PhysioNet/CinC Challenge 2012, one example a stay.

Splits `set_a`, `set_b`, `set_c`: one for each set whose files are in the manual folder (set A
alone is the usual case; B and C are evaluation sets). The records are read by
`ltf.data.series.physionet_format` (its docstring has the rules), so an example holds exactly
what `read_stays` gives for that stay:

    record_id  int64                RecordID
    times      float64 [T]          hours since admission of the stay's T distinct events
    values     float32 [T,37]       raw units, NaN = not observed at that event (VARIABLES order)
    static     float64 [5]          Age, Gender, Height, ICUType, Weight at admission; NaN = missing
    label      ClassLabel           in-hospital death: 0 survived, 1 died
    outcomes   float64 [4]          SAPS-I, SOFA, Length_of_stay, Survival; NaN = missing

Arrays are stored as raw bytes (TFDS's `encoding="bytes"`): exact for float64, which tf.Example's
float list would round to float32, and decoded with one `np.frombuffer`. Records come back in
TFDS's hash order; sort by `record_id` for the challenge's order.

Build without TensorFlow (the `tfds build` command needs it to start; see ltf.data.tfds.prepare):

    python -m ltf.data.tfds.prepare physionet2012 --manual_dir ../shared/data/physionet2012 \\
        --data_dir ~/tensorflow_datasets
    tfds.data_source("physionet2012", data_dir=..., split="set_a")   # after importing this module
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ltf.data.series.physionet_format import (FILES_URL, OUTCOMES, STATIC, URL, VARIABLES,
                                              PhysioNetFormatError, locate_set, parse_record,
                                              read_outcomes, record_texts)

NAME = "physionet2012"
LETTERS = ("a", "b", "c")
CITATION = """@inproceedings{silva2012predicting,
  title={Predicting in-hospital mortality of {ICU} patients: The {PhysioNet/Computing} in
         {Cardiology} {Challenge} 2012},
  author={Silva, Ikaro and Moody, George and Scott, Daniel J and Celi, Leo A and Mark, Roger G},
  booktitle={Computing in Cardiology},
  volume={39},
  pages={245--248},
  year={2012}
}"""


def present_sets(manual_dir) -> list[str]:
    """The letters of the sets whose records (set-x/ or set-x.tar.gz) are in manual_dir."""
    d = Path(manual_dir)
    return [x for x in LETTERS if (d / f"set-{x}").is_dir() or (d / f"set-{x}.tar.gz").is_file()]


def set_files(manual_dir) -> list[Path]:
    """The files a preparation reads (records and outcomes of every present set), for a key."""
    files = []
    for x in present_sets(manual_dir):
        records, outcomes = locate_set(manual_dir, x)
        files += [records, outcomes]
    return files


class Physionet2012(tfds.core.GeneratorBasedBuilder):
    """PhysioNet/CinC Challenge 2012: the stays of sets A, B, C (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One example a stay; arrays as bytes; parser of ltf 0.1."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    The files cannot be downloaded at run time (Open Data Commons Attribution 1.0; cite Silva
    et al., Computing in Cardiology 2012). From {FILES_URL} (the challenge page: {URL}) fetch
    set-a.tar.gz and Outcomes-a.txt, and for the other sets set-b.tar.gz / Outcomes-b.txt and
    set-c.tar.gz / Outcomes-c.txt, into one folder, the manual dir:

        <manual_dir>/set-a.tar.gz     or the extracted <manual_dir>/set-a/<RecordID>.txt
        <manual_dir>/Outcomes-a.txt
        (likewise set-b, set-c: each present set becomes the split set_b, set_c)
    """

    def _info(self) -> tfds.core.DatasetInfo:
        def array(shape, dtype, doc):
            return tfds.features.Tensor(shape=shape, dtype=dtype, encoding="bytes", doc=doc)

        return tfds.core.DatasetInfo(
            builder=self,
            description="PhysioNet/CinC Challenge 2012: the first 48 h of ICU stays, 37 variables "
                        "at irregular times, and the in-hospital death of each patient.",
            features=tfds.features.FeaturesDict({
                "record_id": tfds.features.Scalar(np.int64, doc="RecordID"),
                "times": array((None,), np.float64, "hours since ICU admission of each event"),
                "values": array((None, len(VARIABLES)), np.float32,
                                "raw values, NaN = unobserved; variables: " + ",".join(VARIABLES)),
                "static": array((len(STATIC),), np.float64, ",".join(STATIC) + "; NaN = missing"),
                "label": tfds.features.ClassLabel(names=["survived", "died"]),
                "outcomes": array((len(OUTCOMES),), np.float64,
                                  ",".join(OUTCOMES) + "; NaN = missing"),
            }),
            homepage=URL,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        manual_dir = Path(dl_manager.manual_dir)
        letters = present_sets(manual_dir)
        if not letters:
            raise FileNotFoundError(f"{manual_dir}: no set-a/, set-a.tar.gz (nor set-b, set-c) "
                                    "in it.\n" + textwrap.dedent(self.MANUAL_DOWNLOAD_INSTRUCTIONS))
        return {f"set_{x}": self._generate_examples(*locate_set(manual_dir, x)) for x in letters}

    def _generate_examples(self, records: Path, outcomes: Path):
        labels = read_outcomes(outcomes)
        sources: dict[int, str] = {}
        for source, text in record_texts(records):
            record_id, static, times, values = parse_record(text, source)
            if record_id in sources:  # TFDS would say only "duplicated key"
                raise PhysioNetFormatError(f"RecordID {record_id} appears in {sources[record_id]} "
                                           f"and {source}")
            if record_id not in labels:
                raise PhysioNetFormatError(f"{outcomes}: no outcome for RecordID {record_id} "
                                           f"({source})")
            sources[record_id] = source
            label, extra = labels[record_id]
            yield record_id, {"record_id": record_id, "times": times.astype(np.float64),
                              "values": values.astype(np.float32), "static": static,
                              "label": label, "outcomes": extra.astype(np.float64)}
        if not sources:
            raise FileNotFoundError(f"{records}: no record files (<RecordID>.txt) in it")
