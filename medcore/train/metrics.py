"""Training metrics: the metrics.jsonl writer (rank 0), peak memory, eval scores and the LR schedule."""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import torch

from medcore.token_windows import IGNORE
from medcore.train.trackers import close_trackers, forward


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl and flushes it, so readers (store, console) see it at once.

    Only numbers go in: never note text, so no PHI can reach the metrics.
    """

    def __init__(self, path: Path, enabled: bool, trackers: dict | None = None):
        self.enabled = enabled
        self._fh = open(path, "a", buffering=1) if enabled else None  # noqa: SIM115 (closed in close())
        self.trackers = trackers if enabled and trackers else {}  # spec.report_to's (medcore.train.trackers)

    def write(self, record: dict[str, Any]) -> None:
        if not self._fh:
            return
        clean = {k: (round(v, 8) if isinstance(v, float) else v) for k, v in record.items() if v is not None}
        self._fh.write(json.dumps({**clean, "time": time.time()}) + "\n")
        self._fh.flush()
        forward(self.trackers, clean)

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        close_trackers(self.trackers)


def peak_mem_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA max allocated on GPU, else peak RSS (ru_maxrss is KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear 0 -> 1 over warmup_steps, then cosine 1 -> 0 at total_steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def classification_counts(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> list[float]:
    """Per class [tp..., fp..., fn...] for one batch; summed over batches and ranks before scoring."""
    preds = logits.argmax(-1)
    counts = []
    for kind in ("tp", "fp", "fn"):
        for c in range(num_labels):
            if kind == "tp":
                counts.append(float(((preds == c) & (labels == c)).sum()))
            elif kind == "fp":
                counts.append(float(((preds == c) & (labels != c)).sum()))
            else:
                counts.append(float(((preds != c) & (labels == c)).sum()))
    return counts


def score_classification(counts: list[float], num_labels: int, samples: float) -> dict[str, float]:
    """Accuracy and macro F1 (over classes present in predictions or labels) from summed counts."""
    tp, fp, fn = (counts[i * num_labels : (i + 1) * num_labels] for i in range(3))
    f1s = []
    for c in range(num_labels):
        if tp[c] + fp[c] + fn[c] == 0:
            continue  # class absent from both predictions and labels: scikit-learn's labels=present behaviour
        f1s.append(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]))
    return {"eval_accuracy": sum(tp) / samples if samples else 0.0, "eval_f1": sum(f1s) / len(f1s) if f1s else 0.0}


PHI_THRESHOLD = 0.5  # eval: a token is PHI when 1 - P(O) >= 0.5, decode_spans' rule at threshold 0.5


def token_phi_counts(logits: torch.Tensor, labels: torch.Tensor, outside: int = 0) -> list[float]:
    """[tp, fp, fn] of "any PHI vs O" over the labelled tokens of one batch; summed over batches and ranks."""
    keep = labels != IGNORE
    predicted = (1.0 - torch.softmax(logits.float(), dim=-1)[..., outside] >= PHI_THRESHOLD)[keep]
    gold = labels[keep] != outside
    return [float((predicted & gold).sum()), float((predicted & ~gold).sum()), float((~predicted & gold).sum())]


def score_token_phi(counts: list[float]) -> dict[str, float]:
    """Token-level precision, recall and F1 of PHI vs O from summed [tp, fp, fn] (0 when undefined)."""
    tp, fp, fn = counts
    return {
        "eval_precision": tp / (tp + fp) if tp + fp else 0.0,
        "eval_recall": tp / (tp + fn) if tp + fn else 0.0,
        "eval_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


def improved(metric: str, value: float, best: float | None) -> bool:
    """Loss and perplexity fall when better; accuracy and F1 rise."""
    if best is None:
        return True
    return value < best if metric in ("eval_loss", "eval_perplexity") else value > best
