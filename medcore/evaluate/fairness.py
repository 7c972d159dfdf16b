"""Subgroup gaps with 95% CIs: how far apart a model's metrics are across the values of a subgroup column.

For each subgroup column and each headline metric:
- the gap = the metric of the best-scoring group minus that of the worst-scoring group (the two groups are picked
  at the point estimate, among groups where the metric is defined; the '(missing)' group is left out, it is no
  population). Brier and ECE are lower-is-better, so "best" there is the lower value: the gap is always >= 0 and
  names `high_group` (the larger value) and `low_group`.
- its 95% CI: percentile interval of the same difference over bootstrap resamples drawn within each (group, class)
  cell, so every group keeps its size and class mix; resamples where either group's metric is undefined are left out.
  `excludes_zero` flags a gap whose interval lies above 0: a disparity the data support, not noise.
- the equalized-odds difference (two classes only): the larger of the TPR range and the FPR range across groups
  (the definition fairlearn uses), with its percentile CI. It is >= 0 by construction, so it carries no zero flag.
A column with fewer than two defined groups has no gap (None), never 0.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from medcore.evaluate.bootstrap import BootstrapConfig, resample_weights
from medcore.evaluate.metrics import HEADLINE, score_batch
from medcore.evaluate.predictions import MISSING, Predictions, group_rows

CONFIDENCE = 0.95


def percentile_interval(samples: np.ndarray) -> tuple[float | None, float | None]:
    kept = samples[np.isfinite(samples)]
    if kept.size < 2:
        return None, None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(kept, [tail, 100 - tail])
    return float(low), float(high)


def group_scores(predictions: Predictions, rows: dict[str, np.ndarray], config: BootstrapConfig):
    """(point, boot): per group, score_batch's dict at the point (B=1) and under every stratified resample."""
    k = len(predictions.labels)
    group_code = np.empty(predictions.y_true.size, dtype=np.int64)
    for code, members in enumerate(rows.values()):
        group_code[members] = code
    cells = group_code * k + predictions.y_true  # resample within (group, class): group sizes stay fixed
    rng = np.random.default_rng(config.seed)
    chunks = list(resample_weights(cells, config.resamples, rng))
    point, boot = {}, {}
    for name, members in rows.items():
        proba = None if predictions.proba is None else predictions.proba[members]
        y_true, y_pred = predictions.y_true[members], predictions.y_pred[members]
        point[name] = score_batch(y_true, y_pred, k, np.ones((1, members.size)), proba)
        parts = [score_batch(y_true, y_pred, k, w[:, members], proba) for w in chunks]
        boot[name] = {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}
    return point, boot


def metric_gap(point: dict, boot: dict, metric: str, small: set[str]) -> dict[str, Any] | None:
    values = {g: float(s[metric][0]) for g, s in point.items() if np.isfinite(s[metric][0])}
    if len(values) < 2:
        return None
    high, low = max(values, key=values.get), min(values, key=values.get)
    samples = boot[high][metric] - boot[low][metric]
    ci_low, ci_high = percentile_interval(samples)
    return {
        "value": values[high] - values[low],
        "ci_low": ci_low,
        "ci_high": ci_high,
        "excludes_zero": ci_low is not None and ci_low > 0,
        "high_group": high,
        "low_group": low,
        "small_group": high in small or low in small,
    }


def equalized_odds(point: dict, boot: dict) -> dict[str, Any] | None:
    """Two classes: max(TPR range, FPR range) across groups, with its percentile CI."""

    def difference(scores: dict) -> np.ndarray:
        tpr = np.stack([s["sensitivity"][:, 1] for s in scores.values()], axis=1)
        fpr = np.stack([1 - s["specificity"][:, 1] for s in scores.values()], axis=1)
        return np.maximum(np.nanmax(tpr, 1) - np.nanmin(tpr, 1), np.nanmax(fpr, 1) - np.nanmin(fpr, 1))

    defined = {g: s for g, s in point.items() if np.isfinite(s["sensitivity"][0, 1] + s["specificity"][0, 1])}
    if len(defined) < 2:
        return None
    value = float(difference(defined)[0])
    with warnings.catch_warnings():  # a resample may leave a group without positives: its TPR is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        ci_low, ci_high = percentile_interval(difference({g: boot[g] for g in defined}))
    return {"value": value, "ci_low": ci_low, "ci_high": ci_high}


def subgroup_gaps(predictions: Predictions, config: BootstrapConfig, small_below: int = 30) -> dict[str, Any]:
    """{column: {"gaps": {metric: gap or None}, "equalized_odds_difference": {...} or None}} for every subgroup column."""
    out = {}
    for column, values in predictions.subgroups.items():
        rows = {g: r for g, r in group_rows(values).items() if g != MISSING}
        if len(rows) < 2:
            out[column] = {"gaps": dict.fromkeys(HEADLINE), "equalized_odds_difference": None}
            continue
        point, boot = group_scores(predictions, rows, config)
        small = {g for g, r in rows.items() if r.size < small_below}
        gaps = {metric: metric_gap(point, boot, metric, small) for metric in HEADLINE}
        binary = len(predictions.labels) == 2
        out[column] = {"gaps": gaps, "equalized_odds_difference": equalized_odds(point, boot) if binary else None}
    return out
