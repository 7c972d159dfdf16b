"""Compare models on the same rows where every metric is a ratio of row sums (generation, token classification).

The classification comparison (compare.py) resamples within each true class and reads class predictions; generation
and entity metrics have no classes, so they are compared here, in the same JSON shape:
- Paired bootstrap: every model is scored under the SAME row resamples (one stratum, seeded), so resample b's
  difference is the two models' ratios on one and the same resampled set of rows; a resample whose denominator is 0
  for either model is left out. Interval: percentile (as row_scores.py does for one model). A metric undefined for
  either model on the whole split has value and interval None, never 0. Difference = model - reference.
- McNemar's exact test where a per-row score is right or wrong: generation's exact match. Entity counts have no
  per-row correctness, so their "mcnemar" is None.
- Disagreements: the rows whose per-row score (generation: token F1; entities: the row's F1, 1.0 for a row with no
  gold and no predicted entity) differs between the two models, with both scores: numbers only, never text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import CONFIDENCE, BootstrapConfig, resample_weights
from medcore.evaluate.entities import COUNTS, entity_ratios
from medcore.evaluate.generation import METRICS as GENERATION_METRICS
from medcore.evaluate.generation import YES_NO
from medcore.evaluate.mcnemar import mcnemar_test
from medcore.evaluate.row_scores import RowRatio, row_mean

MAX_DISAGREEMENTS = 100  # rows listed per model pair; "count" always gives the total
ROW_SCORE = {"causal-lm": "token_f1", "token-classification": "f1"}  # the per-row score disagreements are read on
EXACT = "exact_match"  # generation's per-row right/wrong: McNemar's test reads it


def row_metrics(task: str, predictions: pd.DataFrame) -> dict[str, RowRatio]:
    """The task's metrics as row ratios, rebuilt from a saved predictions.parquet (per-row scores or counts)."""
    if task == "token-classification":
        return entity_ratios(predictions[list(COUNTS)].to_numpy(dtype=np.int64))
    if task == "causal-lm":
        names = [m for m in (*GENERATION_METRICS, YES_NO) if m in predictions.columns]
        return {m: row_mean(predictions[m].to_numpy(dtype=float)) for m in names}
    raise MedcoreError(f"Task {task!r} is not compared on row scores: classification has its own comparison.")


def per_row_score(task: str, predictions: pd.DataFrame) -> np.ndarray:
    """One score per row, to list the rows where two models differ."""
    if task == "token-classification":
        gold, predicted, correct = (predictions[c].to_numpy(dtype=float) for c in COUNTS)
        total = gold + predicted
        return np.divide(2 * correct, total, out=np.ones_like(total), where=total > 0)
    return predictions[ROW_SCORE[task]].to_numpy(dtype=float)


def resampled_ratios(metrics: dict[str, dict[str, RowRatio]], n: int, config: BootstrapConfig) -> dict:
    """{model: {metric: (B,)}}: every model's ratios under the same weight rows; NaN where a denominator is 0."""
    parts: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in ms} for name, ms in metrics.items()}
    rng = np.random.default_rng(config.seed)
    for weights in resample_weights(np.zeros(n, dtype=np.int64), config.resamples, rng):  # (chunk, n) each
        for name, ms in metrics.items():
            for m, ratio in ms.items():
                num, den = weights @ ratio.numerator, weights @ ratio.denominator
                parts[name][m].append(np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0))
    return {name: {m: np.concatenate(chunks) for m, chunks in ms.items()} for name, ms in parts.items()}


def point_values(metrics: dict[str, RowRatio]) -> dict[str, float | None]:
    out = {}
    for name, ratio in metrics.items():
        den = float(ratio.denominator.sum())
        out[name] = float(ratio.numerator.sum()) / den if den > 0 else None
    return out


def difference(reference: float | None, model: float | None, boot: np.ndarray) -> dict:
    """{"value", "ci_low", "ci_high", "excludes_zero"}: model - reference with its paired percentile interval."""
    kept = boot[np.isfinite(boot)]
    if reference is None or model is None or kept.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "excludes_zero": None}
    alpha = (1 - CONFIDENCE) / 2
    low, high = (float(q) for q in np.quantile(kept, [alpha, 1 - alpha]))
    return {"value": model - reference, "ci_low": low, "ci_high": high, "excludes_zero": bool(low > 0 or high < 0)}


def mcnemar_on_exact(reference: pd.DataFrame, model: pd.DataFrame) -> dict | None:
    if EXACT not in reference.columns or EXACT not in model.columns:
        return None
    return mcnemar_test(reference[EXACT].to_numpy() >= 1, model[EXACT].to_numpy() >= 1)


def disagreements(reference: np.ndarray, model: np.ndarray) -> dict:
    """{"count", "rows": [{"row", "reference", "model"}]}: rows whose per-row scores differ, first ones in order."""
    differs = ~np.isclose(reference, model, equal_nan=True)
    rows = np.flatnonzero(differs)
    shown = [
        {"row": int(r), "reference": float(reference[r]), "model": float(model[r])} for r in rows[:MAX_DISAGREEMENTS]
    ]
    return {"count": int(rows.size), "rows": shown}


def compare_row_predictions(task: str, frames: dict[str, pd.DataFrame], config: BootstrapConfig | None = None) -> dict:
    """Compare each model after the first with the first on the same rows (see the module docstring).

    Args:
        task: "causal-lm" or "token-classification".
        frames: model name -> its predictions.parquet frame, rows in the same order; the first is the reference.
    Returns:
        compare.compare_predictions' JSON shape: {"reference", "n", "resamples", "seed", "reference_metrics",
        "models": {name: {"metrics", "differences", "mcnemar" (or None), "disagreements"}}}, plus "task".
    Raises:
        MedcoreError: fewer than two models, or frames of other rows.
    """
    config = config or BootstrapConfig()
    if len(frames) < 2:
        raise MedcoreError(f"A comparison needs two or more models; got {len(frames)} ({', '.join(frames)}).")
    (reference, first), *others = frames.items()
    for name, frame in others:
        if len(frame) != len(first) or not frame["row"].equals(first["row"]):
            raise MedcoreError(
                f"Model '{name}' scored other rows than '{reference}': compare models on the same rows."
            )
    metrics = {name: row_metrics(task, frame) for name, frame in frames.items()}
    boot = resampled_ratios(metrics, len(first), config)
    points = {name: point_values(m) for name, m in metrics.items()}
    reference_rows = per_row_score(task, first)
    models = {}
    for name, frame in others:
        shared = [m for m in metrics[reference] if m in metrics[name]]
        models[name] = {
            "metrics": {m: points[name][m] for m in shared},
            "differences": {
                m: difference(points[reference][m], points[name][m], boot[name][m] - boot[reference][m])
                for m in shared
            },
            "mcnemar": mcnemar_on_exact(first, frame) if task == "causal-lm" else None,
            "disagreements": disagreements(reference_rows, per_row_score(task, frame)),
        }
    return {
        "task": task,
        "reference": reference,
        "n": len(first),
        "resamples": config.resamples,
        "seed": config.seed,
        "reference_metrics": points[reference],
        "models": models,
    }
