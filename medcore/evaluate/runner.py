"""Run a model over a dataset split and score it with 95% CIs: the engine of `medcore eval run`.

    medcore eval run RUN_ID --dataset notes-redacted --split test --json   # a run's adapter on its base model
    medcore eval run minilm --dataset notes-redacted                       # a base model, fresh head: chance floor
    medcore eval run tiny-llama --dataset qa-redacted --max-new-tokens 32  # generation, greedy
    medcore eval run 'openai:http://127.0.0.1:8000/v1#qa' --dataset qa-redacted   # an OpenAI-compatible endpoint

evaluate_model dispatches on the dataset's task (a run must have the same task):
- classification: class probabilities, every classification metric (medcore.evaluate.subgroups), here;
- token-classification: entity-level precision, recall and F1 (medcore.evaluate.entities);
- causal-lm: greedy generation, exact match, token F1, ROUGE-L, embedding similarity (medcore.evaluate.generation).
What a model argument names and how it loads: medcore.evaluate.sources. Every run of a split writes
evals/<eval_id>/ (see medcore.evaluate.results).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medcore import __version__
from medcore.cls_only import cls_logits, supports_cls_only
from medcore.data.manifest import DatasetManifest, load_split, read_manifest
from medcore.errors import MedcoreError, validated
from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.entities import score_token_split
from medcore.evaluate.generation import score_generation_split
from medcore.evaluate.predictions import Predictions, subgroup_values
from medcore.evaluate.results import write_eval
from medcore.evaluate.row_scores import TaskScores
from medcore.evaluate.sources import (
    CLASSIFIER_TASKS,
    FRESH_HEAD_SEED,
    MAX_LENGTH,
    SUPPORTED_TASKS,
    ModelSource,
    build_network,
    check_source_task,
    check_task,
    model_identity,
    resolve_source,
)
from medcore.evaluate.subgroups import score_predictions
from medcore.models import PAIR_TRUNCATION, load_tokenizer
from medcore.rundir import RunDir
from medcore.train.spec import load_spec
from medcore.workspace import Workspace

SHOWN_LABELS = 20
BASE_MODELS = {"classification": ("minilm",), "token-classification": ("minilm",), "causal-lm": ("tiny-llama",)}
BASE_CLASSIFIERS = BASE_MODELS["classification"]  # registry encoders a picker offers as the untuned baseline
Progress = Callable[[int, int], None]  # (examples done, examples in the split)
_BOOT = BootstrapConfig.model_fields


class EvalRunConfig(BaseModel):
    """What `medcore eval run` evaluates, and how; written to the eval folder's config.json."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="A run id (its adapter on its base model), a registry model (minilm, tiny-llama) or model "
        "folder (a fresh, untrained head where the task needs one: a chance baseline), or an OpenAI-compatible "
        "endpoint for generation, openai:URL#MODEL (/v1/completions, the training prompt format) or "
        "openai-chat:URL#MODEL (/v1/chat/completions); its key is read from $MEDCORE_EVAL_API_KEY."
    )
    dataset: str = Field(description="Workspace dataset to evaluate on (see `medcore data list`).")
    split: Literal["train", "validation", "test"] = Field("test", description="Split to evaluate (default test).")
    batch_size: int = Field(
        32, ge=1, le=4096, description="Examples per forward pass, grouped by length (default 32)."
    )
    seed: int = Field(_BOOT["seed"].default, ge=0, description=_BOOT["seed"].description)
    resamples: int = Field(_BOOT["resamples"].default, ge=100, le=100_000, description=_BOOT["resamples"].description)
    max_new_tokens: int = Field(
        64, ge=1, le=4096, description="Generation (causal-lm datasets): most tokens per answer, greedy (default 64)."
    )
    keep_outputs: bool = Field(
        False,
        description="Generation and token classification: also write the model's outputs (generated text, predicted "
        "spans) to outputs.parquet in the eval folder. They may hold PHI: off by default.",
    )


