"""Score PHI detections against gold spans: token recall/precision, per-category recall, strict entity F1."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

TOKEN = re.compile(r"[A-Za-z0-9]+")  # a token is a run of letters/digits, as in the i2b2 token-level scores


@dataclass
class PhiScore:
    """Running counts; `add` one document at a time, read the ratios at the end."""

    gold_tokens: int = 0
    predicted_tokens: int = 0
    true_positive_tokens: int = 0
    gold_entities: int = 0
    predicted_entities: int = 0
    exact_entities: int = 0
    gold_by_category: Counter = field(default_factory=Counter)
    found_by_category: Counter = field(default_factory=Counter)

    def add(
        self,
        text: str,
        gold: Iterable[tuple[int, int, str]],
        predicted: Iterable[tuple[int, int, str]],
        ignore: Iterable[tuple[int, int, str]] = (),
    ) -> None:
        """Add one document: gold and predicted spans as (start, end, category).

        Tokens under an `ignore` span (gold labels outside the scored scheme) count neither way.
        """
        gold, predicted = list(gold), list(predicted)
        gold_cover, predicted_cover = cover(len(text), gold), cover(len(text), predicted)
        ignored = cover(len(text), list(ignore))
        for match in TOKEN.finditer(text):
            if any_covered(ignored, match.start(), match.end()) is not None:
                continue
            in_gold = any_covered(gold_cover, match.start(), match.end())
            in_predicted = any_covered(predicted_cover, match.start(), match.end())
            self.gold_tokens += in_gold is not None
            self.predicted_tokens += in_predicted is not None
            self.true_positive_tokens += in_gold is not None and in_predicted is not None
            if in_gold is not None:
                self.gold_by_category[in_gold] += 1
                self.found_by_category[in_gold] += in_predicted is not None
        self.gold_entities += len(gold)
        self.predicted_entities += len(predicted)
        self.exact_entities += len(set(gold) & set(predicted))

    @property
    def recall(self) -> float:
        return self.true_positive_tokens / self.gold_tokens if self.gold_tokens else 1.0

    @property
    def precision(self) -> float:
        return self.true_positive_tokens / self.predicted_tokens if self.predicted_tokens else 1.0

    @property
    def entity_f1(self) -> float:
        """Strict: a predicted entity counts only with the exact gold start, end and category."""
        if not self.gold_entities and not self.predicted_entities:
            return 1.0
        return 2 * self.exact_entities / (self.gold_entities + self.predicted_entities)

    def per_category_recall(self) -> dict[str, float]:
        return {c: round(self.found_by_category[c] / n, 4) for c, n in sorted(self.gold_by_category.items()) if n}

    def summary(self) -> dict:
        return {
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "entity_f1": round(self.entity_f1, 4),
            "per_category_recall": self.per_category_recall(),
            "gold_tokens": self.gold_tokens,
            "predicted_tokens": self.predicted_tokens,
        }


def cover(length: int, spans: list[tuple[int, int, str]]) -> list[str | None]:
    """Per character: the category of a span covering it (None where no span does)."""
    cells: list[str | None] = [None] * length
    for start, end, category in spans:
        for i in range(max(0, start), min(length, end)):
            cells[i] = category
    return cells


def any_covered(cells: list[str | None], start: int, end: int) -> str | None:
    for i in range(start, end):
        if cells[i] is not None:
            return cells[i]
    return None
