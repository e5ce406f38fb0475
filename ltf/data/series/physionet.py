"""PhysioNet/CinC Challenge 2012: in-hospital mortality from the first 48 h of an ICU stay.

The files and how a record is read: `ltf.data.series.physionet_format`. This module prepares
them as a TFDS dataset, makes splits, normalised per-event features and fixed-shape batches.

Per-event features (`stay_arrays`, batches): mask [T,37] (1 = observed), dt [T,1] hours since
the previous event (the first event: since admission, time 0), dt_var [T,37] hours since that
variable's previous observation strictly before the event (since admission if none).

Split: set A is sorted by RecordID, then split train/validation/test stratified by the label,
by one of the protocols of `ltf.data.series.splits`: "ltf" (default 80/10/10: within each class
a `np.random.default_rng(seed)` permutation, seed 0 by default, class 0 drawn first, gives
round(f·n) stays to train and validation, the rest to test), "published" (20% test, then 80/20
train/validation, as Rubanova et al. 2019 and mTAND) or "cv" (GRU-D's 5 folds, one as test).
Other sets (B, C) come whole, named "set-b", "set-c", for evaluation only.
Normalisation: per variable, mean and std over all observations in the training stays; the
static Age, Height and Weight likewise; validation, test and other sets never enter them. With
`winsorise=q` every value is first clipped to the training observations' q and 1 - q quantiles
(per variable), once, in the stays of every split as they are loaded, before the normalisers are
fitted (`PhysioNetData.splits` then holds the clipped values): set A holds entry errors
(pH 735 for 7.35, temperatures of -17.8 °C) whose z-scores reach 120 and whose weight in the
std squeezes the normal range of pH into 0.01 of a unit.

Preparation: data_dir is the manual folder of the TFDS builder `physionet2012`
(ltf.data.tfds.physionet2012: one example a stay, a split for each set in the folder). It is
prepared once into `<cache>/tfds/physionet2012-<key>/`, the key hashing the bytes of every file
the builder reads (records and outcomes), so that changed files are prepared anew and a stale
preparation is never read; `<cache>`: `cache_dir`, else $LTF_CACHE_DIR, else ~/.cache/ltf. The
stays then come from `tfds.data_source` into memory as `Stays` sorted by RecordID. Set A on 2
busy cores: 7-9 s to prepare, 1.4-2.4 s to read (~1.1 s of it TFDS decoding 4,000 records).
`python -m ltf.data.series.physionet <data_dir>` prepares and prints sizes and class balance.

Batches come from grain: `grain.MapDataset.source(stays)` -> `shuffle(seed)` (training: a new
permutation every epoch) -> pad each stay to max_len -> `batch` (training drops an epoch's last
incomplete batch) -> features -> `repeat()` (training). The iterator's `get_state()`
({"next_index": k}, JSON) goes into the checkpoint; `set_state` resumes at that batch.
Evaluation is one pass in RecordID order, ceil(n/B) batches, the last padded with copies of the
first stay whose `example_mask` and masks are 0. grain reads the stays in memory, not the TFDS
records: the normalisers and the baselines need every stay anyway, and decoding 64 records
again costs ~15 ms a batch.

Batches (fixed shapes; T = `max_len`, default the longest stay of all loaded sets):
`inputs` float32 [B,T,37] (normalised, 0 where unobserved), `obs_mask` [B,T,37], `mask` [B,T]
(1 = a real event, 0 = padding), `dt` [B,T,1], `dt_var` [B,T,37], `times` [B,T] (hours),
`static` [B,8] and `static_mask` [B,8] (STATIC_FEATURES: Age, Gender, Height, Weight z-scored
or 0/1, ICUType one-hot; 0 where missing), `summaries` [B,193] when loaded with
`summaries=True` (the logistic-regression baseline's per-stay summaries, filled and
standardised with the training stays' statistics: `ltf.data.series.physionet_summaries`),
`targets` int32 [B] (in-hospital death), `length` int32 [B], `record_id` int64 [B],
`example_mask` float32 [B], `reset` bool [B] (all True).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import grain
import numpy as np
import tensorflow_datasets as tfds

from ltf.data.corpora import cache_root
from ltf.data.series.physionet_format import STATIC, VARIABLES, Stays, locate_set
from ltf.data.series.physionet_summaries import SummaryScaler, padded_summaries, summary_features
from ltf.data.series.splits import DEFAULT_FRACTIONS, protocol_split
from ltf.data.series.windows import MASK_KEYS, Batch, Normaliser
from ltf.data.tfds.physionet2012 import LETTERS, NAME, Physionet2012, set_files
from ltf.data.tfds.prepare import files_key, prepare

STATIC_FEATURES = ("Age", "Gender", "Height", "Weight",
                   "ICUType=1", "ICUType=2", "ICUType=3", "ICUType=4")
DEFAULT_SEED = 0
# One thread makes the next batches while the model trains on this one; a few batches ahead
# suffice (grain's default, 500, would hold gigabytes of [64,202,37] batches).
READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)


# -- preparation through the TFDS builder -------------------------------------------------------


def prepared_dir(folder, cache_dir=None) -> Path:
    """Where the sets of a manual folder are prepared, keyed by the content of their files."""
    return cache_root(cache_dir) / "tfds" / f"{NAME}-{files_key(set_files(folder))}"


def load_sets(folder, letters, cache_dir=None) -> dict[str, Stays]:
    """{"set-x": Stays} of the sets `letters` of a manual folder, prepared first if need be."""
    data_dir = prepared_dir(folder, cache_dir)
    prepare(Physionet2012, folder, data_dir)
    out = {}
    for x in letters:
        source = tfds.data_source(NAME, data_dir=str(data_dir), split=f"set_{x}")
        out[f"set-{x}"] = Stays.from_examples(f"set-{x}", source.__getitems__(range(len(source))))
    return out


# -- features, split, normalisation -------------------------------------------------------------


def _pad(example: dict, T: int, example_mask: float = 1.0) -> dict:
    """One stay (a `Stays` item) padded to T events: times [T] 0 and values [T,37] NaN after it."""
    n = len(example["times"])
    if n > T:
        raise ValueError(f"stay {example['record_id']} has {n} events, more than max_len={T}")
    times_T = np.zeros(T)
    values_TxV = np.full((T, len(VARIABLES)), np.nan, np.float32)
    times_T[:n], values_TxV[:n] = example["times"], example["values"]
    return {"times": times_T, "values": values_TxV, "length": n, "static": example["static"],
            "label": example["label"], "record_id": example["record_id"],
            "example_mask": example_mask}


def _stack(examples) -> dict:
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


_CONT = [STATIC.index(k) for k in ("Age", "Height", "Weight")]


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Per-feature clipping bounds [D]: the training split's q and 1 - q quantiles."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, values_NxD, q: float) -> Bounds:
        if not 0.0 < q < 0.5:
            raise ValueError(f"winsorise={q}: the quantile clipped off each tail must be in (0, 0.5); "
                             "0 turns clipping off")
        x = np.asarray(values_NxD, np.float64)
        seen = np.isfinite(x).any(axis=0)  # a feature never observed keeps no bounds
        low, high = np.nanquantile(np.where(seen, x, 0.0), [q, 1.0 - q], axis=0)
        return cls(np.where(seen, low, -np.inf), np.where(seen, high, np.inf))

    def apply(self, x):
        return np.clip(x, self.low, self.high).astype(np.asarray(x).dtype)  # NaN (unobserved) stays NaN

    def apply_to(self, stays: Stays, static_bounds: Bounds) -> Stays:
        """The stays with their values (and static Age, Height, Weight) clipped."""
        static = stays.static.copy()
        static[:, _CONT] = static_bounds.apply(static[:, _CONT])
        return dataclasses.replace(stays, values=self.apply(stays.values), static=static)


def _features(padded: dict, norm: Normaliser | None) -> Batch:
    """Per-event features of padded stays: times [B,T], values [B,T,37], length [B]."""
    t_BxT, raw_BxTxV = padded["times"], padded["values"]
    valid_BxT = np.arange(t_BxT.shape[1]) < padded["length"][:, None]
    obs_BxTxV = valid_BxT[..., None] & np.isfinite(raw_BxTxV)
    x_BxTxV = raw_BxTxV if norm is None else norm.apply(np.where(obs_BxTxV, raw_BxTxV, 0.0))
    # Time of each variable's last observation strictly before each event; admission (0) if none.
    obs_t_BxTxV = np.where(obs_BxTxV, t_BxT[..., None], 0.0)
    last_BxTxV = np.maximum.accumulate(obs_t_BxTxV, axis=1)
    prev_BxTxV = np.concatenate([np.zeros_like(last_BxTxV[:, :1]), last_BxTxV[:, :-1]], axis=1)
    prev_t_BxT = np.concatenate([np.zeros_like(t_BxT[:, :1]), t_BxT[:, :-1]], axis=1)
    return {
        "inputs": np.where(obs_BxTxV, x_BxTxV, 0.0 if norm is not None else np.nan),
        "obs_mask": obs_BxTxV * 1.0,
        "mask": valid_BxT * 1.0,
        "dt": np.where(valid_BxT, t_BxT - prev_t_BxT, 0.0)[..., None],
        "dt_var": np.where(valid_BxT[..., None], t_BxT[..., None] - prev_BxTxV, 0.0),
        "times": t_BxT,
    }


def stay_arrays(stays: Stays, i: int, normaliser: Normaliser | None = None) -> dict:
    """One stay unpadded: times [T], values [T,37] (raw, NaN where unobserved, or normalised
    with 0 there when `normaliser` is given), mask [T,37], dt [T,1], dt_var [T,37]."""
    f = _features(_stack([_pad(stays[i], int(stays.lengths[i]))]), normaliser)
    return {"times": f["times"][0], "values": f["inputs"][0], "mask": f["obs_mask"][0],
            "dt": f["dt"][0], "dt_var": f["dt_var"][0]}


def _static_features(s_Bx5: np.ndarray, norm: Normaliser) -> tuple[np.ndarray, np.ndarray]:
    cont = norm.apply(s_Bx5[:, _CONT])
    gender = s_Bx5[:, [STATIC.index("Gender")]]
    icu = s_Bx5[:, STATIC.index("ICUType")]
    onehot = (icu[:, None] == np.arange(1, 5)) * 1.0
    x = np.concatenate([cont[:, :1], gender, cont[:, 1:], onehot], axis=1)
    known = np.concatenate([np.isfinite(s_Bx5[:, [0, 1, 2, 4]]),
                            np.repeat(np.isin(icu, [1, 2, 3, 4])[:, None], 4, axis=1)], axis=1)
    return np.where(known, x, 0.0), known * 1.0


@dataclasses.dataclass
class PhysioNetData:
    """Splits of set A ("train", "validation", "test") and other sets ("set-b", ...) with the
    training split's normalisers; `batches(split, B)` gives fixed-shape batches."""

    splits: dict[str, Stays]
    normaliser: Normaliser          # [37] over the training stays' observations
    static_normaliser: Normaliser   # [3]: Age, Height, Weight of the training stays
    max_len: int
    seed: int
    fractions: tuple[float, float, float]
    protocol: str = "ltf"
    fold: int = 0
    bounds: Bounds | None = None         # [37] the splits were clipped to (`load_physionet(winsorise=q)`)
    static_bounds: Bounds | None = None  # [3] likewise
    summary_scaler: SummaryScaler | None = None  # [193] from the training stays: batches get "summaries"

    def _batch(self, padded: dict) -> Batch:
        """Padded stays stacked [B, ...] -> a batch (see the module docstring)."""
        batch = _features(padded, self.normaliser)
        batch["static"], batch["static_mask"] = _static_features(padded["static"], self.static_normaliser)
        if self.summary_scaler is not None:
            batch["summaries"] = self.summary_scaler.apply(padded_summaries(padded["values"], padded["static"]))
        batch["example_mask"] = padded["example_mask"]
        batch = {k: v.astype(np.float32) for k, v in batch.items()}
        for k in MASK_KEYS:  # padding rows count in no loss or metric
            if k in batch:
                batch[k][batch["example_mask"] == 0] = 0
        batch.update(targets=padded["label"].astype(np.int32),
                     length=padded["length"].astype(np.int32),
                     record_id=padded["record_id"].astype(np.int64),
                     reset=np.ones(len(padded["length"]), bool))  # each stay its own sequence
        return batch

    def take(self, split: str, idx) -> Batch:
        """The batch of the stays idx [B] of a split."""
        stays = self.splits[split]
        return self._batch(_stack([_pad(stays[int(i)], self.max_len) for i in idx]))

    def batches(self, split: str, batch_size: int, *, train: bool | None = None,
                seed: int = 0) -> grain.DatasetIterator:
        """Shuffled epochs forever for "train" by default; one ordered pass otherwise."""
        train = split == "train" if train is None else train
        stays, B = self.splits[split], batch_size
        if B < 1:
            raise ValueError(f"batch_size={B} must be positive")
        if len(stays) < 1 or (train and len(stays) < B):
            need = f"training needs at least batch_size={B}" if train else "evaluation needs 1"
            raise ValueError(f"{split}: {len(stays)} stays; {need}; lower the batch size or "
                             "change the split fractions")
        pad = functools.partial(_pad, T=self.max_len)
        if train:
            ds = (grain.MapDataset.source(stays).shuffle(seed=seed).map(pad)
                  .batch(B, drop_remainder=True, batch_fn=_stack).map(self._batch).repeat())
        else:  # rows past the end: copies of stay 0 with example_mask 0
            n = len(stays)
            ds = (grain.MapDataset.range(n + (-n % B))
                  .map(lambda i: pad(stays[i if i < n else 0], example_mask=float(i < n)))
                  .batch(B, batch_fn=_stack).map(self._batch))
        return iter(ds.to_iter_dataset(READ_OPTIONS))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v):,} ({int(v.labels.sum())} deaths)"
                          for k, v in self.splits.items())
        how = f"protocol={self.protocol}" + (f", fold={self.fold}" if self.protocol == "cv" else "")
        return f"PhysioNetData({sizes}; max_len={self.max_len}, seed={self.seed}, {how})"


