"""Evaluation speed: MedCore's split prediction vs transformers' text-classification pipeline, same run, same model.

    python bench/eval_bench.py [--examples 10000] [--batch-size 32]

Both sides run the packaged MiniLM with the same classification head (one model object, loaded once, eval mode)
over the same texts, in one process with the same torch threads, batch size and truncation length, and return
class probabilities for every example. MedCore sorts by length and batches the split's token ids; the pipeline
is what a careful user writes: `pipeline("text-classification", ..., batch_size=B, top_k=None, truncation=True)`
over the list of texts. Model loading is not timed on either side; both run once on a few texts first.
The two sides' probabilities must agree (max difference printed), so neither is measured doing less work.
bootstrap_seconds: 95% intervals (1,000 stratified resamples) for every headline and per-class metric of the
predictions. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

WARM_UP = 16


def build_dataset(ws, examples: int) -> str:
    """Demo notes imported so that the test split holds about `examples` notes."""
    import pandas as pd

    from medcore.data.importer import import_dataset
    from medcore.data.manifest import ColumnMapping
    from medcore.demo.notes import generate_notes

    notes = pd.DataFrame(generate_notes(seed=0, n=round(examples / 0.8)))[["note_id", "text", "specialty"]]
    mapping = ColumnMapping(text="text", label="specialty", id="note_id")
    import_dataset(ws, notes, "bench-notes", mapping, task="classification", split=(0.1, 0.1, 0.8))
    return "bench-notes"


def run_pipeline(loaded, texts: list[str], batch_size: int, max_length: int):
    """The baseline: transformers' pipeline over the texts; returns (seconds, probabilities in label order)."""
    import numpy as np
    from transformers import pipeline

    model, tokenizer, labels = loaded
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    options = dict(batch_size=batch_size, top_k=None, truncation=True, max_length=max_length)
    classify(texts[:WARM_UP], **options)
    began = time.perf_counter()
    outputs = classify(texts, **options)
    seconds = time.perf_counter() - began
    index = {model.config.id2label[i]: i for i in range(len(labels))}
    probs = np.zeros((len(texts), len(labels)))
    for row, scores in enumerate(outputs):
        for score in scores:
            probs[row, index[score["label"]]] = score["score"]
    return seconds, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import numpy as np
    import torch

    from medcore.data.manifest import load_split, read_manifest
    from medcore.evaluate.bootstrap import score_sample
    from medcore.evaluate.runner import MAX_LENGTH, load_classifier, predict_split
    from medcore.workspace import get_workspace

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="medcore-eval-bench-") as tmp:
        os.environ["MEDCORE_HOME"] = tmp
        ws = get_workspace(tmp)
        name = build_dataset(ws, args.examples)
        manifest = read_manifest(ws, name)
        texts = load_split(ws, name, "test")[manifest.mapping.text].astype(str).tolist()
        loaded = load_classifier("minilm", ws, name)
        predict_split("minilm", ws, name, "test", args.batch_size, loaded=loaded).head(WARM_UP)
        began = time.perf_counter()
        ours = predict_split("minilm", ws, name, "test", args.batch_size, loaded=loaded)
        medcore_s = time.perf_counter() - began
        pipeline_s, theirs = run_pipeline(loaded, texts, args.batch_size, MAX_LENGTH)
        labels = loaded[2]
        ours_probs = ours[[f"p_{label}" for label in labels]].to_numpy()
        began = time.perf_counter()
        code = {label: i for i, label in enumerate(labels)}
        score_sample(ours["y_true"].map(code).to_numpy(), ours["y_pred"].map(code).to_numpy(), len(labels), ours_probs)
        bootstrap_s = time.perf_counter() - began
    n = len(texts)
    result = {
        "examples": n,
        "medcore_examples_per_s": round(n / medcore_s, 1),
        "pipeline_examples_per_s": round(n / pipeline_s, 1),
        "ratio": round(pipeline_s / medcore_s, 2),
        "bootstrap_seconds": round(bootstrap_s, 2),
        "max_probability_difference": float(np.abs(ours_probs - theirs).max()),
        "torch_threads": torch.get_num_threads(),
    }
    print(f"medcore {medcore_s:.1f} s, pipeline {pipeline_s:.1f} s for {n} examples", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
