"""Evaluation: run a model over a dataset split; clinical metrics with 95% CIs, overall, per class and per subgroup."""

from __future__ import annotations

import importlib

# Lazy exports: `import medcore.evaluate.metrics` (numpy only) must not pull in pandas.
_EXPORTS = {
    "BootstrapConfig": "medcore.evaluate.bootstrap",
    "Estimate": "medcore.evaluate.bootstrap",
    "score_sample": "medcore.evaluate.bootstrap",
    "PredictionColumns": "medcore.evaluate.predictions",
    "Predictions": "medcore.evaluate.predictions",
    "read_predictions": "medcore.evaluate.predictions",
    "EvaluationReport": "medcore.evaluate.subgroups",
    "score_predictions": "medcore.evaluate.subgroups",
    "EvalRunConfig": "medcore.evaluate.runner",
    "load_classifier": "medcore.evaluate.runner",
    "predict_split": "medcore.evaluate.runner",
    "evaluate_model": "medcore.evaluate.runner",
    "compare_predictions": "medcore.evaluate.compare",
    "compare_models": "medcore.evaluate.compare",
    "CompareRunConfig": "medcore.evaluate.compare",
    "ClinicalEvaluator": "medcore.evaluate.classic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medcore.evaluate' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