def evaluable_models(ws: Workspace, dataset: str | None = None) -> list[str]:
    """What `eval run` accepts, for pickers: completed runs of a supported task (of `dataset`'s task only, when it is
    given and has one; those trained on it first, newest first), then the registry's base models for that task (the
    chance floor; the encoders when no task is known)."""
    task = read_manifest(ws, dataset).task if dataset else None
    runs = [rd for rd in (RunDir(path) for path in ws.runs.glob("*")) if rd.spec.exists()] if ws.runs.exists() else []
    done = []
    for rd in runs:
        spec = load_spec(rd.spec)
        fits = spec.task == task if task in SUPPORTED_TASKS else spec.task in SUPPORTED_TASKS
        if fits and rd.read_status().get("state") == "completed":
            done.append((spec.dataset != dataset, -rd.path.stat().st_mtime, rd.run_id))
    return [run_id for *_, run_id in sorted(done)] + list(BASE_MODELS.get(task, BASE_CLASSIFIERS))


def dataset_labels(ws: Workspace, dataset: str) -> tuple[DatasetManifest, list[str]]:
    """The dataset's manifest and label names (in its label order), after checking it is a classification dataset."""
    manifest = read_manifest(ws, dataset)
    check_task(manifest.task, f"Dataset '{dataset}'", CLASSIFIER_TASKS)
    return manifest, [str(label) for label in manifest.label_set]


def show_labels(labels: list[str]) -> str:
    shown = ", ".join(labels[:SHOWN_LABELS])
    return shown + (f" and {len(labels) - SHOWN_LABELS} more" if len(labels) > SHOWN_LABELS else "")


def head_labels(source: ModelSource, ws: Workspace, dataset: str, labels: list[str]) -> list[str]:
    """The classes of the model's head, in output order: a run's training labels; a fresh head: the dataset's."""
    if source.spec is None:
        return labels
    trained_on = source.spec.dataset
    try:
        head = [str(label) for label in read_manifest(ws, trained_on).label_set]
    except MedcoreError:
        raise MedcoreError(
            f"Run '{source.run.run_id}' was trained on dataset '{trained_on}', which is no longer in the "
            "workspace, so the names of its head's classes are unknown. Re-import that dataset, then evaluate again."
        ) from None
    check_same_labels(head, labels, f"Run '{source.run.run_id}' (trained on '{trained_on}')", dataset)
    return head


def check_same_labels(head: list[str], labels: list[str], what: str, dataset: str) -> None:
    if set(head) != set(labels):
        raise MedcoreError(
            f"{what} predicts the classes {show_labels(head)}, but dataset '{dataset}' has the labels "
            f"{show_labels(labels)}. Evaluate on a dataset with the same labels, or train a run on '{dataset}'."
        )


def load_classifier(model: str, ws: Workspace, dataset: str):
    """(model, tokenizer, labels) for `model` = a run id (its adapter on its base model, loaded with peft, merged
    for speed) or a registry name / model folder (a base model with a fresh head sized to the dataset's labels).
    Eval mode, on CPU, fp32. `labels` are the head's classes in output order; the tokenizer's model_max_length
    is the run's max_length (MAX_LENGTH for a base model).

    Raises:
        MedcoreError: see resolve_source; a dataset that is not a classification dataset; label sets that differ.
    """
    _, labels = dataset_labels(ws, dataset)
    return classifier_for(resolve_source(model, ws, CLASSIFIER_TASKS), ws, dataset, labels)


def classifier_for(source: ModelSource, ws: Workspace, dataset: str, labels: list[str]):
    """load_classifier for an already resolved model and the dataset's labels."""
    import torch

    head = head_labels(source, ws, dataset, labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FRESH_HEAD_SEED)  # a fresh head's weights; a run's trained head replaces them
        net = build_network(source, "classification", head, ws)
    tokenizer = load_tokenizer(source.base, ws)
    tokenizer.model_max_length = source.spec.max_length if source.spec else MAX_LENGTH
    return net.to(device="cpu", dtype=torch.float32).eval(), tokenizer, head


