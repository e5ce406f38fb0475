"""PhysioNet/CinC Challenge 2012: in-hospital mortality from the first 48 h of an ICU stay.

The files and how a record is read: `ltf.data.series.physionet_format`. This module makes
splits, normalised per-event features and fixed-shape batches of them.

Per-event features (`stay_arrays`, batches): mask [T,37] (1 = observed), dt [T,1] hours since
the previous event (the first event: since admission, time 0), dt_var [T,37] hours since that
variable's previous observation strictly before the event (since admission if none).

Split: set A is sorted by RecordID, then split train/validation/test (default 80/10/10)
stratified by the label: within each class a `np.random.default_rng(seed)` permutation (seed 0
by default; class 0 drawn first) gives round(f·n) stays to train and validation, the rest to
test. Other sets (B, C) come whole, named "set-b", "set-c", for evaluation only.
Normalisation: per variable, mean and std over all observations in the training stays; the
static Age, Height and Weight likewise; validation, test and other sets never enter them.

Parsed sets are cached as `<cache>/physionet2012/<set>-<key>.npz`, the key hashing the bytes of
the records (the tarball, or a folder's file names and contents), of the outcomes file and the
parser version (~0.1 s to hash, 0.2 s to load, against ~3 s to parse set A); `<cache>`:
`cache_dir`, else $LTF_CACHE_DIR, else ~/.cache/ltf. `python -m ltf.data.series.physionet <data_dir>`
parses, caches and prints sizes and class balance.

Batches (fixed shapes; T = `max_len`, default the longest stay of all loaded sets):
`inputs` float32 [B,T,37] (normalised, 0 where unobserved), `obs_mask` [B,T,37], `mask` [B,T]
(1 = a real event, 0 = padding), `dt` [B,T,1], `dt_var` [B,T,37], `times` [B,T] (hours),
`static` [B,8] and `static_mask` [B,8] (STATIC_FEATURES: Age, Gender, Height, Weight z-scored
or 0/1, ICUType one-hot; 0 where missing), `targets` int32 [B] (in-hospital death), `length`
int32 [B], `record_id` int64 [B], `example_mask` [B], `reset` [B] (see ltf.data.series.windows).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ltf.data.corpora import cache_root
from ltf.data.series.physionet_format import STATIC, VARIABLES, Stays, locate_set, missing_message, read_stays
from ltf.data.series.windows import SPLITS, Batch, Batches, Normaliser

STATIC_FEATURES = ("Age", "Gender", "Height", "Weight",
                   "ICUType=1", "ICUType=2", "ICUType=3", "ICUType=4")
CACHE_VERSION = 1  # bump when parsing or the cache layout changes
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SEED = 0


def _fingerprint(records: Path, outcomes: Path) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    if records.is_dir():
        for p in sorted(records.glob("*.txt")):  # ~0.1 s for set A's 4,000 files
            h.update(f"{p.name}:{p.stat().st_size}:".encode())
            h.update(p.read_bytes())
    else:
        h.update(records.read_bytes())
    h.update(outcomes.read_bytes())
    return h.hexdigest()[:16]


_FIELDS = ("record_ids", "offsets", "times", "values", "static", "labels", "outcomes")


def load_stays(records: str | os.PathLike, outcomes: str | os.PathLike, *,
               name: str | None = None, cache_dir=None) -> Stays:
    """`read_stays` through the npz cache (see the module docstring)."""
    records, outcomes = Path(records), Path(outcomes)
    name = name or records.name.split(".")[0]
    path = cache_root(cache_dir) / "physionet2012" / f"{name}-{_fingerprint(records, outcomes)}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return Stays(name, *(f[k] for k in _FIELDS))
        except (OSError, ValueError, KeyError):
            pass  # unreadable: parse again
    stays = read_stays(records, outcomes, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **{k: getattr(stays, k) for k in _FIELDS})  # 46 MB -> 5 MB
    os.replace(tmp, path)
    return stays


# -- features, split, normalisation -------------------------------------------------------------


def stratified_split(labels, fractions=DEFAULT_FRACTIONS, seed: int = DEFAULT_SEED):
    """{"train", "validation", "test"} -> sorted indices, stratified by label."""
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions={tuple(fractions)}: need (train, validation, test) >= 0 "
                         "summing to 1")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train, n_val = round(f[0] * len(idx)), round(f[1] * len(idx))
        parts["train"].append(idx[:n_train])
        parts["validation"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def _features(stays: Stays, idx, T: int, norm: Normaliser | None) -> Batch:
    """Padded per-event features of the stays idx [B] (see the module docstring)."""
    lengths = stays.lengths[idx]
    if np.any(lengths > T):
        raise ValueError(f"a stay has {int(lengths.max())} events, more than max_len={T}")
    valid_BxT = np.arange(T) < lengths[:, None]
    ev_BxT = np.where(valid_BxT, stays.offsets[idx][:, None] + np.arange(T), 0)
    if len(stays.times):
        t_BxT, raw = np.where(valid_BxT, stays.times[ev_BxT], 0.0), stays.values[ev_BxT]
    else:  # no stay has an event: nothing to index
        t_BxT, raw = np.zeros((len(idx), T)), np.full((len(idx), T, len(VARIABLES)), np.nan)
    obs_BxTxV = valid_BxT[..., None] & np.isfinite(raw)
    x_BxTxV = raw if norm is None else norm.apply(np.where(obs_BxTxV, raw, 0.0))
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
    f = _features(stays, np.array([i]), int(stays.lengths[i]), normaliser)
    return {"times": f["times"][0], "values": f["inputs"][0], "mask": f["obs_mask"][0],
            "dt": f["dt"][0], "dt_var": f["dt_var"][0]}


_CONT = [STATIC.index(k) for k in ("Age", "Height", "Weight")]


def _static_features(stays: Stays, idx, norm: Normaliser) -> tuple[np.ndarray, np.ndarray]:
    s = stays.static[idx]
    cont = norm.apply(s[:, _CONT])
    gender = s[:, [STATIC.index("Gender")]]
    icu = s[:, STATIC.index("ICUType")]
    onehot = (icu[:, None] == np.arange(1, 5)) * 1.0
    x = np.concatenate([cont[:, :1], gender, cont[:, 1:], onehot], axis=1)
    known = np.concatenate([np.isfinite(s[:, [0, 1, 2, 4]]),
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

    def take(self, split: str, idx) -> Batch:
        stays = self.splits[split]
        idx = np.asarray(idx, np.int64)
        batch = _features(stays, idx, self.max_len, self.normaliser)
        batch["static"], batch["static_mask"] = _static_features(stays, idx, self.static_normaliser)
        batch = {k: v.astype(np.float32) for k, v in batch.items()}
        batch.update(targets=stays.labels[idx].astype(np.int32),
                     length=stays.lengths[idx].astype(np.int32), record_id=stays.record_ids[idx])
        return batch

    def batches(self, split: str, batch_size: int, *, train: bool | None = None,
                seed: int = 0) -> Batches:
        """Shuffled epochs forever for "train" by default; one ordered pass otherwise."""
        train = split == "train" if train is None else train
        return Batches(lambda idx: self.take(split, idx), len(self.splits[split]), batch_size,
                       train=train, seed=seed)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v):,} ({int(v.labels.sum())} deaths)"
                          for k, v in self.splits.items())
        return f"PhysioNetData({sizes}; max_len={self.max_len}, seed={self.seed})"


def _extra_source(item, data_dir) -> tuple[str, Path, Path]:
    if isinstance(item, (tuple, list)):
        records, outcomes = map(Path, item)
        return records.name.split(".")[0], records, outcomes
    p = Path(item)
    if p.exists():  # a folder or tarball; its Outcomes-<x>.txt beside it
        name = p.name.split(".")[0]
        outcomes = p.parent / f"Outcomes-{name.removeprefix('set-')}.txt"
        if not outcomes.is_file():
            raise FileNotFoundError(missing_message(f"no outcomes file {outcomes} for {p}",
                                                     p.parent))
        return name, p, outcomes
    records, outcomes = locate_set(data_dir, str(item))
    return f"set-{str(item).lower().removeprefix('set-')}", records, outcomes


def load_physionet(data_dir=None, *, extra_sets=(), fractions=DEFAULT_FRACTIONS,
                   seed: int = DEFAULT_SEED, max_len: int | None = None,
                   cache_dir=None) -> PhysioNetData:
    """Set A from data_dir split train/validation/test, plus `extra_sets` for evaluation: each
    a letter ("b"), a set name ("set-c"), a folder or tarball path (its Outcomes-<x>.txt beside
    it) or a (records, outcomes) pair."""
    records, outcomes = locate_set(data_dir, "a")
    set_a = load_stays(records, outcomes, name="set-a", cache_dir=cache_dir)
    splits = {s: set_a.subset(idx, s)
              for s, idx in stratified_split(set_a.labels, fractions, seed).items()}
    for item in extra_sets:
        name, rec, out = _extra_source(item, data_dir)
        splits[name] = load_stays(rec, out, name=name, cache_dir=cache_dir)
    train = splits["train"]
    norm = Normaliser.fit(train.values, axis=0)
    static_norm = Normaliser.fit(train.static[:, _CONT], axis=0)
    longest = max(int(s.lengths.max(initial=0)) for s in splits.values())
    if max_len is not None and max_len < longest:
        raise ValueError(f"max_len={max_len}: the longest stay has {longest} events")
    return PhysioNetData(splits, norm, static_norm, max(max_len or longest, 1), seed,
                         tuple(fractions))


def describe(stays: Stays) -> dict:
    """Sizes and class balance of a set (JSON-able)."""
    lengths = stays.lengths
    return {"stays": len(stays), "deaths": int(stays.labels.sum()),
            "death_rate": float(stays.labels.mean()), "events": int(lengths.sum()),
            "events_per_stay": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                                "max": int(lengths.max())},
            "observations": int(np.isfinite(stays.values).sum()),
            "empty_stays": int((lengths == 0).sum())}


if __name__ == "__main__":  # python -m ltf.data.series.physionet <data_dir>: parse, cache, describe
    import sys
    import time

    t0 = time.perf_counter()
    data = load_physionet(sys.argv[1] if len(sys.argv) > 1 else None)
    print(data, f"({time.perf_counter() - t0:.1f} s)")
    print(json.dumps({k: describe(v) for k, v in data.splits.items()}, indent=1))
