"""Stratified splits of a labelled set into train / validation / test, by the protocols that
published PhysioNet 2012 results use (so that a number here is read beside theirs).

    protocol     test                                   train / validation (of the rest)
    "ltf"        `fractions[2]` of the set (10%)         `fractions[0]`, `fractions[1]` of the set (80/10)
    "published"  20% (Rubanova et al. 2019; Shukla &     80 / 20 (Shukla & Marlin 2021, mTAND)
                 Marlin 2021: set A, an 80/20 split)
    "cv"         fold `fold` of 5 (Che et al. 2018,      80 / 20
                 GRU-D: 5-fold cross-validation)

Every split is stratified by the label: within each class a `np.random.default_rng(seed)`
permutation (class 0 drawn first) is cut by round(f·n). "published" cuts the test set first
and then, from a second generator `default_rng(seed + 1)`, validation out of the rest; "cv" deals
each class's permutation round-robin into 5 folds (sizes differ by at most one per class), takes
fold `fold` as test and cuts validation out of the rest as "published" does. The papers' own
splits were not stratified (scikit-learn's `train_test_split` with a fixed seed in mTAND's code):
stratifying keeps the ~14% death rate equal across splits, which on 800 test stays narrows
AUROC's sampling spread; it does not change what is learned.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")
PROTOCOLS = ("ltf", "published", "cv")
N_FOLDS = 5
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
HELD_OUT = 0.2  # "published" and "cv": the test share, then the validation share of the rest


def stratified_split(labels, fractions=DEFAULT_FRACTIONS, seed: int = 0) -> dict[str, np.ndarray]:
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


def stratified_folds(labels, n_folds: int = N_FOLDS, seed: int = 0) -> list[np.ndarray]:
    """`n_folds` disjoint sorted index arrays covering every item, stratified by label."""
    if n_folds < 2:
        raise ValueError(f"n_folds={n_folds}: cross-validation needs at least 2 folds")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(n_folds)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        for k in range(n_folds):
            folds[k].append(idx[k::n_folds])
    return [np.sort(np.concatenate(f)) for f in folds]


def protocol_split(labels, protocol: str = "ltf", *, seed: int = 0, fold: int = 0,
                   fractions=DEFAULT_FRACTIONS) -> dict[str, np.ndarray]:
    """{"train", "validation", "test"} -> sorted indices by `protocol` (see the module docstring);
    `fractions` is read by "ltf" only, `fold` (0..4) by "cv" only."""
    labels = np.asarray(labels)
    if protocol == "ltf":
        return stratified_split(labels, fractions, seed)
    if protocol == "published":
        test = stratified_split(labels, (1 - HELD_OUT, 0.0, HELD_OUT), seed)["test"]
    elif protocol == "cv":
        if not 0 <= fold < N_FOLDS:
            raise ValueError(f"fold={fold}: the cross-validation folds are 0..{N_FOLDS - 1}")
        test = stratified_folds(labels, N_FOLDS, seed)[fold]
    else:
        raise ValueError(f"protocol={protocol!r}: allowed values are {PROTOCOLS}")
    rest = np.setdiff1d(np.arange(len(labels)), test)
    inner = stratified_split(labels[rest], (1 - HELD_OUT, HELD_OUT, 0.0), seed + 1)
    return {"train": rest[inner["train"]], "validation": rest[inner["validation"]], "test": test}
