"""PhysioNet/CinC Challenge 2012, the files: records and outcomes as the challenge ships them.

Files (not downloadable at run time: fetch them from
https://physionet.org/content/challenge-2012/1.0.0/, Open Data Commons Attribution 1.0, and
cite Silva et al., Computing in Cardiology 2012):

    <data_dir>/set-a.tar.gz   or an extracted folder <data_dir>/set-a/ (one <RecordID>.txt a stay)
    <data_dir>/Outcomes-a.txt (RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death)
    ... likewise set-b / Outcomes-b.txt and set-c / Outcomes-c.txt for evaluation sets.

Record format: a header `Time,Parameter,Value`, then one observation a line, `HH:MM` since ICU
admission (00:00 to 48:00). How a record is read:

- Static descriptors: RecordID, Age, Gender (0 female, 1 male), Height (cm), ICUType (1
  coronary care, 2 cardiac surgery recovery, 3 medical, 4 surgical) are static wherever they
  appear (the first occurrence counts). Weight is both: the first Weight line, when it is at
  00:00 before any time-series line (the descriptor block at the top of every file), is the
  static admission weight; every later Weight line is the `Weight` time series.
- -1 marks a missing value (the challenge's convention for descriptors and outcomes); a line
  with value -1 is dropped, for every parameter (no variable here can take -1 for real).
  Other implausible values (e.g. Temp -17.8, blood pressures of 0) are kept as recorded.
- Duplicates (one variable twice at one time) are averaged, as in Rubanova et al. (2019)
  (their reduce="average"); times are kept to the minute, not quantised as theirs are.
- A stay is a sequence of its distinct observation times (events): times [T] in hours,
  values [T,37] (NaN where a variable is not observed at that event). A stay with no
  time-series line has T = 0 and is kept.
- A malformed line (not 3 fields, a bad time, a non-numeric value, an unknown parameter)
  raises `PhysioNetFormatError` naming the file and line.

The stays of a set come back as `Stays` (ragged arrays); `ltf.data.series.physionet` turns
them into splits, normalised features and batches.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tarfile
from pathlib import Path

import numpy as np

URL = "https://physionet.org/content/challenge-2012/1.0.0/"
FILES_URL = "https://physionet.org/files/challenge-2012/1.0.0/"
VARIABLES = (
    "Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine", "DiasABP",
    "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP", "MechVent", "Na",
    "NIDiasABP", "NIMAP", "NISysABP", "PaCO2", "PaO2", "pH", "Platelets", "RespRate", "SaO2",
    "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC", "Weight",
)
STATIC = ("Age", "Gender", "Height", "ICUType", "Weight")
OUTCOMES = ("SAPS-I", "SOFA", "Length_of_stay", "Survival")
HEADER = "Time,Parameter,Value"

_VAR = {v: i for i, v in enumerate(VARIABLES)}
_WEIGHT = _VAR["Weight"]
_STATIC_ONLY = frozenset(("RecordID", "Age", "Gender", "Height", "ICUType"))


class PhysioNetFormatError(ValueError):
    """A line of a record or outcomes file that does not follow the challenge's format."""


def _bad(source: str, lineno: int, line: str, why: str) -> PhysioNetFormatError:
    return PhysioNetFormatError(f"{source}, line {lineno}: {why}: {line!r}")


# -- one record -----------------------------------------------------------------------------


