"""How a classification dataset's labels are spread over its splits, and a warning when one class dwarfs another.

A 275/25 split trains a model that scores 92% accuracy by never predicting the rare class; the user must hear that
before training, and be pointed at what helps: class weighting, and reading balanced accuracy and per-class
sensitivity instead of accuracy.
"""

from __future__ import annotations

import pandas as pd

from medcore.data.encryption import read_split_table
from medcore.data.manifest import SPLITS, read_manifest, split_path
from medcore.workspace import Workspace

IMBALANCE_RATIO = 4.0  # largest class / smallest class above this (in train) is worth a warning


def label_counts(ws: Workspace, name: str) -> pd.DataFrame:
    """Rows per label (index, in the dataset's label order) and split (columns), plus a `total` column.

    Empty when the dataset has no label column. Reads the label column only.
    """
    manifest = read_manifest(ws, name)
    column = manifest.mapping.label
    if not column:
        return pd.DataFrame()
    counts = {}
    for split in SPLITS:
        path = split_path(ws, name, split)
        labels = read_split_table(path, [column], ws).column(column).to_pandas() if path.exists() else pd.Series()
        counts[split] = labels.astype(str).value_counts()
    order = manifest.label_set or sorted(set().union(*(c.index for c in counts.values())))
    frame = pd.DataFrame(counts).reindex(order).fillna(0).astype(int)
    frame["total"] = frame.sum(axis=1)
    return frame.rename_axis("label")


def imbalance_note(counts: pd.DataFrame) -> str | None:
    """A sentence when the train split's largest class is IMBALANCE_RATIO times its smallest, else None."""
    if counts.empty or "train" not in counts or len(counts) < 2:
        return None
    train = counts["train"]
    big, small = train.idxmax(), train.idxmin()
    if train[small] * IMBALANCE_RATIO > train[big]:
        return None
    ratio = "no" if train[small] == 0 else f"{train[big] / train[small]:.0f}:1,"
    return (
        f"The labels are imbalanced: in train, '{big}' has {train[big]:,} rows and '{small}' {train[small]:,} "
        f"({ratio} {train[big] / train.sum():.0%} of rows are '{big}'). A model can score high accuracy by rarely "
        f"predicting '{small}': read balanced accuracy and per-class sensitivity, and consider class weighting."
    )
