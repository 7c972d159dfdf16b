"""Train/validation/test split: stratified by label, grouped by patient so no patient spans two splits.

Written with numpy rather than sklearn's (Stratified)GroupKFold: K folds only approximate fractions
such as 0.7/0.15/0.15 (1/K steps), and StratifiedGroupKFold is quadratic-ish in Python for the
100k-patient uploads the console accepts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medcore.data.manifest import SPLITS
from medcore.errors import MedcoreError


def check_fractions(split: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(split) != 3 or any(f < 0 for f in split) or split[0] <= 0 or abs(sum(split) - 1.0) > 1e-6:
        shares = ", ".join(f"{name} {100 * f:g}%" for name, f in zip(SPLITS, split, strict=False))
        raise MedcoreError(
            f"The split ({shares}) must be three shares of train, validation and test that add up to 100%, with "
            "train above 0, e.g. 80/10/10."
        )
    return tuple(float(f) for f in split)


def assign_splits(
    df: pd.DataFrame,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    *,
    label: str | None = None,
    group: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The split name ('train' / 'validation' / 'test') of every row of `df`; the same seed gives the same split."""
    fractions = np.array(check_fractions(split))
    codes = pd.factorize(df[label].astype(str))[0] if label else np.zeros(len(df), dtype=np.int64)
    rng = np.random.default_rng(seed)
    if group:
        index = _split_groups(codes, pd.factorize(df[group].astype(str))[0], fractions, rng)
    else:
        index = _split_rows(codes, fractions, rng)
    return np.array(SPLITS, dtype=object)[index]


def _split_rows(codes: np.ndarray, fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per label, a random order cut at the fraction boundaries: each label's counts are within 1 of exact."""
    n = len(codes)
    order = np.lexsort((rng.random(n), codes))  # rows grouped by label, shuffled within it
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(n) - np.repeat(starts, sizes)
    # A random phase per label spreads the rounding remainders, so many small labels do not all round to train.
    position = (rank + np.repeat(rng.random(len(sizes)), sizes)) / np.repeat(sizes, sizes)
    bounds = np.cumsum(fractions[::-1])[:-1]  # test first, then validation: train takes the rest
    out = np.empty(n, dtype=np.int64)
    out[order] = 2 - np.searchsorted(bounds, position, side="right")
    return out


def _split_groups(codes: np.ndarray, groups: np.ndarray, fractions: np.ndarray, rng) -> np.ndarray:
    """Greedy: whole groups, largest first, each to the split whose label needs it fills most."""
    counts = np.zeros((groups.max() + 1, codes.max() + 1))
    np.add.at(counts, (groups, codes), 1)
    sizes = counts.sum(axis=1)
    order = rng.permutation(len(counts))
    order = order[np.argsort(-sizes[order], kind="stable")]  # big patients first; random among equals
    target = np.outer(fractions, counts.sum(axis=0))  # wanted rows per split and label
    have = np.zeros_like(target)
    closed = np.where(fractions > 0, 0.0, -np.inf)  # a split with fraction 0 never receives a group
    wanted = np.maximum(target.sum(axis=1), 1)
    chosen = np.empty(len(counts), dtype=np.int64)
    for g in order:
        fill = np.minimum(counts[g], np.maximum(target - have, 0)).sum(axis=1) / sizes[g]
        deficit = (target.sum(axis=1) - have.sum(axis=1)) / wanted
        s = int(np.argmax(fill + 0.5 * deficit + closed))
        chosen[g] = s
        have[s] += counts[g]
    return chosen[groups]


def split_frame(df: pd.DataFrame, assignment: np.ndarray) -> dict[str, pd.DataFrame]:
    """The rows of each split, in upload order, with a fresh index."""
    return {name: df[assignment == name].reset_index(drop=True) for name in SPLITS}
