"""Per-example scores of a generated answer against its reference: exact match, token F1, ROUGE-L, yes/no/maybe.

- exact_match and token_f1 follow the SQuAD evaluation script: both texts are normalised (lower case, punctuation
  and the articles a/an/the removed, whitespace collapsed); token F1 is the harmonic mean of the precision and recall
  of the shared tokens (a multiset), and 1.0 when both are empty (SQuAD 2.0's rule for a no-answer).
- rouge_l is the F-measure of the longest common subsequence of tokens (Lin, 2004), P = LCS / output tokens and
  R = LCS / reference tokens, tokenised as the `rouge-score` package does by default (lower case, every run of
  characters other than a-z and 0-9 splits, no stemming); 0.0 when either text has no tokens, as there.
- yes_no: the reference, normalised, is yes, no or maybe; the answer is the output's first normalised word.
"""

from __future__ import annotations

import re
import string
from collections import Counter

ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = frozenset(string.punctuation)
ROUGE_SPLIT = re.compile(r"[^a-z0-9]+")
YES_NO_MAYBE = ("yes", "no", "maybe")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(output: str, reference: str) -> float:
    return float(normalize_answer(output) == normalize_answer(reference))


def token_f1(output: str, reference: str) -> float:
    """SQuAD token F1 over normalised tokens."""
    predicted, gold = normalize_answer(output).split(), normalize_answer(reference).split()
    if not predicted or not gold:
        return float(predicted == gold)
    shared = sum((Counter(predicted) & Counter(gold)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokeniser (no stemming)."""
    return ROUGE_SPLIT.sub(" ", text.lower()).split()


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence: the classic dynamic programme, one row at a time."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1) of the output against the reference."""
    predicted, gold = rouge_tokens(output), rouge_tokens(reference)
    common = lcs_length(predicted, gold) if predicted and gold else 0
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def yes_no_reference(reference: str) -> str | None:
    """yes, no or maybe when that is the whole (normalised) reference, else None."""
    answer = normalize_answer(reference)
    return answer if answer in YES_NO_MAYBE else None


def first_word(output: str) -> str:
    words = normalize_answer(output).split()
    return words[0] if words else ""
