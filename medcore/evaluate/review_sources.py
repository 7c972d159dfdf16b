"""Where a blinded review's items come from: two evals of one dataset split, or explicit pairs of outputs.

    create_review_from_evals(ws, "eval-...-a1b2c3", "eval-...-d4e5f6", ReviewConfig(max_items=50, seed=0))
    create_review_from_pairs(ws, [ReviewPair(prompt=..., model_a=..., output_a=..., model_b=..., output_b=...)])

Both hand medcore.evaluate.review.write_review the items (text as given), the two model names and their sources,
which it seals, blinds and redacts. From classification evals, the prompt is the dataset split's text column at the
eval's `row`, each output is the model's predicted label and the reference is the true label; from generation evals
(run with --keep-outputs), the prompt is the question as the models were asked it, each output a model's answer and
the reference the dataset's response.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medcore.access.acting import acting_for
from medcore.access.actor import Actor
from medcore.data.manifest import DatasetManifest, load_split, read_manifest
from medcore.errors import MedcoreError, validated
from medcore.evaluate.compare import unique_names
from medcore.evaluate.results import OUTPUTS, load_eval
from medcore.evaluate.review import RawItem, Review, write_review
from medcore.workspace import Workspace

MIN_NAME_CHECK = 3  # model names shorter than this are not searched for in a review's name (too many false hits)


class ReviewConfig(BaseModel):
    """How a review is drawn from its source."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "", max_length=120, description="Name shown in the review list; reviewers see it, so no model names."
    )
    seed: int | None = Field(
        None, ge=0, description="Seed of the item sample and the per-item order; none draws one. Kept sealed."
    )
    max_items: int = Field(100, ge=1, le=10_000, description="Most items drawn into the review (default 100).")
    disagreements_only: bool = Field(
        True,
        description="From evals: only rows where the two models' predicted labels (or answers, case and spacing "
        "aside) differ (default on).",
    )


