"""A closed blinded review, unblinded: per-model win rates with Wilson CIs, Cohen's kappa, preference-data export.

    summary = summarize_review(review)      # after close_review(review); before it, MedcoreError
    path = export_preferences(review)       # reviews/<id>/preferences.jsonl: {"prompt", "chosen", "rejected"} a line

Counting rules:
- A judgment is a reviewer's latest verdict on an item (later lines of verdicts.jsonl supersede earlier ones); two
  reviewers on one item are two judgments.
- Win rate of a model = judgments where its response was better / all judgments, with a 95% Wilson interval. Both
  acceptable and both wrong are counted apart, each with its own rate and interval, so the two models' win rates and
  those two rates sum to 1. decisive_share = wins / decisive judgments (the head-to-head preference), also Wilson.
- Cohen's kappa for every two reviewers who judged the same items, over those items, on the four verdict categories
  as shown (both saw the same order); undefined (None) when chance agreement is 1 (both always gave one same verdict).
- Preference export: one line per item with a decisive verdict, when every decisive verdict on it picks the same
  response and no reviewer judged both wrong (a response someone judged wrong is no "chosen" answer); identical
  responses are left out. Text is the redacted text reviewers saw.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from medcore.evaluate.bootstrap import wilson_interval
from medcore.evaluate.review import (
    DECISIVE,
    VERDICT_CHOICES,
    Review,
    latest_verdicts,
    read_items,
    read_sealed,
)
from medcore.fileio import write_bytes_atomic

TIES = ("both_acceptable", "both_wrong")


def proportion(count: int, total: int) -> dict[str, float | None]:
    """count / total with its 95% Wilson interval; all None when total is 0."""
    if total == 0:
        return {"value": None, "ci_low": None, "ci_high": None}
    low, high = wilson_interval(count, total)
    return {"value": count / total, "ci_low": low, "ci_high": high}


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two raters' paired verdicts (categories VERDICT_CHOICES); None where chance agreement is 1."""
    index = {v: i for i, v in enumerate(VERDICT_CHOICES)}
    table = np.zeros((len(VERDICT_CHOICES), len(VERDICT_CHOICES)))
    np.add.at(table, ([index[v] for v in first], [index[v] for v in second]), 1)
    n = table.sum()
    if n == 0:
        return None
    observed = np.trace(table) / n
    chance = float(table.sum(axis=1) @ table.sum(axis=0)) / n**2
    return None if chance >= 1 else float((observed - chance) / (1 - chance))


def reviewer_agreement(latest: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """Kappa for every two reviewers with items in common: reviewers, items (shared), kappa."""
    by_reviewer: dict[str, dict[int, str]] = {}
    for (reviewer, item), record in latest.items():
        by_reviewer.setdefault(reviewer, {})[item] = record["verdict"]
    out = []
    for a, b in combinations(sorted(by_reviewer), 2):
        shared = sorted(by_reviewer[a].keys() & by_reviewer[b].keys())
        if shared:
            kappa = cohen_kappa([by_reviewer[a][i] for i in shared], [by_reviewer[b][i] for i in shared])
            out.append({"reviewers": [a, b], "items": len(shared), "kappa": kappa})
    return out


def winner(verdict: str, first: int) -> int | None:
    """Index of the model whose response was better (`first` = index of the model shown first); None for a tie."""
    if verdict not in DECISIVE:
        return None
    return first if DECISIVE[verdict] == 0 else 1 - first


def unblind(review: Review) -> list[dict[str, Any]]:
    """Per item, after close: the model shown as response 1 and 2, the dataset row (from evals) and each reviewer's
    latest verdict with the winning model (None for both acceptable / both wrong).

    Raises:
        MedcoreError: the review is still open.
    """
    sealed = read_sealed(review)
    models, firsts, rows = sealed["models"], sealed["first"], sealed["rows"]
    verdicts: dict[int, list[dict[str, Any]]] = {}
    for (reviewer, item), record in sorted(latest_verdicts(review).items()):
        better = winner(record["verdict"], firsts[item])
        entry = {
            "reviewer": reviewer,
            "verdict": record["verdict"],
            "winner": None if better is None else models[better],
        }
        verdicts.setdefault(item, []).append({**entry, "comment": record["comment"], "at": record["at"]})
    return [
        {
            "item": item,
            "response_1_model": models[first],
            "response_2_model": models[1 - first],
            "row": rows[item],
            "verdicts": verdicts.get(item, []),
        }
        for item, first in enumerate(firsts)
    ]


def summarize_review(review: Review) -> dict[str, Any]:
    """The unblinded results of a closed review (counting rules in the module docstring).

    Returns:
        {"review_id", "name", "items", "judged_items", "judgments", "reviewers": {name: judgments},
        "models": {model: {"wins", "win_rate", "decisive_share"}}, "both_acceptable": {"count", "rate"},
        "both_wrong": {"count", "rate"}, "decisive": count, "agreement": [{"reviewers", "items", "kappa"}]},
        every rate {"value", "ci_low", "ci_high"}.
    Raises:
        MedcoreError: the review is still open.
    """
    sealed = read_sealed(review)
    models, firsts = sealed["models"], sealed["first"]
    latest = latest_verdicts(review)
    verdicts = [record["verdict"] for record in latest.values()]
    wins = [0, 0]
    for (_, item), record in latest.items():
        better = winner(record["verdict"], firsts[item])
        if better is not None:
            wins[better] += 1
    n, decisive = len(verdicts), sum(wins)
    reviewers: dict[str, int] = {}
    for reviewer, _ in latest:
        reviewers[reviewer] = reviewers.get(reviewer, 0) + 1
    manifest = review.read_manifest()
    return {
        "review_id": review.review_id,
        "name": manifest.get("name"),
        "items": len(firsts),
        "judged_items": len({item for _, item in latest}),
        "judgments": n,
        "reviewers": dict(sorted(reviewers.items())),
        "models": {
            model: {
                "wins": wins[k],
                "win_rate": proportion(wins[k], n),
                "decisive_share": proportion(wins[k], decisive),
            }
            for k, model in enumerate(models)
        },
        **{tie: {"count": verdicts.count(tie), "rate": proportion(verdicts.count(tie), n)} for tie in TIES},
        "decisive": decisive,
        "agreement": reviewer_agreement(latest),
    }


def preference_records(review: Review) -> list[dict[str, str]]:
    """{"prompt", "chosen", "rejected"} per item that qualifies (rule in the module docstring), in item order."""
    by_item: dict[int, list[str]] = {}
    for (_, item), record in latest_verdicts(review).items():
        by_item.setdefault(item, []).append(record["verdict"])
    items = read_items(review)
    records = []
    for item in sorted(by_item):
        verdicts = by_item[item]
        sides = {DECISIVE[v] for v in verdicts if v in DECISIVE}
        if len(sides) != 1 or "both_wrong" in verdicts:
            continue
        better, line = sides.pop(), items[item]
        responses = (line["response_1"], line["response_2"])
        if responses[0] != responses[1]:
            records.append({"prompt": line["prompt"], "chosen": responses[better], "rejected": responses[1 - better]})
    return records


def export_preferences(review: Review) -> Path:
    """Write the decisive verdicts of a closed review as preference data (JSONL) into its folder; returns the path.

    Raises:
        MedcoreError: the review is still open.
    """
    read_sealed(review)  # the same gate as the results: a review exports only once closed
    lines = "".join(json.dumps(record) + "\n" for record in preference_records(review))
    write_bytes_atomic(review.preferences, lines.encode())
    return review.preferences