def class_probabilities(
    net, tokenizer, texts: list[str], batch_size: int, progress: Progress | None = None, pairs: list[str] | None = None
):
    """(n, classes) softmax probabilities in the texts' order; batches of similar length, so little padding.

    Tokenised once (right-padded to the longest text); each batch is a slice cut to its longest member, so the hot
    loop does no per-example Python work. `progress(done, total)` is called after each batch. With `pairs`, each
    (text, pair) is scored as the tokenizer's sentence pair, truncated and segmented as training encodes it.
    """
    import torch

    out = np.empty((len(texts), net.config.num_labels))
    if not texts:
        return out
    encoded = tokenizer(
        texts,
        pairs,
        truncation=PAIR_TRUNCATION if pairs is not None else True,
        max_length=tokenizer.model_max_length,
        padding=True,
        padding_side="right",
        return_tensors="np",
    )
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    # Segment ids only for pairs, as training passes them: a single text's are all 0, the model's default.
    segments = encoded.get("token_type_ids") if pairs is not None else None
    lengths = mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    cls_only = supports_cls_only(net)  # a BERT head reads [CLS] only: its last layer runs for that position
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows[0]])
            inputs = {"input_ids": ids[rows, :width], "attention_mask": mask[rows, :width]}
            if segments is not None:
                inputs["token_type_ids"] = segments[rows, :width]
            tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
            logits = cls_logits(net, **tensors) if cls_only else net(**tensors).logits
            out[rows] = torch.softmax(logits.double(), dim=-1).numpy()  # float64: rows sum to 1 within 1e-12
            if progress is not None:
                progress(start + len(rows), len(order))
    return out


def predict_split(
    model: str, ws: Workspace, dataset: str, split: str = "test", batch_size: int = 32, loaded=None
) -> pd.DataFrame:
    """Class probabilities for every example of the split.

    Columns: row (0-based position in the split file), y_true (label string), y_pred (label string), then p_<label>
    (float) for each label in the dataset's label order; rows in the split's original order. No text.
    `loaded` = a (model, tokenizer, labels) from load_classifier, to reuse.
    """
    manifest, labels = dataset_labels(ws, dataset)
    loaded = loaded or classifier_for(resolve_source(model, ws), ws, dataset, labels)
    return predict_frame(load_split(ws, dataset, split), manifest, labels, loaded, model, batch_size)


def predict_frame(
    frame: pd.DataFrame,
    manifest: DatasetManifest,
    labels: list[str],
    loaded,
    model: str,
    batch_size: int,
    progress: Progress | None = None,
):
    """predict_split over an already loaded split; `progress(done, total)` after each batch."""
    net, tokenizer, head = loaded
    check_same_labels(head, labels, f"Model '{model}'", manifest.name)
    texts = frame[manifest.mapping.text].fillna("").astype(str).tolist()
    pair = manifest.mapping.text_pair
    pairs = frame[pair].fillna("").astype(str).tolist() if pair else None
    proba = class_probabilities(net, tokenizer, texts, batch_size, progress, pairs)[
        :, [head.index(label) for label in labels]
    ]
    columns: dict[str, Any] = {
        "row": np.arange(len(frame), dtype=np.int64),
        "y_true": frame[manifest.mapping.label].astype(str).to_numpy(dtype=object),
        "y_pred": np.asarray(labels, dtype=object)[proba.argmax(axis=1)],
    }
    columns.update({f"p_{label}": proba[:, j] for j, label in enumerate(labels)})
    return pd.DataFrame(columns)


def as_predictions(predictions: pd.DataFrame, labels: list[str], subgroups: dict[str, np.ndarray], source: str):
    """predict_split's frame as the Predictions that score_predictions takes (codes into `labels`)."""
    codes = {label: code for code, label in enumerate(labels)}
    y_true = predictions["y_true"].map(codes)
    unknown = np.flatnonzero(y_true.isna().to_numpy())
    if unknown.size:
        raise MedcoreError(
            f"{source} has {unknown.size} rows whose label is not among the dataset's labels (first row "
            f"{int(unknown[0])}). Re-import the dataset."
        )
    return Predictions(
        source=source,
        labels=labels,
        y_true=y_true.to_numpy(dtype=np.int64),
        y_pred=predictions["y_pred"].map(codes).to_numpy(dtype=np.int64),
        proba=predictions[[f"p_{label}" for label in labels]].to_numpy(dtype=float),
        subgroups=subgroups,
    )


def split_subgroups(frame: pd.DataFrame, manifest: DatasetManifest, split: str) -> dict[str, np.ndarray]:
    """The dataset's mapped subgroup columns of the split, as subgroup values; none when the mapping has none."""
    columns = manifest.mapping.subgroups
    if not columns:
        return {}
    where = f"split '{split}' of dataset '{manifest.name}'"
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MedcoreError(f"Subgroup columns {', '.join(missing)} are mapped but not in {where}. Re-import it.")
    return {column: subgroup_values(frame[column], column, where) for column in columns}


