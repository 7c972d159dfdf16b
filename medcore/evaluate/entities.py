"""Token classification scored as entities: entity-level precision, recall and F1 with 95% CIs, micro and per type.

An entity is correct only when a predicted span has exactly the start, end and type of a gold span (CoNLL's rule):
a partial overlap or a wrong type is one false positive and one false negative. Micro-averaged over all entities of
the split, and per type; intervals resample rows (notes), so a note's entities stay together (row_scores).

The model scores each note in the overlapping windows it was trained on and its word pieces are decoded into
word-aligned character spans exactly as the PHI tagger does (medcore.phi.tagger.PhiTagger, medcore.token_windows):
a piece is inside an entity when P(not O) >= DECODE_THRESHOLD. predictions.parquet holds per-row entity counts only:
predicted spans locate PHI in a note, so they are written (outputs.parquet) only when asked.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from medcore.data.manifest import DatasetManifest
from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.row_scores import RowRatio, TaskScores, estimates_dict, ratio_estimates, row_report
from medcore.evaluate.sources import FRESH_HEAD_SEED, ModelSource, build_network
from medcore.models import load_tokenizer
from medcore.phi.tagger import PhiTagger
from medcore.token_windows import OUTSIDE, CharSpan, TagFile, as_span, bio_tags, default_stride, read_tag_file
from medcore.workspace import Workspace

TASK = "token-classification"
DECODE_THRESHOLD = 0.5  # P(not O) >= 0.5: a piece is in an entity when O is not the likelier reading
METRICS = ("precision", "recall", "f1")
COUNTS = ("gold", "predicted", "correct")


def entity_counts(gold: list[CharSpan], predicted: list[CharSpan], types: list[str]) -> np.ndarray:
    """(types, 3) counts of gold, predicted and correct (exact start, end and type) entities of one note."""
    key = {kind: i for i, kind in enumerate(types)}
    gold_keys = Counter((s.start, s.end, s.type) for s in gold)
    pred_keys = Counter((s.start, s.end, s.type) for s in predicted)
    out = np.zeros((len(types), len(COUNTS)), dtype=np.int64)
    for column, counter in enumerate((gold_keys, pred_keys, gold_keys & pred_keys)):
        for (_, _, kind), count in counter.items():
            out[key[kind], column] += count
    return out


def entity_ratios(counts: np.ndarray) -> dict[str, RowRatio]:
    """precision, recall and F1 as row ratios of (rows, 3) counts: gold, predicted, correct."""
    gold, predicted, correct = counts[:, 0], counts[:, 1], counts[:, 2]
    return {
        "precision": RowRatio(correct, predicted),
        "recall": RowRatio(correct, gold),
        "f1": RowRatio(2 * correct, predicted + gold),
    }


def score_entities(
    counts: np.ndarray, types: list[str], subgroups: dict[str, np.ndarray], config: BootstrapConfig
) -> dict[str, Any]:
    """result.json of (rows, types, 3) entity counts: micro metrics, per type (with support), subgroups, totals."""
    micro = counts.sum(axis=1)
    result = row_report(TASK, entity_ratios(micro), subgroups, config)
    result["per_type"] = {
        kind: {
            **estimates_dict(ratio_estimates(entity_ratios(counts[:, t]), config)),
            "support": {"value": int(counts[:, t, 0].sum()), "ci_low": None, "ci_high": None},
        }
        for t, kind in enumerate(types)
    }
    result["entities"] = {name: int(micro[:, c].sum()) for c, name in enumerate(COUNTS)}
    return result


def counts_frame(counts: np.ndarray, types: list[str]) -> pd.DataFrame:
    """predictions.parquet: row, gold, predicted, correct, then <count>_<type> per type. Numbers only."""
    columns: dict[str, Any] = {"row": np.arange(len(counts), dtype=np.int64)}
    columns.update({name: counts[:, :, c].sum(axis=1) for c, name in enumerate(COUNTS)})
    columns.update(
        {f"{name}_{kind}": counts[:, t, c] for t, kind in enumerate(types) for c, name in enumerate(COUNTS)}
    )
    return pd.DataFrame(columns)


def load_tagger(source: ModelSource, ws: Workspace, manifest: DatasetManifest) -> PhiTagger:
    """The model as a PhiTagger: a run's adapter (its tags and windows from its tag file) merged into its base, or a
    base model with a fresh, seeded head over the dataset's span types (a chance floor). Eval mode, CPU, fp32."""
    import torch

    if source.weights is None:
        tags = TagFile(bio_tags(list(manifest.label_set)), source.max_length, default_stride(source.max_length))
    else:
        tags = read_tag_file(source.weights)
    check_same_types(tags, manifest, source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FRESH_HEAD_SEED)  # a fresh head's weights; a run's trained head replaces them
        net = build_network(source, TASK, tags.tags, ws)
    tokenizer = load_tokenizer(source.base, ws)
    folder = source.weights or source.base
    return PhiTagger(net.to(device="cpu", dtype=torch.float32).eval(), tokenizer, tags, folder, threading.Lock())


def check_same_types(tags: TagFile, manifest: DatasetManifest, source: ModelSource) -> None:
    model_types = sorted({tag[2:] for tag in tags.tags if tag != OUTSIDE})
    if set(model_types) != set(manifest.label_set):
        what = f"Run '{source.run.run_id}'" if source.run else f"Model '{source.base}'"
        raise MedcoreError(
            f"{what} tags the span types {', '.join(model_types)}, but dataset '{manifest.name}' has the types "
            f"{', '.join(manifest.label_set)}. Evaluate on a dataset with the same span types."
        )


def predict_entities(
    tagger: PhiTagger, texts: list[str], batch_size: int, progress: Callable[[int, int], None] | None = None
) -> list[list[CharSpan]]:
    """Each note's predicted spans; `batch_size` notes at a time (their windows batched longest first)."""
    spans: list[list[CharSpan]] = []
    for start in range(0, len(texts), batch_size):
        spans += tagger.tag_texts(texts[start : start + batch_size], DECODE_THRESHOLD)
        if progress is not None:
            progress(len(spans), len(texts))
    return spans


def score_token_split(
    source: ModelSource,
    ws: Workspace,
    manifest: DatasetManifest,
    frame: pd.DataFrame,
    subgroups: dict[str, np.ndarray],
    options: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> TaskScores:
    """Tag every note of the split and score the entities; options: batch_size, seed, resamples."""
    tagger = load_tagger(source, ws, manifest)
    texts = frame[manifest.mapping.text].fillna("").astype(str).tolist()
    gold = [[as_span(s) for s in (cell if cell is not None else [])] for cell in frame[manifest.mapping.spans]]
    predicted = predict_entities(tagger, texts, options["batch_size"], progress)
    types = list(manifest.label_set)
    types += sorted({s.type for row in gold for s in row} - set(types))  # a type the manifest missed still counts
    counts = np.stack([entity_counts(g, p, types) for g, p in zip(gold, predicted, strict=True)])
    config = BootstrapConfig(resamples=options["resamples"], seed=options["seed"])
    outputs = pd.DataFrame(
        {
            "row": np.arange(len(predicted), dtype=np.int64),
            "spans": [[s._asdict() for s in row] for row in predicted],
        }
    )
    record = {"decode_threshold": DECODE_THRESHOLD, "max_length": tagger.tags.max_length, "stride": tagger.tags.stride}
    return TaskScores(counts_frame(counts, types), score_entities(counts, types, subgroups, config), record, outputs)