def parse_record(text: str, source: str = "<record>"):
    """(record_id, static [5] float64, times [T] hours, values [T,37] float64) of one record;
    see the module docstring for the rules. `source` names the file in errors."""
    lines = text.splitlines()
    if not lines or lines[0].strip().lstrip("\ufeff") != HEADER:
        raise _bad(source, 1, lines[0] if lines else "", f"expected the header {HEADER!r}")
    static: dict[str, float] = {}
    minutes, var, val = [], [], []
    seen_series = False
    time_minutes: dict[str, int] = {}  # a file repeats each time for every variable
    for lineno, line in enumerate(lines[1:], start=2):
        try:
            t, p, v = line.split(",")
        except ValueError:
            if not line.strip():
                continue
            raise _bad(source, lineno, line,
                       "expected 3 comma-separated fields Time,Parameter,Value") from None
        m = time_minutes.get(t)
        if m is None:
            hh, _, mm = t.strip().partition(":")
            if not (t.isascii() and hh.isdigit() and mm.isdigit() and len(mm) == 2
                    and int(mm) < 60):
                raise _bad(source, lineno, line, "expected the time as HH:MM")
            m = time_minutes[t] = int(hh) * 60 + int(mm)
        try:
            value = float(v)
        except ValueError:
            raise _bad(source, lineno, line, "the value is not a number") from None
        if not math.isfinite(value):
            raise _bad(source, lineno, line, "the value is not finite")
        k = _VAR.get(p)
        if k is None:
            p = p.strip()  # spaces around a name: rare, so off the fast path
            k = _VAR.get(p)
        if p in _STATIC_ONLY or (k == _WEIGHT and m == 0 and not seen_series
                                 and "Weight" not in static):
            static.setdefault(p, value)  # -1 becomes NaN below
            continue
        if k is None:
            raise _bad(source, lineno, line, f"unknown parameter {p!r}")
        seen_series = True
        if value != -1:  # -1: missing
            minutes.append(m), var.append(k), val.append(value)
    record_id = static.get("RecordID")
    if record_id is None:
        stem = Path(source.rsplit(":", 1)[-1]).stem
        if not stem.isdigit():
            raise PhysioNetFormatError(f"{source}: no RecordID line and no numeric file name")
        record_id = int(stem)
    static_5 = np.array([static.get(k, np.nan) for k in STATIC], np.float64)
    static_5[static_5 == -1] = np.nan
    event_min, event = np.unique(np.asarray(minutes, np.int64), return_inverse=True)
    sums = np.zeros((len(event_min), len(VARIABLES)))
    counts = np.zeros_like(sums)
    np.add.at(sums, (event, np.asarray(var, np.int64)), np.asarray(val, np.float64))
    np.add.at(counts, (event, np.asarray(var, np.int64)), 1.0)
    with np.errstate(invalid="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return int(record_id), static_5, event_min / 60.0, values


def read_outcomes(path: str | os.PathLike) -> dict[int, tuple[int, np.ndarray]]:
    """RecordID -> (in-hospital death 0/1, [SAPS-I, SOFA, Length_of_stay, Survival] with -1 as
    NaN) from an Outcomes-<x>.txt file."""
    path = Path(path)
    lines = path.read_text().splitlines()
    cols = [c.strip() for c in lines[0].lstrip("\ufeff").split(",")] if lines else []
    if "RecordID" not in cols or "In-hospital_death" not in cols:
        raise _bad(str(path), 1, lines[0] if lines else "",
                   "expected a header with RecordID and In-hospital_death")
    i_id, i_y = cols.index("RecordID"), cols.index("In-hospital_death")
    i_out = [cols.index(c) if c in cols else None for c in OUTCOMES]
    out = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) != len(cols):
                raise ValueError
            row = [float(x) for x in parts]
        except ValueError:
            raise _bad(str(path), lineno, line, f"expected {len(cols)} numbers") from None
        rid, y = int(row[i_id]), row[i_y]
        if y not in (0, 1):
            raise _bad(str(path), lineno, line, "In-hospital_death must be 0 or 1")
        if rid in out:
            raise _bad(str(path), lineno, line, f"RecordID {rid} appears twice")
        extra = np.array([row[i] if i is not None else np.nan for i in i_out])
        extra[extra == -1] = np.nan
        out[rid] = (int(y), extra)
    return out


# -- one set of records -----------------------------------------------------------------------


