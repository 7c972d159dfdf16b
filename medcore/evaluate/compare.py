"""Compare two or more models on the same examples: paired bootstrap differences, McNemar's test, disagreements.

    medcore eval run RUN_A --dataset notes-redacted --compare RUN_B --compare minilm --json

The first model is the reference; each other model is compared with it. Rules:
- Paired bootstrap: every model is scored under the SAME stratified resample weight rows (bootstrap.resample_weights,
  resampling within each true class), so resample b's difference is the two models' scores on one and the same
  resampled set of examples. The pairing is exact: errors the models share cancel out of the interval.
- The difference is model minus reference: positive is better, except for brier and ece (lower is better).
  Its 95% interval is BCa with a jackknife over the same rows, percentile where BCa is undefined (as in bootstrap.py);
  resamples where either model's metric is undefined are left out. No Wilson rule: a difference is no proportion.
  A metric undefined for either model (e.g. AUROC without probabilities) has value and interval None, never 0.
- McNemar's exact test on correctness: b = reference right and model wrong, c = the reverse; two-sided exact binomial
  p-value of min(b, c) on b + c trials at p = 0.5 (p = 1.0 when b + c == 0).
- Classification here; generation and token classification (no classes) in compare_rows.py, same JSON shape.
- Disagreements: the rows (0-based positions in the split or predictions) where the predicted labels differ, with
  the true and both predicted labels (labels or codes, never text): the count, and the first MAX_DISAGREEMENTS rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import Field

from medcore.errors import MedcoreError, validated
from medcore.evaluate.bootstrap import BootstrapConfig, bootstrap_interval, jackknife_weights, resample_weights
from medcore.evaluate.compare_rows import compare_row_predictions
from medcore.evaluate.mcnemar import mcnemar_test
from medcore.evaluate.metrics import HEADLINE, check_codes, check_probabilities, score_batch
from medcore.evaluate.results import COMPARISON, load_eval
from medcore.evaluate.runner import EvalRunConfig, check_request, evaluate_model
from medcore.evaluate.sources import CLASSIFIER_TASKS
from medcore.rundir import write_json_atomic
from medcore.workspace import Workspace

MAX_DISAGREEMENTS = 100  # rows listed per model pair; "count" always gives the total
LOWER_IS_BETTER = ("brier", "ece")


def disagreement_table(y_true: np.ndarray, reference: np.ndarray, model: np.ndarray, labels=None) -> dict:
    """{"count", "rows": [{"row", "y_true", "reference", "model"}]} where the two predictions differ, first
    MAX_DISAGREEMENTS rows in row order; labels[code] when `labels` is given, else the codes."""
    rows = np.flatnonzero(reference != model)

    def name(code) -> str | int:
        return int(code) if labels is None else labels[int(code)]

    shown = [
        {"row": int(r), "y_true": name(y_true[r]), "reference": name(reference[r]), "model": name(model[r])}
        for r in rows[:MAX_DISAGREEMENTS]
    ]
    return {"count": int(rows.size), "rows": shown}


def checked_models(y_true, preds: dict, proba: dict, n_classes: int):
    """(y_true codes, {name: y_pred codes}, {name: proba or None}), every model checked against y_true."""
    if len(preds) < 2:
        raise MedcoreError(f"A comparison needs two or more models; got {len(preds)} ({', '.join(preds)}).")
    codes, probabilities = {}, {}
    for name, y_pred in preds.items():
        if np.shape(y_pred) != np.shape(y_true):
            shapes = f"{np.shape(y_pred)}, y_true {np.shape(y_true)}"
            raise MedcoreError(f"Model '{name}' has predictions of shape {shapes}: compare models on the same rows.")
        y_codes, codes[name] = check_codes(y_true, y_pred, n_classes)
        p = (proba or {}).get(name)
        where = f"The probabilities of model '{name}'"
        probabilities[name] = None if p is None else check_probabilities(p, n_classes, where)
        if probabilities[name] is not None and len(probabilities[name]) != y_codes.size:
            raise MedcoreError(f"{where} have {len(probabilities[name])} rows; y_true has {y_codes.size}.")
    return y_codes, codes, probabilities


def replicates(y_true, codes: dict, proba: dict, n_classes: int, chunks) -> dict[str, dict[str, np.ndarray]]:
    """{model: {metric: (B,)}} of every headline metric under each weight row, every model under the same rows."""
    scored: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in codes}
    for weights in chunks:
        for name, parts in scored.items():
            parts.append(score_batch(y_true, codes[name], n_classes, weights, proba[name]))
    return {name: {m: np.concatenate([p[m] for p in parts]) for m in HEADLINE} for name, parts in scored.items()}


def difference(point: float, boot: np.ndarray, jack: np.ndarray) -> dict:
    """{"value", "ci_low", "ci_high", "excludes_zero"} of one metric's difference; all None where undefined."""
    if np.isnan(point):
        return {"value": None, "ci_low": None, "ci_high": None, "excludes_zero": None}
    est = bootstrap_interval(float(point), boot, jack)
    excludes = None if est.ci_low is None else bool(est.ci_low > 0 or est.ci_high < 0)
    return {**est.as_dict(), "excludes_zero": excludes}


