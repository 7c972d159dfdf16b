"""95% confidence intervals: stratified bootstrap with BCa (else percentile) intervals, Wilson for small cells.

The rules, in the order they are applied to each metric:
- Undefined on the data (e.g. PPV of a class never predicted): value and interval None.
- support is a count the stratified design holds fixed: no interval.
- Proportions (accuracy and micro_f1, which equals it; sensitivity, specificity, ppv, npv) in a small cell, i.e. fewer than 30 examples in the
  proportion's denominator (support, negatives, predicted positives, predicted negatives, n), or at exactly 0 or 1:
  Wilson score interval. A bootstrap of so few examples takes a handful of values, and one of a proportion at 0 or 1
  never moves off it, so the bootstrap intervals would be too narrow exactly where the data are thinnest.
- Otherwise a stratified bootstrap (resampling within each true class, so every resample keeps the class counts and
  sensitivity, specificity and AUROC stay defined) with BCa intervals (Efron, 1987). The acceleration comes from a
  jackknife: exact leave-one-out up to 200 examples; above that a delete-d jackknife over 200 seeded random groups.
  The acceleration is a ratio of the third moment to the 1.5th power of the second moment of the influence values, and
  a group's influence is the sum of its members', so the grouped estimate has the same expectation (with more noise,
  on a quantity that is O(1/sqrt n) and small by then) at a fifth of the bootstrap's cost at n = 10,000.
- Percentile interval where BCa is undefined: all bootstrap values equal, the estimate below or above every resample
  (z0 infinite) or the BCa adjustment out of range. Resamples where a metric is undefined are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medcore.evaluate.metrics import (
    HEADLINE,
    PER_CLASS,
    check_codes,
    check_probabilities,
    confusion_batch,
    proportion_counts,
    score_batch,
)

CONFIDENCE = 0.95
SMALL_CELL = 30  # below this many examples in a proportion's denominator, Wilson instead of the bootstrap
JACKKNIFE_GROUPS = 200
CHUNK_CELLS = 500_000  # resamples x examples per weight matrix: 4 MB of float64 stays in cache (measured best)
Z = NormalDist()


class BootstrapConfig(BaseModel):
    """How the confidence intervals are drawn."""

    model_config = ConfigDict(extra="forbid")

    resamples: int = Field(1000, ge=100, le=100_000, description="Bootstrap resamples per interval (default 1000).")
    seed: int = Field(0, ge=0, description="Seed of the resampling: the same seed gives the same intervals.")


@dataclass(frozen=True)
class Estimate:
    """A metric's value and 95% interval; None where undefined. method: bca, percentile, wilson, count, undefined."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = "undefined"

    def as_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class SampleScores:
    """Every metric of one sample (the whole file or one subgroup): headline and per class code."""

    n: int
    metrics: dict[str, Estimate]
    per_class: list[dict[str, Estimate]]


