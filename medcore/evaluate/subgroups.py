"""Score a predictions file overall, per class and per subgroup value: the report `medcore eval metrics` prints.

Every subgroup value is scored with the same metrics and rules as the whole file (same seed, its own resamples).
A group under 30 examples is flagged "small" and still reported: hiding it would hide exactly the groups a fairness
review asks about, and its proportions carry Wilson intervals that show how little it says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcore.evaluate.bootstrap import BootstrapConfig, Estimate, SampleScores, score_sample
from medcore.evaluate.fairness import subgroup_gaps
from medcore.evaluate.metrics import HEADLINE, PER_CLASS
from medcore.evaluate.predictions import SMALL_GROUP, Predictions, group_rows


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of one predictions file: overall, per class label and per subgroup column -> value."""

    source: str
    labels: list[str]
    config: BootstrapConfig
    overall: SampleScores
    subgroups: dict[str, dict[str, SampleScores]] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)  # per subgroup column: gaps with CIs (fairness.py)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: {"n", "metrics", "per_class", "subgroups", "fairness"}; each metric {"value", "ci_low", "ci_high"}."""
        return {
            "n": self.overall.n,
            "metrics": metric_dict(self.overall.metrics),
            "per_class": {
                label: {name: scores[name].as_dict() for name in PER_CLASS}
                for label, scores in zip(self.labels, self.overall.per_class, strict=True)
            },
            "subgroups": {
                column: {value: group_dict(scores) for value, scores in groups.items()}
                for column, groups in self.subgroups.items()
            },
            "fairness": self.fairness,
        }


def metric_dict(metrics: dict[str, Estimate]) -> dict[str, dict[str, float | None]]:
    return {name: metrics[name].as_dict() for name in HEADLINE}


def group_dict(scores: SampleScores) -> dict[str, Any]:
    return {**metric_dict(scores.metrics), "n": scores.n, "small": is_small(scores)}


def is_small(scores: SampleScores) -> bool:
    return scores.n < SMALL_GROUP


def score_predictions(predictions: Predictions, config: BootstrapConfig | None = None) -> EvaluationReport:
    """Every metric with a 95% interval, for the whole file and for each value of each subgroup column."""
    config = config or BootstrapConfig()
    k = len(predictions.labels)

    def score(rows: np.ndarray | None = None) -> SampleScores:
        if rows is None:
            return score_sample(predictions.y_true, predictions.y_pred, k, predictions.proba, config)
        proba = None if predictions.proba is None else predictions.proba[rows]
        return score_sample(predictions.y_true[rows], predictions.y_pred[rows], k, proba, config)

    subgroups = {
        column: {value: score(rows) for value, rows in group_rows(values).items()}
        for column, values in predictions.subgroups.items()
    }
    fairness = subgroup_gaps(predictions, config, SMALL_GROUP)
    return EvaluationReport(predictions.source, predictions.labels, config, score(), subgroups, fairness)
