"""Headline figures of per-row scores with 95% CIs: every metric a ratio of row sums, bootstrapped over rows.

Generation and token-classification metrics are all sum(numerator) / sum(denominator) over the split's rows:
- the mean of a per-row score (exact match, token F1, ROUGE-L, ...): numerator the score, denominator 1 where the
  row's score is defined (e.g. yes/no accuracy only counts rows whose reference is yes, no or maybe);
- entity precision = correct / predicted, recall = correct / gold, F1 = 2 correct / (predicted + gold), micro over
  the entities of all rows (per-row entity counts: a row's entities stay together in a resample).
Interval: percentile over row resamples: `resamples` draws of n rows with replacement (bootstrap.resample_weights with
one stratum; seeded, so the same seed gives the same intervals), the 2.5th and 97.5th percentiles of the resampled
ratios. Every metric is computed on the same resamples. A resample whose denominator is 0 is left out; a metric whose
denominator is 0 on the whole split is undefined (value and interval None), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medcore.evaluate.bootstrap import CONFIDENCE, BootstrapConfig, Estimate, resample_weights
from medcore.evaluate.predictions import SMALL_GROUP, group_rows


@dataclass(frozen=True)
class RowRatio:
    """A metric as sum(numerator) / sum(denominator) over rows."""

    numerator: np.ndarray
    denominator: np.ndarray

    def rows(self, index: np.ndarray) -> RowRatio:
        return RowRatio(self.numerator[index], self.denominator[index])


def row_mean(values: np.ndarray) -> RowRatio:
    """The mean of a per-row score over the rows where it is defined (NaN: not defined for that row)."""
    values = np.asarray(values, dtype=float)
    defined = np.isfinite(values)
    return RowRatio(np.where(defined, values, 0.0), defined.astype(float))


def ratio_estimates(metrics: dict[str, RowRatio], config: BootstrapConfig) -> dict[str, Estimate]:
    """Each metric's value and 95% percentile interval over row resamples (see the module docstring)."""
    names = list(metrics)
    numerator = np.column_stack([metrics[m].numerator for m in names]).astype(float)  # (n, metrics)
    denominator = np.column_stack([metrics[m].denominator for m in names]).astype(float)
    n = numerator.shape[0]
    if n == 0:
        return {name: Estimate(None) for name in names}
    rng = np.random.default_rng(config.seed)
    one_stratum = np.zeros(n, dtype=np.int64)
    sums = [(w @ numerator, w @ denominator) for w in resample_weights(one_stratum, config.resamples, rng)]
    boot_num, boot_den = np.concatenate([s[0] for s in sums]), np.concatenate([s[1] for s in sums])
    boot = np.divide(boot_num, boot_den, out=np.full_like(boot_num, np.nan), where=boot_den > 0)
    total_num, total_den = numerator.sum(axis=0), denominator.sum(axis=0)
    alpha = (1 - CONFIDENCE) / 2
    out = {}
    for j, name in enumerate(names):
        kept = boot[:, j][np.isfinite(boot[:, j])]
        if total_den[j] <= 0 or kept.size == 0:
            out[name] = Estimate(None)
            continue
        low, high = np.quantile(kept, [alpha, 1 - alpha])
        out[name] = Estimate(float(total_num[j] / total_den[j]), float(low), float(high), "percentile")
    return out


def estimates_dict(estimates: dict[str, Estimate]) -> dict[str, dict[str, float | None]]:
    return {name: estimate.as_dict() for name, estimate in estimates.items()}


def subgroup_scores(
    metrics: dict[str, RowRatio], subgroups: dict[str, np.ndarray], config: BootstrapConfig
) -> dict[str, dict[str, Any]]:
    """{column: {value: {metric: {value, ci_low, ci_high}, "n", "small"}}}: each subgroup value scored like the
    whole split (same seed, its own resamples); a group under SMALL_GROUP rows is flagged, never hidden."""
    out: dict[str, dict[str, Any]] = {}
    for column, values in subgroups.items():
        out[column] = {}
        for value, rows in group_rows(values).items():
            picked = {name: ratio.rows(rows) for name, ratio in metrics.items()}
            scores = estimates_dict(ratio_estimates(picked, config))
            out[column][value] = {**scores, "n": int(rows.size), "small": bool(rows.size < SMALL_GROUP)}
    return out


def row_report(
    task: str, metrics: dict[str, RowRatio], subgroups: dict[str, np.ndarray], config: BootstrapConfig
) -> dict[str, Any]:
    """{"task", "n", "metrics", "subgroups"}: the result.json of a generation or token-classification eval."""
    n = len(next(iter(metrics.values())).numerator) if metrics else 0
    return {
        "task": task,
        "n": n,
        "metrics": estimates_dict(ratio_estimates(metrics, config)),
        "subgroups": subgroup_scores(metrics, subgroups, config),
    }


@dataclass(frozen=True)
class TaskScores:
    """What a task's scorer hands evaluate_model to write into evals/<eval_id>/."""

    predictions: pd.DataFrame  # row numbers and per-row scores or counts: no text (results.PREDICTIONS)
    result: dict[str, Any]  # result.json
    record: dict[str, Any]  # task-specific settings added to config.json
    outputs: pd.DataFrame | None = None  # the model's outputs per row: text-bearing (results.OUTPUTS), kept on request