def resample_weights(y_true: np.ndarray, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """(b, n) chunks of draw counts, one row per stratified resample: draw indices within each true class,
    then count each example's draws with one bincount over (row, example) codes."""
    n = y_true.size
    strata = [np.flatnonzero(y_true == c) for c in np.unique(y_true)]
    per_chunk = max(1, CHUNK_CELLS // n)
    for start in range(0, resamples, per_chunk):
        b = min(per_chunk, resamples - start)
        idx = np.concatenate([m[rng.integers(0, m.size, size=(b, m.size))] for m in strata], axis=1)
        codes = (np.arange(b)[:, None] * n + idx).ravel()
        yield np.bincount(codes, minlength=b * n).reshape(b, n).astype(float)


def jackknife_weights(n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Chunks of rows leaving out one example (n <= 200) or one of 200 random groups (delete-d jackknife)."""
    if n <= JACKKNIFE_GROUPS:
        groups, count = np.arange(n), n
    else:
        groups, count = rng.permutation(n) % JACKKNIFE_GROUPS, JACKKNIFE_GROUPS
    per_chunk = max(1, CHUNK_CELLS // n)
    for start in range(0, count, per_chunk):
        left_out = np.arange(start, min(count, start + per_chunk))
        yield (groups[None, :] != left_out[:, None]).astype(float)


def wilson_interval(successes: float, trials: float) -> tuple[float, float]:
    """Wilson score interval (95%) for successes / trials; trials > 0."""
    z = Z.inv_cdf(0.5 + CONFIDENCE / 2)
    p, z2 = successes / trials, z * z / trials
    centre = (p + z2 / 2) / (1 + z2)
    half = z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials)) / (1 + z2)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def acceleration(jack: np.ndarray) -> float:
    """BCa acceleration from jackknife replicates (undefined ones left out); 0 when they do not vary."""
    jack = jack[np.isfinite(jack)]
    d = jack.mean() - jack if jack.size else jack
    spread = float((d**2).sum())
    return float((d**3).sum() / (6 * spread**1.5)) if spread > 0 else 0.0


def bootstrap_interval(point: float, boot: np.ndarray, jack: np.ndarray) -> Estimate:
    """BCa interval of `point` from its bootstrap and jackknife replicates; percentile where BCa is undefined."""
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return Estimate(point)
    alpha = (1 - CONFIDENCE) / 2
    percentile = np.quantile(boot, [alpha, 1 - alpha])
    tie = np.abs(boot - point) <= 1e-12 * max(1.0, abs(point))  # same value up to summation order
    below = float(np.mean((boot < point) & ~tie) + 0.5 * np.mean(tie))
    if np.ptp(boot) == 0 or not 0 < below < 1:
        return Estimate(point, float(percentile[0]), float(percentile[1]), "percentile")
    z0, a = Z.inv_cdf(below), acceleration(jack)
    levels = []
    for z in (Z.inv_cdf(alpha), Z.inv_cdf(1 - alpha)):
        denominator = 1 - a * (z0 + z)
        if denominator <= 0:
            return Estimate(point, float(percentile[0]), float(percentile[1]), "percentile")
        levels.append(Z.cdf(z0 + (z0 + z) / denominator))
    low, high = np.quantile(boot, levels)
    return Estimate(point, float(low), float(high), "bca")


def estimate(
    name: str, point: float, boot: np.ndarray, jack: np.ndarray, counts: tuple[float, float] | None
) -> Estimate:
    """One metric's Estimate by the rules in the module docstring."""
    if np.isnan(point):
        return Estimate(None)
    if name == "support":
        return Estimate(int(point), method="count")
    if counts is not None and (counts[1] < SMALL_CELL or counts[0] in (0, counts[1])):
        return Estimate(float(point), *wilson_interval(*counts), "wilson")
    return bootstrap_interval(float(point), boot, jack)


def _stacked(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def score_sample(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    proba: np.ndarray | None = None,
    config: BootstrapConfig | None = None,
) -> SampleScores:
    """Every metric with its 95% interval, for integer class codes (and probabilities (n, K), if any).

    Deterministic for a given config.seed: the resamples, then the jackknife groups, come from one
    numpy.random.default_rng(seed).
    """
    config = config or BootstrapConfig()
    rng = np.random.default_rng(config.seed)
    y_true, y_pred = check_codes(y_true, y_pred, n_classes)
    proba = None if proba is None else check_probabilities(proba, n_classes)
    n = y_true.size
    if proba is not None:
        # Metrics ignore row order; in ascending order of the last class's probability (binary: the positive
        # class) the ranking kernel reads the weights in place for that class instead of reordering every chunk.
        order = np.argsort(proba[:, -1], kind="stable")
        y_true, y_pred, proba = y_true[order], y_pred[order], proba[order]

    def score(weights: np.ndarray) -> dict[str, np.ndarray]:
        return score_batch(y_true, y_pred, n_classes, weights, proba)

    point = score(np.ones((1, n)))
    boot = _stacked([score(w) for w in resample_weights(y_true, config.resamples, rng)])
    jack = _stacked([score(w) for w in jackknife_weights(n, rng)])
    counts = proportion_counts(confusion_batch(y_true, y_pred, n_classes, np.ones((1, n)))[0])
    metrics = {m: estimate(m, point[m][0], boot[m], jack[m], counts.get(m)) for m in HEADLINE}
    per_class = [
        {m: estimate(m, point[m][0, c], boot[m][:, c], jack[m][:, c], _cell(counts.get(m), c)) for m in PER_CLASS}
        for c in range(n_classes)
    ]
    return SampleScores(n=n, metrics=metrics, per_class=per_class)


def _cell(counts: tuple[np.ndarray, np.ndarray] | None, c: int) -> tuple[float, float] | None:
    return None if counts is None else (float(counts[0][c]), float(counts[1][c]))
