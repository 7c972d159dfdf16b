"""Clinical classification metrics over integer-coded labels, for one sample or a batch of bootstrap weight rows.

Every metric is computed by one weighted kernel: row b of a (B, n) weight matrix says how many times each example
counts. The point estimate is the row of ones, a bootstrap resample is a row of draw counts, a jackknife replicate a
row with zeros. So the numbers a test checks against scikit-learn are the very code the bootstrap runs.

Inside the kernels an undefined metric is NaN; the public functions turn it into None, never into 0.
Conventions (where scikit-learn would pick one for you):
- balanced_accuracy and macro_f1 average over the classes where the per-class value is defined (a class seen
  in y_true, or in y_true or y_pred for F1), as scikit-learn does with its default labels.
- auroc and auprc: two classes -> the positive class (code 1) only; more -> the macro mean one-vs-rest over the
  classes present in y_true (a class absent from y_true has no AUROC: None, and it is left out of the mean).
- brier: two classes -> the usual binary Brier score, mean (p_positive - y)^2, in [0, 1]; more classes -> Brier's
  original multi-class score, mean over examples of the sum over classes of (p - onehot)^2, in [0, 2].
- ece: 15 equal-width bins (lo, hi] on the top probability; |accuracy - confidence| of the top-probability class
  weighted by the bin's share of examples (Guo et al., 2017).
"""

from __future__ import annotations

import numpy as np

from medcore.errors import MedcoreError

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "auroc", "auprc", "brier", "ece")
PER_CLASS = ("sensitivity", "specificity", "ppv", "npv", "f1", "support")
PROBABILITY_METRICS = ("auroc", "auprc", "brier", "ece")
ECE_BINS = 15
SUM_TOLERANCE = 1e-6
SHOWN_ROWS = 5


def describe_rows(rows: np.ndarray) -> str:
    """'rows 3, 9' or 'rows 3, 9, 12, 20, 31 (first 5 of 40)': 1-based data rows (the header is not a row)."""
    shown = ", ".join(str(int(r) + 1) for r in rows[:SHOWN_ROWS])
    more = f" (first {SHOWN_ROWS} of {len(rows)})" if len(rows) > SHOWN_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def check_probabilities(proba, n_classes: int | None = None, where: str = "The probabilities") -> np.ndarray:
    """A finite (n, classes) float matrix whose rows sum to 1; a 1-D array is P(class 1) of a binary task.

    Raises:
        MedcoreError: wrong shape, NaN or infinite scores, values outside [0, 1] or rows not summing to 1,
            naming the first few row numbers (never anything but numbers).
    """
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 1:
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or (n_classes is not None and proba.shape[1] != n_classes):
        raise MedcoreError(f"{where} have shape {proba.shape}; expected (rows, {n_classes or 'classes'}).")
    bad = np.flatnonzero(~np.isfinite(proba).all(axis=1))
    if bad.size:
        raise MedcoreError(f"{where} hold NaN or infinite scores in {describe_rows(bad)}. Score every row.")
    bad = np.flatnonzero(((proba < -SUM_TOLERANCE) | (proba > 1 + SUM_TOLERANCE)).any(axis=1))
    if bad.size:
        raise MedcoreError(f"{where} fall outside [0, 1] in {describe_rows(bad)}. Apply softmax/sigmoid first.")
    sums = proba.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
    if bad.size:
        shown = ", ".join(f"{s:.6g}" for s in sums[bad[:SHOWN_ROWS]])
        raise MedcoreError(
            f"{where} do not sum to 1 (tolerance {SUM_TOLERANCE:g}) in {describe_rows(bad)}: sums {shown}. "
            "Give one probability column per class, normalised per row."
        )
    return proba


def check_codes(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """y_true and y_pred as int64 codes in 0..n_classes-1, of one length; MedcoreError naming rows otherwise."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        shapes = f"{y_true.shape} and {y_pred.shape}"
        raise MedcoreError(f"y_true and y_pred must be equal-length, non-empty 1-D arrays; got shapes {shapes}.")
    for name, codes in (("y_true", y_true), ("y_pred", y_pred)):
        bad = np.flatnonzero((codes < 0) | (codes >= n_classes))
        if bad.size:
            raise MedcoreError(f"{name} holds codes outside 0..{n_classes - 1} in {describe_rows(bad)}.")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0 (undefined), without a warning."""
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den != 0)