def eval_config(**fields: Any) -> EvalRunConfig:
    return validated(EvalRunConfig, fields, "eval run options")


def score_classification_split(
    source: ModelSource,
    ws: Workspace,
    manifest: DatasetManifest,
    frame: pd.DataFrame,
    subgroups: dict[str, np.ndarray],
    options: dict[str, Any],
    progress: Progress | None = None,
) -> TaskScores:
    """Class probabilities of every example and every classification metric (`medcore eval metrics --json`)."""
    labels = [str(label) for label in manifest.label_set]
    loaded = classifier_for(source, ws, manifest.name, labels)
    predictions = predict_frame(frame, manifest, labels, loaded, options["model"], options["batch_size"], progress)
    scored = as_predictions(predictions, labels, subgroups, f"{manifest.name}/{options['split']}")
    report = score_predictions(scored, BootstrapConfig(resamples=options["resamples"], seed=options["seed"]))
    return TaskScores(predictions, report.as_dict(), {"labels": labels})


TASK_SCORERS = {
    "classification": score_classification_split,
    "token-classification": score_token_split,
    "causal-lm": score_generation_split,
}


def check_request(ws: Workspace, dataset: str, split: str, models: list[str]) -> tuple[DatasetManifest, list]:
    """What every eval checks before any model loads (a single run, a side-by-side, a detached job): a dataset of a
    task the evaluator scores, a split with rows, and each model known and of the dataset's task.

    Returns:
        (the dataset's manifest, each model's ModelSource in order).
    """
    manifest = read_manifest(ws, dataset)
    check_task(manifest.task, f"Dataset '{dataset}'")
    if not manifest.rows.get(split):
        splits = ", ".join(f"{name} ({n})" for name, n in manifest.rows.items())
        raise MedcoreError(f"Split '{split}' of dataset '{dataset}' has no rows; its splits: {splits}. Pick another.")
    sources = [resolve_source(model, ws) for model in models]
    for source in sources:
        check_source_task(source, manifest)  # e.g. an endpoint on a classification dataset
    return manifest, sources


def evaluate_model(
    model: str,
    ws: Workspace,
    dataset: str,
    split: str = "test",
    batch_size: int = 32,
    seed: int = 0,
    resamples: int = 1000,
    progress: Progress | None = None,
    max_new_tokens: int = EvalRunConfig.model_fields["max_new_tokens"].default,
    keep_outputs: bool = False,
) -> dict:
    """Run the model over the split and score it by the dataset's task, every headline figure with its 95% CI,
    written to <workspace>/evals/<eval_id>/ (predictions.parquet, result.json, config.json; outputs.parquet with
    keep_outputs). Subgroups: the dataset's mapped subgroup columns, if any.

    result.json: classification, the JSON shape of `medcore eval metrics --json` (n, metrics, per_class, subgroups,
    fairness); token-classification and causal-lm, {"task", "n", "metrics", "subgroups"} (and per_type, entities).

    Returns:
        {"eval_id", "path", **result.json}.
    Raises:
        MedcoreError: bad options, an empty split, a dataset or run of a task it does not score, a run of another
            task than the dataset's, and what loading the model raises.
    """
    config = eval_config(model=model, dataset=dataset, split=split, batch_size=batch_size, seed=seed,
                         resamples=resamples, max_new_tokens=max_new_tokens, keep_outputs=keep_outputs)  # fmt: skip
    manifest, (source,) = check_request(ws, dataset, split, [model])
    frame = load_split(ws, dataset, split)  # read once: the texts to score and the subgroup columns
    subgroups = split_subgroups(frame, manifest, split)
    scores = TASK_SCORERS[manifest.task](source, ws, manifest, frame, subgroups, config.model_dump(), progress)
    record = {
        **config.model_dump(),
        "task": manifest.task,
        "dataset_content_hash": manifest.content_hash,
        **scores.record,
        "rows": len(frame),
        "subgroups": list(subgroups),
        "model_identity": model_identity(source, ws),
        "medcore_version": __version__,
        "created_at": time.time(),
    }
    outputs = scores.outputs if keep_outputs else None
    eval_id, path = write_eval(ws, scores.predictions, scores.result, record, outputs)
    return {"eval_id": eval_id, "path": str(path), **scores.result}
