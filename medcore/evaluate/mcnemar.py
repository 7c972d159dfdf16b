"""McNemar's exact test on paired right/wrong outcomes: shared by the class and the row-score comparisons."""

from __future__ import annotations

import math

import numpy as np

EXACT_TRIALS = 50_000  # exact integer sum up to this many discordant pairs (~0.2 s), log space above


def mcnemar_p_value(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1; 1.0 if b + c == 0.

    Exact rational arithmetic up to EXACT_TRIALS trials (Python's int / int rounds correctly, so tiny p-values
    underflow to 0.0 rather than going wrong); above that, a log-space sum accurate to ~1e-9 relative.
    """
    n, k = b + c, min(b, c)
    if n == 0 or 2 * k >= n - 1:  # min(b, c) at the centre: the tails cover everything
        return 1.0
    if n <= EXACT_TRIALS:
        term = total = 1  # C(n, 0)
        for i in range(k):
            term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
            total += term
        return min(1.0, total / (1 << (n - 1)))
    i = np.arange(k, 0, -1)
    # log C(n, j) - log C(n, k) for j = k, k-1, ..., 0: every term <= the largest, C(n, k), as k < n / 2
    relative = np.concatenate([[0.0], -np.cumsum(np.log((n - i + 1) / i))])
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    log_p = math.log(2) + log_top + math.log(float(np.exp(relative).sum())) - n * math.log(2)
    return min(1.0, math.exp(log_p))


def mcnemar_test(reference_right: np.ndarray, model_right: np.ndarray) -> dict[str, int | float]:
    """{"b": reference right only, "c": model right only, "p_value"} of two boolean correctness arrays."""
    b = int(np.count_nonzero(reference_right & ~model_right))
    c = int(np.count_nonzero(~reference_right & model_right))
    return {"b": b, "c": c, "p_value": mcnemar_p_value(b, c)}