def _extra_source(item, data_dir) -> tuple[Path, str]:
    """(manual folder, letter) of an extra set: a letter ("b"), a set name ("set-c") in
    data_dir, or the path of a set-x/ folder or set-x.tar.gz with its Outcomes-x.txt beside it."""
    if not isinstance(item, (str, os.PathLike)):
        raise ValueError(f"extra set {item!r}: give a letter, a set name or a path")
    p = Path(item)
    if p.exists():
        folder, letter = p.parent, p.name.split(".")[0].lower().removeprefix("set-")
        if letter not in LETTERS:
            raise ValueError(f"extra set {p}: expected set-a, set-b or set-c (a folder or a "
                             ".tar.gz) with its Outcomes-<x>.txt beside it")
    else:
        folder, letter = Path(data_dir), str(item).lower().removeprefix("set-")
    locate_set(folder, letter)  # a clear error for a missing file
    if letter not in LETTERS:
        raise ValueError(f"extra set {item!r}: the challenge's sets are a, b and c")
    return folder.resolve(), letter


def load_physionet(data_dir=None, *, extra_sets=(), fractions=DEFAULT_FRACTIONS,
                   seed: int = DEFAULT_SEED, protocol: str = "ltf", fold: int = 0,
                   max_len: int | None = None, cache_dir=None, winsorise: float = 0.0,
                   summaries: bool = False) -> PhysioNetData:
    """Set A from data_dir split train/validation/test by `protocol` ("ltf": `fractions`,
    "published": 20% test then 80/20, "cv": fold `fold` of 5 as test; `ltf.data.series.splits`),
    plus `extra_sets` for evaluation: each
    a letter ("b"), a set name ("set-c") or the path of a set-x/ folder or set-x.tar.gz (its
    Outcomes-x.txt beside it). Each folder is prepared as a TFDS dataset once (see the module
    docstring). `winsorise=q` > 0 clips every value to the training split's q, 1 - q quantiles.
    `summaries=True` adds each stay's summaries to its batch ("summaries"; about half again the
    time to make a batch, so only when a model reads them)."""
    locate_set(data_dir, "a")  # a clear error when set A is missing
    wanted = [(Path(data_dir).resolve(), "a")] + [_extra_source(x, data_dir) for x in extra_sets]
    folders: dict[Path, list[str]] = {}
    for folder, letter in wanted:
        folders.setdefault(folder, []).append(letter)
    loaded = {(folder, name): stays for folder, letters in folders.items()
              for name, stays in load_sets(folder, sorted(set(letters)), cache_dir).items()}
    set_a = loaded[wanted[0][0], "set-a"]
    split_idx = protocol_split(set_a.labels, protocol, seed=seed, fold=fold, fractions=fractions)
    splits = {s: set_a.subset(idx, s) for s, idx in split_idx.items()}
    for folder, letter in wanted[1:]:
        splits[f"set-{letter}"] = loaded[folder, f"set-{letter}"]
    bounds = static_bounds = None
    if winsorise:  # clipped once here, not in every batch
        train = splits["train"]
        bounds, static_bounds = Bounds.fit(train.values, winsorise), Bounds.fit(train.static[:, _CONT], winsorise)
        splits = {name: bounds.apply_to(stays, static_bounds) for name, stays in splits.items()}
    train = splits["train"]
    norm = Normaliser.fit(train.values, axis=0)
    static_norm = Normaliser.fit(train.static[:, _CONT], axis=0)
    longest = max(int(s.lengths.max(initial=0)) for s in splits.values())
    if max_len is not None and max_len < longest:
        raise ValueError(f"max_len={max_len}: the longest stay has {longest} events")
    return PhysioNetData(splits, norm, static_norm, max(max_len or longest, 1), seed,
                         tuple(fractions), protocol, fold, bounds, static_bounds,
                         SummaryScaler.fit(summary_features(train)) if summaries else None)


def describe(stays: Stays) -> dict:
    """Sizes and class balance of a set (JSON-able)."""
    lengths = stays.lengths
    return {"stays": len(stays), "deaths": int(stays.labels.sum()),
            "death_rate": float(stays.labels.mean()), "events": int(lengths.sum()),
            "events_per_stay": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                                "max": int(lengths.max())},
            "observations": int(np.isfinite(stays.values).sum()),
            "empty_stays": int((lengths == 0).sum())}


if __name__ == "__main__":  # python -m ltf.data.series.physionet <data_dir>: prepare, describe
    import sys
    import time

    t0 = time.perf_counter()
    data = load_physionet(sys.argv[1] if len(sys.argv) > 1 else None)
    print(data, f"({time.perf_counter() - t0:.1f} s)")
    print(json.dumps({k: describe(v) for k, v in data.splits.items()}, indent=1))