def point_dict(scores: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {m: None if np.isnan(scores[m][0]) else float(scores[m][0]) for m in HEADLINE}


def compare_predictions(
    y_true,
    preds: dict[str, np.ndarray],
    proba: dict[str, np.ndarray | None],
    n_classes: int,
    config: BootstrapConfig | None = None,
    labels: list[str] | None = None,
) -> dict:
    """Compare each model after the first with the first (the reference) on the same examples.

    Args:
        y_true: true class codes (n,).
        preds: model name -> predicted codes (n,); the first entry is the reference.
        proba: model name -> probabilities (n, K) or None (a missing name counts as None).
        labels: class names, to show in the disagreement rows instead of codes.
    Returns:
        JSON-able {"reference", "n", "resamples", "seed", "reference_metrics", "models": {name: {"metrics",
        "differences": {metric: {"value", "ci_low", "ci_high", "excludes_zero"}}, "mcnemar": {"b", "c",
        "p_value"}, "disagreements": {"count", "rows"}}}}; metrics are point values, None where undefined.
    Raises:
        MedcoreError: fewer than two models, codes out of range, arrays of other lengths, bad probabilities.
    """
    config = config or BootstrapConfig()
    rng = np.random.default_rng(config.seed)
    y_true, codes, proba = checked_models(y_true, preds, proba, n_classes)
    n = y_true.size
    point = replicates(y_true, codes, proba, n_classes, [np.ones((1, n))])
    boot = replicates(y_true, codes, proba, n_classes, resample_weights(y_true, config.resamples, rng))
    jack = replicates(y_true, codes, proba, n_classes, jackknife_weights(n, rng))
    reference, *others = codes
    models = {}
    for name in others:
        differences = {
            m: difference(
                point[name][m][0] - point[reference][m][0],
                boot[name][m] - boot[reference][m],
                jack[name][m] - jack[reference][m],
            )
            for m in HEADLINE
        }
        models[name] = {
            "metrics": point_dict(point[name]),
            "differences": differences,
            "mcnemar": mcnemar_test(codes[reference] == y_true, codes[name] == y_true),
            "disagreements": disagreement_table(y_true, codes[reference], codes[name], labels),
        }
    return {
        "reference": reference,
        "n": int(n),
        "resamples": config.resamples,
        "seed": config.seed,
        "reference_metrics": point_dict(point[reference]),
        "models": models,
    }


# `medcore eval run MODEL --compare OTHER`: each model evaluated once, then compared on its saved predictions.


class CompareRunConfig(EvalRunConfig):
    """`medcore eval run` with --compare: the reference model (`model`) and the models compared with it."""

    compare: list[str] = Field(
        min_length=1,
        description="Another model (run id, registry model or model folder) to compare with MODEL on the same "
        "examples: paired 95% CIs of each metric's difference, McNemar's test, the rows where they disagree. "
        "Repeat for more models.",
    )


def unique_names(models: list[str]) -> list[str]:
    """The models' names, a repeated one suffixed #2, #3...: 'minilm', 'minilm#2'."""
    seen: dict[str, int] = {}
    names = []
    for model in models:
        seen[model] = seen.get(model, 0) + 1
        names.append(model if seen[model] == 1 else f"{model}#{seen[model]}")
    return names


def compare_evals(ws: Workspace, eval_ids: list[str], names: list[str], config: BootstrapConfig) -> dict:
    """compare_predictions over saved evals of one dataset split (the first is the reference), by `names`.

    Raises:
        MedcoreError: an eval folder is missing, or the evals scored different examples or labels.
    """
    evals = [(saved.config, saved.predictions) for saved in (load_eval(ws, eval_id) for eval_id in eval_ids)]
    record, first = evals[0]
    labels = record.get("labels")
    code = {label: i for i, label in enumerate(labels or [])}
    key = ("dataset", "split", "dataset_content_hash", "labels", "task")
    for eval_id, (other, frame) in zip(eval_ids[1:], evals[1:], strict=True):
        same = [other.get(k) == record.get(k) for k in key]
        rows = [c for c in ("row", "y_true") if c in first.columns]
        if not all(same) or not frame[rows].equals(first[rows]):
            raise MedcoreError(
                f"Evals '{eval_ids[0]}' and '{eval_id}' did not score the same examples (dataset, split, content "
                "hash, labels or rows differ). Compare evals of one dataset split only."
            )
    frames = dict(zip(names, (frame for _, frame in evals), strict=True))
    task = record.get("task", "classification")
    if task not in CLASSIFIER_TASKS:  # generation and entity metrics: paired row resamples, no classes
        return compare_row_predictions(task, frames, config)
    preds = {name: frame["y_pred"].map(code).to_numpy(dtype=np.int64) for name, frame in frames.items()}
    proba = {name: frame[[f"p_{label}" for label in labels]].to_numpy(dtype=float) for name, frame in frames.items()}
    y_true = first["y_true"].map(code).to_numpy(dtype=np.int64)
    return compare_predictions(y_true, preds, proba, len(labels), config, labels=labels)


def compare_config(**fields) -> CompareRunConfig:
    return validated(CompareRunConfig, fields, "eval run options")


def compare_models(
    model: str,
    compare: list[str],
    ws: Workspace,
    dataset: str,
    split: str = "test",
    batch_size: int = 32,
    seed: int = 0,
    resamples: int = 1000,
    progress: Callable[[int, int, int], None] | None = None,
    max_new_tokens: int = EvalRunConfig.model_fields["max_new_tokens"].default,
    keep_outputs: bool = False,
) -> dict:
    """Evaluate `model` and each of `compare` on one split (evaluate_model: one forward pass and one eval folder
    each), then compare them on the saved predictions; the comparison goes to the first eval folder's
    comparison.json, with the options.

    Returns:
        {"models": [eval ids, reference first], "names": [the names in the comparison, same order],
        "comparison": compare_predictions' dict}.
    Raises:
        MedcoreError: bad options, an unknown model or a dataset of a task the evaluator does not score (before
            any model runs), and what evaluate_model raises.
    """
    config = compare_config(
        model=model,
        compare=compare,
        dataset=dataset,
        split=split,
        batch_size=batch_size,
        seed=seed,
        resamples=resamples,
        max_new_tokens=max_new_tokens,
        keep_outputs=keep_outputs,
    )
    models = [model, *compare]
    check_request(ws, dataset, split, models)  # a misspelt --compare fails now, not after the first forward pass
    options = config.model_dump(exclude={"model", "compare"})
    results = []
    for index, name in enumerate(models):
        step = None if progress is None else functools.partial(progress, index)  # (model index, done, total)
        results.append(evaluate_model(name, ws, **options, progress=step))
    eval_ids, names = [r["eval_id"] for r in results], unique_names(models)
    comparison = compare_evals(ws, eval_ids, names, BootstrapConfig(resamples=resamples, seed=seed))
    out = {"models": eval_ids, "names": names, "comparison": comparison}
    write_json_atomic(Path(results[0]["path"]) / COMPARISON, {**out, "config": config.model_dump()})
    return out
