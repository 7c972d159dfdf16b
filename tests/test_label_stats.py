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


def test_balanced_weights_equal_scikit_learns_and_need_a_classification_run():
    import numpy as np
    import pytest
    from sklearn.utils.class_weight import compute_class_weight

    from medcore.errors import MedcoreError
    from medcore.train.data import Unit, balanced_class_weights
    from medcore.train.spec import load_spec

    labels = [0] * 90 + [1] * 10 + [2] * 5
    weights = balanced_class_weights([Unit([1, 2], y) for y in labels], 4).numpy()
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels))
    np.testing.assert_allclose(weights[:3], expected, rtol=1e-6)
    assert weights[3] == 1.0  # a class with no rows is never a target
    with pytest.raises(MedcoreError, match="class_weighting applies to classification"):
        load_spec({"dataset": "qa", "task": "causal-lm", "model": "tiny-llama", "class_weighting": "balanced"})


def test_the_train_page_weighs_classes_when_labels_are_imbalanced(workspace):
    import_dataset(workspace, notes(10), "skewed", ColumnMapping(text="text", label="label"), task="classification")
    import_dataset(workspace, notes(40, 60), "fair", ColumnMapping(text="text", label="label"), task="classification")
    at = open_page("train", state={"phi_dataset": "skewed"})
    box = next(c for c in at.checkbox if c.label.startswith("Weigh classes"))
    assert box.value is True and '"class_weighting": "balanced"' in at.json[0].value
    at = open_page("train", state={"phi_dataset": "fair"})
    box = next(c for c in at.checkbox if c.label.startswith("Weigh classes"))
    assert box.value is False and "class_weighting" not in at.json[0].value  # the default is not shown


def test_the_classification_loss_uses_the_weights():
    from types import SimpleNamespace

    import torch

    from medcore.train.loop import forward_loss

    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [0.0, 3.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([4.0, 0.5])
    job = SimpleNamespace(
        spec=SimpleNamespace(task="classification"),
        ctx=SimpleNamespace(device="cpu"),
        engine=lambda **inputs: SimpleNamespace(logits=logits),
        class_weights=weights,
    )
    loss, _ = forward_loss(job, {"input_ids": torch.zeros(3, 2, dtype=torch.long), "labels": labels})
    per_row = -torch.log_softmax(logits, dim=-1)[torch.arange(3), labels]
    assert torch.isclose(loss, (weights[labels] * per_row).sum())
    job.class_weights = None
    assert torch.isclose(forward_loss(job, {"input_ids": torch.zeros(3, 2, dtype=torch.long), "labels": labels})[0],
                         per_row.sum())  # fmt: skip
