"""What the Evaluate page plots, computed from an eval's saved predictions: confusion matrix, ROC and PR curves,
the reliability diagram and the operating point at a fixed sensitivity.

Same conventions as metrics.py: two classes -> the positive class (code 1) only, more -> one curve per class
(one-vs-rest); the reliability diagram uses ECE's 15 equal-width (lo, hi] bins on the top probability, so its
weighted gaps add up to the ECE that result.json reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medcore.errors import MedcoreError
from medcore.evaluate.metrics import ECE_BINS


@dataclass(frozen=True)
class ScoredSplit:
    """An eval's predictions as codes: y_true, y_pred (n,), proba (n, K) or None, and the label names."""

    labels: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None


def scored_split(predictions: pd.DataFrame, labels: list[str]) -> ScoredSplit:
    """An eval folder's predictions.parquet (row, y_true, y_pred, p_<label>) as codes into `labels`."""
    code = {label: i for i, label in enumerate(labels)}
    columns = [f"p_{label}" for label in labels]
    proba = predictions[columns].to_numpy(dtype=float) if set(columns) <= set(predictions.columns) else None
    return ScoredSplit(
        labels=labels,
        y_true=predictions["y_true"].astype(str).map(code).to_numpy(dtype=np.int64),
        y_pred=predictions["y_pred"].astype(str).map(code).to_numpy(dtype=np.int64),
        proba=proba,
    )


def confusion_frame(scored: ScoredSplit) -> pd.DataFrame:
    """Counts, true label down, predicted label across."""
    k = len(scored.labels)
    counts = np.bincount(scored.y_true * k + scored.y_pred, minlength=k * k).reshape(k, k)
    return pd.DataFrame(counts, index=pd.Index(scored.labels, name="true"), columns=scored.labels)


def curve_classes(scored: ScoredSplit) -> list[int]:
    """The classes that get a curve: the positive class of a binary task, else every class present in y_true."""
    if len(scored.labels) == 2:
        return [1]
    return [c for c in range(len(scored.labels)) if (scored.y_true == c).any()]


def _thresholded(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(threshold, true positives, false positives) at each distinct score, highest first ("score >= threshold")."""
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], is_positive[order].astype(np.int64)
    last_of_group = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(hits)[last_of_group]
    fp = np.cumsum(1 - hits)[last_of_group]
    return s[last_of_group], tp, fp


def roc_points(scored: ScoredSplit) -> pd.DataFrame:
    """ROC curves: class, threshold, fpr, tpr, starting at (0, 0); a class without positives or negatives has none."""
    frames = []
    for c in curve_classes(scored):
        positive = scored.y_true == c
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if scored.proba is None or not n_pos or not n_neg:
            continue
        threshold, tp, fp = _thresholded(positive, scored.proba[:, c])
        frames.append(
            pd.DataFrame(
                {
                    "class": scored.labels[c],
                    "threshold": np.r_[np.inf, threshold],
                    "fpr": np.r_[0.0, fp / n_neg],
                    "tpr": np.r_[0.0, tp / n_pos],
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["class", "threshold", "fpr", "tpr"])
    )


def pr_points(scored: ScoredSplit) -> pd.DataFrame:
    """Precision-recall curves: class, threshold, recall, precision (one point per distinct score)."""
    frames = []
    for c in curve_classes(scored):
        positive = scored.y_true == c
        n_pos = int(positive.sum())
        if scored.proba is None or not n_pos:
            continue
        threshold, tp, fp = _thresholded(positive, scored.proba[:, c])
        frames.append(
            pd.DataFrame(
                {"class": scored.labels[c], "threshold": threshold, "recall": tp / n_pos, "precision": tp / (tp + fp)}
            )
        )
    columns = ["class", "threshold", "recall", "precision"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def reliability_bins(scored: ScoredSplit) -> pd.DataFrame:
    """One row per non-empty ECE bin: lo, hi, count, confidence (mean top probability), accuracy."""
    if scored.proba is None:
        return pd.DataFrame(columns=["lo", "hi", "count", "confidence", "accuracy"])
    confidence = scored.proba.max(axis=1)
    right = (scored.proba.argmax(axis=1) == scored.y_true).astype(float)
    bins = np.clip(np.ceil(confidence * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
    count = np.bincount(bins, minlength=ECE_BINS)
    filled = np.flatnonzero(count)
    return pd.DataFrame(
        {
            "lo": filled / ECE_BINS,
            "hi": (filled + 1) / ECE_BINS,
            "count": count[filled],
            "confidence": np.bincount(bins, confidence, ECE_BINS)[filled] / count[filled],
            "accuracy": np.bincount(bins, right, ECE_BINS)[filled] / count[filled],
        }
    )


def operating_point(scored: ScoredSplit, sensitivity: float) -> dict[str, float]:
    """Binary tasks: the highest threshold on p(positive) whose sensitivity reaches `sensitivity`, and the
    specificity there (the decision a clinical team fixes: "catch 95% of cases; how many false alarms?").

    Raises:
        MedcoreError: not a binary task with probabilities, a split without both classes, or a target outside (0, 1].
    """
    if not 0 < sensitivity <= 1:
        raise MedcoreError(f"Target sensitivity {sensitivity} is outside (0, 1]: pick e.g. 0.95.")
    if len(scored.labels) != 2 or scored.proba is None:
        raise MedcoreError("A fixed-sensitivity operating point needs a two-class eval with probabilities.")
    positive = scored.y_true == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        raise MedcoreError("A fixed-sensitivity operating point needs both classes in the split.")
    threshold, tp, fp = _thresholded(positive, scored.proba[:, 1])
    reached = np.flatnonzero(tp / n_pos >= sensitivity - 1e-12)[0]  # tp only grows as the threshold falls
    return {
        "threshold": float(threshold[reached]),
        "sensitivity": float(tp[reached] / n_pos),
        "specificity": float(1 - fp[reached] / n_neg),
        "positive_class": scored.labels[1],
    }