@dataclasses.dataclass
class Stays:
    """A set of stays, ragged: stay i's events are rows offsets[i]:offsets[i+1] of times [E]
    (hours) and values [E,37] (float32, raw units, NaN = unobserved). record_ids [N] (sorted
    for a whole set), static [N,5] (STATIC, NaN = missing), labels [N] int64, outcomes [N,4]."""

    name: str
    record_ids: np.ndarray
    offsets: np.ndarray
    times: np.ndarray
    values: np.ndarray
    static: np.ndarray
    labels: np.ndarray
    outcomes: np.ndarray

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, idx, name: str | None = None) -> Stays:
        idx = np.asarray(idx, np.int64)
        lengths = self.lengths[idx]
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]
                              + [np.zeros(0, np.int64)])
        return Stays(name or self.name, self.record_ids[idx], np.r_[0, np.cumsum(lengths)],
                     self.times[rows], self.values[rows], self.static[idx], self.labels[idx],
                     self.outcomes[idx])

    def __getitem__(self, i: int) -> dict:
        """Stay i as an example of the TFDS builder physionet2012 (ltf.data.tfds): record_id,
        times [T], values [T,37], static [5], label, outcomes [4]."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return {"record_id": int(self.record_ids[i]), "times": self.times[a:b],
                "values": self.values[a:b], "static": self.static[i],
                "label": int(self.labels[i]), "outcomes": self.outcomes[i]}

    @classmethod
    def from_examples(cls, name: str, examples) -> Stays:
        """Stays from examples in that format, sorted by RecordID (TFDS gives hash order)."""
        ex = sorted(examples, key=lambda e: int(e["record_id"]))
        lengths = np.array([len(e["times"]) for e in ex], np.int64)
        V = len(VARIABLES)
        return cls(
            name, np.array([e["record_id"] for e in ex], np.int64), np.r_[0, np.cumsum(lengths)],
            np.concatenate([np.zeros(0)] + [e["times"] for e in ex]).astype(np.float64),
            np.concatenate([np.zeros((0, V), np.float32)] + [e["values"] for e in ex]).astype(
                np.float32),
            np.stack([e["static"] for e in ex]).astype(np.float64).reshape(-1, len(STATIC)),
            np.array([e["label"] for e in ex], np.int64),
            np.stack([e["outcomes"] for e in ex]).astype(np.float64).reshape(-1, len(OUTCOMES)),
        )

    def __repr__(self) -> str:
        return (f"Stays({self.name!r}, {len(self):,} stays, {int(self.labels.sum()):,} deaths, "
                f"{len(self.times):,} events)")


def record_texts(records: Path):
    """(source name, text) of every .txt record in a folder or a tar(.gz) file."""
    if records.is_dir():
        for p in sorted(records.glob("*.txt")):
            yield str(p), p.read_text()
        return
    with tarfile.open(records) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".txt"):
                yield f"{records}:{member.name}", tar.extractfile(member).read().decode()


def read_stays(records: str | os.PathLike, outcomes: str | os.PathLike,
               name: str | None = None) -> Stays:
    """Parses every record of a folder or tarball (no cache) and joins the outcomes."""
    records, outcomes = Path(records), Path(outcomes)
    name = name or records.name.split(".")[0]
    labels = read_outcomes(outcomes)
    parsed = sorted((parse_record(text, src) for src, text in record_texts(records)),
                    key=lambda r: r[0])
    if not parsed:
        raise FileNotFoundError(f"{records}: no record files (<RecordID>.txt) in it")
    ids = np.array([r[0] for r in parsed], np.int64)
    if len(np.unique(ids)) < len(ids):
        raise PhysioNetFormatError(f"{records}: a RecordID appears in two files")
    missing = [int(i) for i in ids if int(i) not in labels]
    if missing:
        raise PhysioNetFormatError(f"{outcomes}: no outcome for {len(missing)} record(s) of "
                                   f"{records}, e.g. RecordID {missing[:5]}")
    return Stays.from_examples(name, (
        {"record_id": rid, "times": times, "values": values, "static": static,
         "label": labels[rid][0], "outcomes": labels[rid][1]}
        for rid, static, times, values in parsed))


def missing_message(what: str, data_dir) -> str:
    return (f"PhysioNet 2012: {what}. The data cannot be downloaded at run time: fetch "
            f"set-a.tar.gz and Outcomes-a.txt (and set-b/c, Outcomes-b/c for other sets) from "
            f"{FILES_URL} (the challenge page: {URL}) into {data_dir or 'a folder'} and pass "
            "that folder as data_dir. Expected layout: <data_dir>/set-a.tar.gz or the extracted "
            "<data_dir>/set-a/<RecordID>.txt, and <data_dir>/Outcomes-a.txt.")


def locate_set(data_dir, set_name: str = "a") -> tuple[Path, Path]:
    """(records, outcomes) of set "a"/"set-a" (b, c likewise) in data_dir, or a clear error."""
    letter = set_name.lower().removeprefix("set-")
    if data_dir is None or not Path(data_dir).is_dir():
        raise FileNotFoundError(missing_message(f"no folder data_dir={data_dir}", data_dir))
    data_dir = Path(data_dir)
    folder, tarball = data_dir / f"set-{letter}", data_dir / f"set-{letter}.tar.gz"
    records = folder if folder.is_dir() else tarball
    outcomes = data_dir / f"Outcomes-{letter}.txt"
    if not records.exists():
        raise FileNotFoundError(missing_message(f"neither {folder}/ nor {tarball} exists",
                                                 data_dir))
    if not outcomes.is_file():
        raise FileNotFoundError(missing_message(f"no outcomes file {outcomes}", data_dir))
    return records, outcomes