def _mean_defined(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(Weighted) mean over the last axis of the defined (non-NaN) entries; NaN where none is defined."""
    defined = ~np.isnan(values)
    w = defined.astype(float) if weights is None else np.where(defined, weights, 0.0)
    return _ratio((np.where(defined, values, 0.0) * w).sum(axis=-1), w.sum(axis=-1))


def confusion_batch(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    """(B, K, K) weighted confusion matrices, rows true, columns predicted.

    Examples are ordered by their combined (true, predicted) code once, and each weight row summed over each run of
    equal codes: two passes over the weights, no per-row loop, and memory O(B * n + B * K^2) for any K.
    """
    cells = y_true * n_classes + y_pred
    order = np.argsort(cells, kind="stable")
    runs = np.flatnonzero(np.r_[True, cells[order][1:] != cells[order][:-1]])
    counts = np.zeros((weights.shape[0], n_classes * n_classes))
    counts[:, cells[order][runs]] = np.add.reduceat(weights[:, order], runs, axis=1)
    return counts.reshape(-1, n_classes, n_classes)


def count_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Headline count metrics (B,) and per-class metrics (B, K) from (B, K, K) confusion matrices."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    n = support.sum(axis=1, keepdims=True)
    fn, fp = support - tp, predicted - tp
    tn = n - tp - fn - fp
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    sensitivity = _ratio(tp, support)
    return {
        "accuracy": _ratio(tp.sum(axis=1), n[:, 0]),
        "balanced_accuracy": _mean_defined(sensitivity),
        "macro_f1": _mean_defined(f1),
        "micro_f1": _ratio(tp.sum(axis=1), n[:, 0]),  # one label per example: micro P = micro R = accuracy
        "weighted_f1": _mean_defined(f1, support),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, predicted),
        "npv": _ratio(tn, tn + fn),
        "f1": f1,
        "support": support,
    }


def proportion_counts(cm: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(successes, trials) of each proportion metric of one (K, K) confusion matrix: for Wilson intervals."""
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    n = cm.sum()
    tn = n - support - predicted + tp
    return {
        "accuracy": (tp.sum(), n),
        "micro_f1": (tp.sum(), n),  # the same proportion as accuracy, so it gets the same interval
        "sensitivity": (tp, support),
        "specificity": (tn, n - support),
        "ppv": (tp, predicted),
        "npv": (tn, n - predicted),
    }


def ranking_scores(is_positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC, average precision), each (B,), of one class's scores; NaN where it lacks positives or negatives.

    One ascending sort with tied scores grouped. Only groups holding a positive add to the Mann-Whitney U (a tie
    counts 1/2) and to average precision, so cumulative weights are read at those groups' starts and ends only.
    Scores already in ascending order (score_sample sorts by the last class) need no reordering of the weights.
    """
    order = np.argsort(scores, kind="stable")
    s, pos_at = scores[order], np.flatnonzero(is_positive[order])
    w = weights if np.array_equal(order, np.arange(s.size)) else weights[:, order]
    new_group = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], s.size]
    groups = np.unique((np.cumsum(new_group) - 1)[pos_at])  # the tie groups that hold a positive
    cum_all = _cumsum0(w)
    cum_pos = _cumsum0(w[:, pos_at])
    all_before, all_to_end = cum_all[:, starts[groups]], cum_all[:, ends[groups]]
    pos_before = cum_pos[:, np.searchsorted(pos_at, starts[groups])]
    pos_in = cum_pos[:, np.searchsorted(pos_at, ends[groups])] - pos_before
    neg_before = all_before - pos_before
    neg_in = all_to_end - all_before - pos_in
    n_pos, n_all = cum_pos[:, -1], cum_all[:, -1]
    u = (pos_in * (neg_before + 0.5 * neg_in)).sum(axis=1)
    # precision at the threshold "score >= this group's": positives and all examples from the group up
    above = n_all[:, None] - all_before
    precision = np.divide(n_pos[:, None] - pos_before, above, out=np.zeros_like(above), where=above > 0)
    ap = _ratio((pos_in * precision).sum(axis=1), n_pos)
    n_neg = n_all - n_pos
    return _ratio(u, n_pos * n_neg), np.where(n_neg > 0, ap, np.nan)


def _cumsum0(w: np.ndarray) -> np.ndarray:
    """Cumulative sums along axis 1 with a leading 0 column, in float64 (exact for integer weights)."""
    out = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out


def per_class_ranking(y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, K) one-vs-rest AUROC and average precision; with two classes only class 1 is scored (column 0 NaN)."""
    k = proba.shape[1]
    auc, ap = np.full((weights.shape[0], k), np.nan), np.full((weights.shape[0], k), np.nan)
    for c in [1] if k == 2 else range(k):
        auc[:, c], ap[:, c] = ranking_scores(y_true == c, proba[:, c], weights)
    return auc, ap


def probability_scores(y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """auroc, auprc, brier and ece, each (B,), of probabilities (n, K) under each weight row."""
    n, k = proba.shape
    auc, ap = per_class_ranking(y_true, proba, weights)
    p_true = proba[np.arange(n), y_true]
    if k == 2:
        loss = (proba[:, 1] - (y_true == 1)) ** 2
    else:
        loss = (proba**2).sum(axis=1) - 2 * p_true + 1  # sum over classes of (p - onehot)^2, without the one-hot
    confidence = proba.max(axis=1)
    gap = (proba.argmax(axis=1) == y_true) - confidence
    bins = np.clip(np.ceil(confidence * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)  # (lo, hi] bins
    binned_gap = np.zeros((n, ECE_BINS))
    binned_gap[np.arange(n), bins] = gap
    total = weights.sum(axis=1)
    return {
        "auroc": _mean_defined(auc),
        "auprc": _mean_defined(ap),
        "brier": _ratio(weights @ loss, total),
        "ece": _ratio(np.abs(weights @ binned_gap).sum(axis=1), total),
    }


def score_batch(y_true, y_pred, n_classes: int, weights: np.ndarray, proba=None) -> dict[str, np.ndarray]:
    """Every metric under each weight row: headline metrics (B,), per-class metrics (B, K); NaN = undefined.

    Probability metrics are NaN (undefined) when `proba` is None. Inputs must be checked already
    (check_codes, check_probabilities): this runs once per bootstrap chunk.
    """
    scores = count_scores(confusion_batch(y_true, y_pred, n_classes, weights))
    if proba is not None:
        scores.update(probability_scores(y_true, proba, weights))
    else:
        scores.update({name: np.full(weights.shape[0], np.nan) for name in PROBABILITY_METRICS})
    return scores


# Public, one-sample API: plain floats, None for undefined.


def _value(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def _counts(y_true, y_pred, n_classes: int | None) -> dict[str, np.ndarray]:
    k = n_classes or int(max(np.max(y_true), np.max(y_pred))) + 1
    y_true, y_pred = check_codes(y_true, y_pred, k)
    return count_scores(confusion_batch(y_true, y_pred, k, np.ones((1, y_true.size))))


def _probabilities(y_true, proba) -> dict[str, np.ndarray]:
    proba = check_probabilities(proba)
    y_true, _ = check_codes(y_true, y_true, proba.shape[1])
    return probability_scores(y_true, proba, np.ones((1, y_true.size)))


def accuracy(y_true, y_pred, n_classes: int | None = None) -> float | None:
    return _value(_counts(y_true, y_pred, n_classes)["accuracy"][0])


def balanced_accuracy(y_true, y_pred, n_classes: int | None = None) -> float | None:
    return _value(_counts(y_true, y_pred, n_classes)["balanced_accuracy"][0])


def macro_f1(y_true, y_pred, n_classes: int | None = None) -> float | None:
    return _value(_counts(y_true, y_pred, n_classes)["macro_f1"][0])


def micro_f1(y_true, y_pred, n_classes: int | None = None) -> float | None:
    return _value(_counts(y_true, y_pred, n_classes)["micro_f1"][0])


def weighted_f1(y_true, y_pred, n_classes: int | None = None) -> float | None:
    return _value(_counts(y_true, y_pred, n_classes)["weighted_f1"][0])


def auroc(y_true, proba) -> float | None:
    """Macro one-vs-rest AUROC; binary: AUROC of P(class 1). None when no class has both positives and negatives."""
    return _value(_probabilities(y_true, proba)["auroc"][0])


def auprc(y_true, proba) -> float | None:
    """Macro one-vs-rest average precision; binary: that of class 1."""
    return _value(_probabilities(y_true, proba)["auprc"][0])


def brier(y_true, proba) -> float | None:
    """Binary: mean (p1 - y)^2; multi-class: mean over examples of sum over classes of (p - onehot)^2."""
    return _value(_probabilities(y_true, proba)["brier"][0])


def ece(y_true, proba) -> float | None:
    """Expected calibration error over 15 equal-width bins of the top probability."""
    return _value(_probabilities(y_true, proba)["ece"][0])


def auroc_per_class(y_true, proba) -> list[float | None]:
    """One-vs-rest AUROC of each class; None for a class absent from y_true (or the only one present)."""
    proba = check_probabilities(proba)
    y_true, _ = check_codes(y_true, y_true, proba.shape[1])
    auc = np.full(proba.shape[1], np.nan)
    for c in range(proba.shape[1]):
        auc[c] = ranking_scores(y_true == c, proba[:, c], np.ones((1, y_true.size)))[0][0]
    return [_value(v) for v in auc]


def per_class(y_true, y_pred, n_classes: int | None = None) -> dict[str, list[float | None]]:
    """sensitivity, specificity, ppv, npv, f1 and support of each class code; None where undefined."""
    scores = _counts(y_true, y_pred, n_classes)
    return {name: [_value(v) for v in scores[name][0]] for name in PER_CLASS}
