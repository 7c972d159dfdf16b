"""The Evaluate page's plots: confusion matrix, ROC/PR curves, reliability bins and the fixed-sensitivity point."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

from medcore.errors import MedcoreError
from medcore.evaluate.curves import (
    ScoredSplit,
    confusion_frame,
    operating_point,
    pr_points,
    reliability_bins,
    roc_points,
    scored_split,
)
from medcore.evaluate.metrics import ece


def random_split(k: int, n: int = 300, seed: int = 0, ties: bool = False) -> ScoredSplit:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y_true]
    if ties:
        logits = np.round(logits, 1)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return ScoredSplit([f"c{i}" for i in range(k)], y_true, proba.argmax(axis=1), proba)


@pytest.mark.parametrize("k", [2, 4])
def test_confusion_matrix_equals_sklearn(k):
    s = random_split(k)
    ours = confusion_frame(s).to_numpy()
    assert np.array_equal(ours, confusion_matrix(s.y_true, s.y_pred, labels=range(k)))


@pytest.mark.parametrize("ties", [False, True])
def test_binary_roc_and_pr_equal_sklearn(ties):
    s = random_split(2, ties=ties)
    roc = roc_points(s)
    fpr, tpr, _ = roc_curve(s.y_true, s.proba[:, 1], drop_intermediate=False)
    assert set(roc["class"]) == {"c1"}
    assert np.allclose(roc["fpr"], fpr) and np.allclose(roc["tpr"], tpr)
    pr = pr_points(s)
    precision, recall, thresholds = precision_recall_curve(s.y_true, s.proba[:, 1])
    # sklearn lists thresholds ascending with a final (recall 0, precision 1) point; ours run highest first
    assert np.allclose(pr["threshold"], thresholds[::-1])
    assert np.allclose(pr["precision"], precision[:-1][::-1]) and np.allclose(pr["recall"], recall[:-1][::-1])


def test_multiclass_gives_one_roc_per_class_present():
    s = random_split(3)
    s = ScoredSplit(s.labels, np.where(s.y_true == 2, 0, s.y_true), s.y_pred, s.proba)  # class c2 never true
    roc = roc_points(s)
    assert sorted(roc["class"].unique()) == ["c0", "c1"]
    one = roc[roc["class"] == "c1"]
    fpr, tpr, _ = roc_curve(s.y_true == 1, s.proba[:, 1], drop_intermediate=False)
    assert np.allclose(one["fpr"], fpr) and np.allclose(one["tpr"], tpr)


@pytest.mark.parametrize("k", [2, 3])
def test_reliability_bins_add_up_to_the_reported_ece(k):
    s = random_split(k, seed=3)
    bins = reliability_bins(s)
    assert bins["count"].sum() == len(s.y_true)
    weighted_gap = (bins["count"] * (bins["accuracy"] - bins["confidence"]).abs()).sum() / len(s.y_true)
    assert weighted_gap == pytest.approx(ece(s.y_true, s.proba), abs=1e-12)


def test_operating_point_is_the_highest_threshold_reaching_the_sensitivity():
    s = random_split(2, seed=5, ties=True)
    point = operating_point(s, 0.95)
    p, positive = s.proba[:, 1], s.y_true == 1
    best = max(t for t in np.unique(p) if (p[positive] >= t).mean() >= 0.95)
    assert point["threshold"] == best
    assert point["sensitivity"] == pytest.approx((p[positive] >= best).mean())
    assert point["specificity"] == pytest.approx((p[~positive] < best).mean())
    assert operating_point(s, 1.0)["sensitivity"] == 1.0


def test_operating_point_refuses_what_it_cannot_answer():
    with pytest.raises(MedcoreError, match="two-class"):
        operating_point(random_split(3), 0.9)
    with pytest.raises(MedcoreError, match="outside"):
        operating_point(random_split(2), 0)
    one_class = random_split(2)
    with pytest.raises(MedcoreError, match="both classes"):
        operating_point(ScoredSplit(one_class.labels, np.zeros_like(one_class.y_true), one_class.y_pred,
                                    one_class.proba), 0.9)  # fmt: skip


def test_scored_split_reads_an_eval_frame_and_curves_need_probabilities():
    frame = pd.DataFrame({"row": [0, 1, 2], "y_true": ["no", "yes", "yes"], "y_pred": ["no", "no", "yes"]})
    s = scored_split(frame, ["no", "yes"])
    assert s.proba is None and list(s.y_true) == [0, 1, 1] and list(s.y_pred) == [0, 0, 1]
    assert roc_points(s).empty and pr_points(s).empty and reliability_bins(s).empty
    frame["p_no"], frame["p_yes"] = [0.9, 0.6, 0.2], [0.1, 0.4, 0.8]
    assert scored_split(frame, ["no", "yes"]).proba.shape == (3, 2)
