"""Label balance per split, and the warning a heavily imbalanced dataset gets on the Data and Train pages."""

from __future__ import annotations

import pandas as pd
from app_helpers import open_page, texts

from medcore.data.importer import import_dataset
from medcore.data.label_stats import imbalance_note, label_counts
from medcore.data.manifest import ColumnMapping, load_split


def notes(rare: int, common: int = 90) -> pd.DataFrame:
    labels = ["routine"] * common + ["urgent"] * rare
    return pd.DataFrame({"text": [f"note {i}" for i in range(len(labels))], "label": labels})


def test_counts_per_split_match_the_split_files(workspace):
    import_dataset(workspace, notes(10), "notes", ColumnMapping(text="text", label="label"), split=(0.6, 0.2, 0.2))
    counts = label_counts(workspace, "notes")
    assert list(counts.columns) == ["train", "validation", "test", "total"]
    for split in ("train", "validation", "test"):
        assert counts[split].to_dict() == load_split(workspace, "notes", split)["label"].value_counts().to_dict()
    assert counts["total"].to_dict() == {"routine": 90, "urgent": 10}


def test_a_rare_class_is_warned_about_a_balanced_one_is_not(workspace):
    mapping = ColumnMapping(text="text", label="label")
    import_dataset(workspace, notes(10), "skewed", mapping)
    import_dataset(workspace, notes(40, 60), "fair", mapping)
    note = imbalance_note(label_counts(workspace, "skewed"))
    assert note and "'routine'" in note and "'urgent'" in note and "balanced accuracy" in note
    assert imbalance_note(label_counts(workspace, "fair")) is None
    import_dataset(workspace, notes(0, 20), "plain", ColumnMapping(text="text"))
    assert label_counts(workspace, "plain").empty and imbalance_note(label_counts(workspace, "plain")) is None


def test_the_data_and_train_pages_show_the_warning(workspace):
    import_dataset(workspace, notes(10), "skewed", ColumnMapping(text="text", label="label"), task="classification")
    at = open_page("data")
    assert any("labels are imbalanced" in w for w in texts(at, "warning"))
    at = open_page("train")
    assert any("labels are imbalanced" in w for w in texts(at, "warning")), texts(at, "warning")