class ReviewPair(BaseModel):
    """One item given explicitly: a prompt and two models' outputs (the Chat page's 'send to review')."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The input both models answered; PHI-redacted before it is stored.")
    model_a: str = Field(min_length=1, description="Name of the model that wrote output_a; sealed until close.")
    output_a: str = Field(description="Model A's output; PHI-redacted before it is stored.")
    model_b: str = Field(min_length=1, description="Name of the model that wrote output_b; sealed until close.")
    output_b: str = Field(description="Model B's output; PHI-redacted before it is stored.")
    reference: str | None = Field(None, description="Optional reference answer shown to reviewers, redacted.")

    @model_validator(mode="after")
    def check_two_models(self) -> ReviewPair:
        if self.model_a == self.model_b:
            raise ValueError("model_a and model_b must name two different models")
        return self


def check_name(name: str, models: list[str]) -> None:
    shown = [m for m in models if len(m) >= MIN_NAME_CHECK and m.lower() in name.lower()]
    if shown:
        raise MedcoreError(
            f"The review name '{name}' contains the model name '{shown[0]}'; reviewers see the name, so it would "
            "unblind them. Pick a name without model names."
        )


def review_pair(**fields: Any) -> ReviewPair:
    """A ReviewPair from keyword arguments (the console's edge); every problem in one MedcoreError."""
    return validated(ReviewPair, fields, "review pair")


def review_config(**fields: Any) -> ReviewConfig:
    """A ReviewConfig from keyword arguments, None meaning the default (the CLI's edge); problems in one MedcoreError."""
    return validated(ReviewConfig, {k: v for k, v in fields.items() if v is not None}, "review options")


def draw_seed(config: ReviewConfig) -> int:
    return config.seed if config.seed is not None else secrets.randbelow(2**31)


def check_same_split(ws: Workspace, eval_a: str, eval_b: str, records: tuple[dict, dict]) -> DatasetManifest:
    """The manifest of the dataset both evals scored, after checking they scored one split of it as it is now."""
    if eval_a == eval_b:
        raise MedcoreError(f"Both evals are '{eval_a}': pick the evals of two different models.")
    key = ("dataset", "split", "dataset_content_hash", "labels", "task")
    if any(records[0].get(k) != records[1].get(k) for k in key):
        raise MedcoreError(
            f"Evals '{eval_a}' and '{eval_b}' did not score the same dataset split (dataset, split, content hash or "
            "labels differ). Review two evals of one dataset split."
        )
    manifest = read_manifest(ws, records[0]["dataset"])
    if manifest.content_hash != records[0]["dataset_content_hash"]:
        raise MedcoreError(
            f"Dataset '{manifest.name}' changed since evals '{eval_a}' and '{eval_b}' ran (its content hash differs), "
            "so their rows no longer match its texts. Evaluate both models again, then create the review."
        )
    return manifest


def draw_eval_items(joined: pd.DataFrame, prompts: pd.Series, max_items: int, seed: int) -> list[RawItem]:
    """Up to max_items RawItems from the joined rows (row, y_true, y_pred_a, y_pred_b), drawn with the seed; each
    prompt is prompts[row] (the split's text, or the question as the model was asked it)."""
    rows = sorted(int(r) for r in joined["row"])
    drawn = random.Random(f"sample-{seed}").sample(rows, min(max_items, len(rows)))
    by_row = joined.set_index("row")
    return [
        RawItem(
            prompt=prompts.iloc[row],
            outputs=(str(by_row.at[row, "y_pred_a"]), str(by_row.at[row, "y_pred_b"])),
            reference=str(by_row.at[row, "y_true"]),
            row=row,
        )
        for row in drawn
    ]


def kept_outputs(ws: Workspace, eval_id: str) -> pd.DataFrame:
    """The generated answers an eval kept (row, output).

    Raises:
        MedcoreError: the eval ran without keeping them (they are text, so they are kept only when asked).
    """
    path = ws.evals / eval_id / OUTPUTS
    if not path.exists():
        raise MedcoreError(
            f"Eval '{eval_id}' kept no generated answers, and a review shows them to clinicians. Evaluate the model "
            "again keeping its outputs (`medcore eval run MODEL --dataset NAME --keep-outputs`)."
        )
    return pd.read_parquet(path)[["row", "output"]]


def paired_rows(ws: Workspace, manifest: DatasetManifest, evals: tuple[str, str], saved: tuple) -> tuple:
    """(joined rows: row, y_true, y_pred_a, y_pred_b; prompts by row) of two evals of one split, by task:
    classification pairs the predicted labels with the split's text; generation pairs the two models' kept answers
    with the question as asked and the reference answer.

    Raises:
        MedcoreError: generation evals without kept outputs, or a task reviews do not cover.
    """
    record = saved[0].config
    task, split = record.get("task", "classification"), record["split"]
    frame = load_split(ws, manifest.name, split)
    if task == "classification":
        joined = (
            saved[0]
            .predictions[["row", "y_true", "y_pred"]]
            .merge(saved[1].predictions[["row", "y_pred"]], on="row", suffixes=("_a", "_b"))
        )
        return joined, frame[manifest.mapping.text].fillna("").astype(str)
    if task == "causal-lm":
        from medcore.evaluate.generation import instruction_prompts

        a, b = (kept_outputs(ws, eval_id) for eval_id in evals)
        joined = a.merge(b, on="row", suffixes=("_a", "_b")).rename(columns={"output_a": "y_pred_a",
                                                                            "output_b": "y_pred_b"})  # fmt: skip
        references = frame[manifest.mapping.response].fillna("").astype(str)
        joined["y_true"] = references.iloc[joined["row"].to_numpy()].to_numpy()
        return joined, pd.Series(instruction_prompts(frame, manifest.mapping))
    raise MedcoreError(
        f"Evals '{evals[0]}' and '{evals[1]}' are {task} evals; reviews show classification labels or generated "
        "answers. Compare entity taggers with `medcore eval run MODEL --compare OTHER` instead."
    )


def same_answer(a: pd.Series, b: pd.Series) -> pd.Series:
    """Whether two outputs say the same (case and spacing aside): a review's disagreements are the other rows."""
    norm = lambda s: s.astype(str).str.lower().str.split().str.join(" ")  # noqa: E731
    return norm(a) == norm(b)


def create_review_from_evals(
    ws: Workspace, eval_a: str, eval_b: str, config: ReviewConfig | None = None, *, actor: Actor | None = None
) -> Review:
    """A blinded review of two evals (_create_review_from_evals); for `actor`, checked and audited."""
    with acting_for(ws, actor, "manage_reviews", kind="review_created", evals=[eval_a, eval_b]) as outcome:
        review = _create_review_from_evals(ws, eval_a, eval_b, config)
        outcome["review_id"] = review.review_id
    return review


def _create_review_from_evals(ws: Workspace, eval_a: str, eval_b: str, config: ReviewConfig | None = None) -> Review:
    """A review of two evals of one dataset split: per row (joined on `row`) the split's text is the prompt, each
    model's predicted label its output and the true label the reference. Rows are drawn with the seed.

    Raises:
        MedcoreError: an unknown eval, the same eval twice, evals of different splits or labels, a dataset changed
            since the evals ran, a name holding a model's name, or no row to review.
    """
    config = config or ReviewConfig()
    first, second = load_eval(ws, eval_a), load_eval(ws, eval_b)
    record_a, record_b = first.config, second.config
    manifest = check_same_split(ws, eval_a, eval_b, (record_a, record_b))
    split = record_a["split"]
    models = unique_names([str(record_a["model"]), str(record_b["model"])])
    name = config.name or f"{manifest.name}/{split}"
    check_name(name, models)
    joined, prompts = paired_rows(ws, manifest, (eval_a, eval_b), (first, second))
    if config.disagreements_only:
        joined = joined[~same_answer(joined["y_pred_a"], joined["y_pred_b"])]
    if joined.empty:
        what = "rows where the two models disagree" if config.disagreements_only else "rows in common"
        raise MedcoreError(f"Evals '{eval_a}' and '{eval_b}' have no {what}: nothing to review.")
    seed = draw_seed(config)
    items = draw_eval_items(joined, prompts, config.max_items, seed)
    sources = [
        {"eval_id": eval_id, "model_identity": record.get("model_identity")}
        for eval_id, record in ((eval_a, record_a), (eval_b, record_b))
    ]
    meta = {"name": name, "source": "evals", "dataset": manifest.name, "split": split}
    return write_review(ws, items, {"models": models, "sources": sources}, meta, seed)


def create_review_from_pairs(
    ws: Workspace, pairs: list[ReviewPair], config: ReviewConfig | None = None, *, actor: Actor | None = None
) -> Review:
    """A blinded review of explicit pairs (_create_review_from_pairs); for `actor`, checked and audited."""
    with acting_for(ws, actor, "manage_reviews", kind="review_created", source="pairs", pairs=len(pairs)) as outcome:
        review = _create_review_from_pairs(ws, pairs, config)
        outcome["review_id"] = review.review_id
    return review


def _create_review_from_pairs(ws: Workspace, pairs: list[ReviewPair], config: ReviewConfig | None = None) -> Review:
    """A review of explicit pairs, in the order given; every pair must be between the same two models.

    Raises:
        MedcoreError: no pairs, or pairs naming more (or fewer) than two models.
    """
    config = config or ReviewConfig()
    if not pairs:
        raise MedcoreError("No pairs to review: pass at least one (prompt, two models, two outputs).")
    models = sorted({p.model_a for p in pairs} | {p.model_b for p in pairs})
    if len(models) != 2:
        raise MedcoreError(
            f"The pairs name {len(models)} models; a review compares two. Send the pairs of each two models to a "
            "review of their own."
        )
    items = []
    for pair in pairs[: config.max_items]:
        outputs = {pair.model_a: pair.output_a, pair.model_b: pair.output_b}
        items.append(RawItem(pair.prompt, (outputs[models[0]], outputs[models[1]]), pair.reference))
    name = config.name or f"pairs {time.strftime('%Y-%m-%d %H:%M')}"
    check_name(name, models)
    meta = {"name": name, "source": "pairs", "dataset": None, "split": None}
    return write_review(ws, items, {"models": models, "sources": None}, meta, draw_seed(config))
