"""What a clinical team asks before adoption, on the demo task: a LoRA fine-tune of the packaged MiniLM on the demo
notes (text -> specialty) beats the untuned base on the held-out test split, with a paired 95% CI above zero."""

from __future__ import annotations

import pandas as pd
from train_datasets import certify_redacted, train_in_process

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping
from medcore.demo.notes import generate_notes
from medcore.evaluate.compare import compare_models
from medcore.workspace import get_workspace


def test_a_demo_fine_tune_beats_the_untuned_base_with_a_paired_interval_above_zero(tmp_path, monkeypatch):
    root = tmp_path / "workspace"
    monkeypatch.setenv("MEDCORE_HOME", str(root))
    ws = get_workspace(root)
    notes = pd.DataFrame(generate_notes(seed=0, n=300))
    import_dataset(ws, notes, "demo-notes", ColumnMapping(text="text", label="specialty", id="note_id"),
                   task="classification", split=(0.7, 0.1, 0.2))  # fmt: skip
    certify_redacted(ws, "demo-notes")  # synthetic PHI: the audit record the training gate checks
    rd = train_in_process(ws, {
        "dataset": "demo-notes", "task": "classification", "model": "minilm", "lr": 5e-3, "max_steps": 24,
        "micro_batch": 16, "max_length": 128, "eval_interval": 24, "warmup_ratio": 0.0, "device": "cpu",
        "precision": "fp32", "seed": 0, "evaluate_after": False,
    })  # fmt: skip
    out = compare_models("minilm", [rd.run_id], ws, "demo-notes", "test", resamples=500)
    tuned = out["comparison"]["models"][rd.run_id]
    accuracy = tuned["differences"]["accuracy"]  # the fine-tune minus the base encoder with a fresh head
    assert accuracy["ci_low"] > 0 and accuracy["excludes_zero"], tuned
    assert tuned["mcnemar"]["p_value"] < 0.05 and tuned["mcnemar"]["c"] > tuned["mcnemar"]["b"]
