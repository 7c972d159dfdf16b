"""Import the demo files as catalog datasets, as a user would through the Data page."""

from __future__ import annotations

import pandas as pd

from medcore.data.manifest import ColumnMapping, DatasetManifest
from medcore.demo.build import NOTES_CSV, QA_JSONL
from medcore.workspace import Workspace

NOTES_DATASET = "demo-notes"
QA_DATASET = "demo-qa"


def register_demo_datasets(ws: Workspace, seed: int = 0) -> list[DatasetManifest]:
    """Import demo_notes.csv (classification by specialty) and demo_qa.jsonl (causal-LM QA), both raw.

    They stay un-redacted on purpose: the console's first step on them is the PHI page.
    """
    from medcore.data import import_dataset

    notes = pd.read_csv(ws.datasets / NOTES_CSV, dtype=str, keep_default_na=False)
    qa = pd.read_json(ws.datasets / QA_JSONL, lines=True, dtype=False).drop(columns=["phi_spans"], errors="ignore")
    notes_mapping = ColumnMapping(
        text="text", label="specialty", id="note_id", patient_id="patient_id", subgroups=["sex", "age_band"]
    )
    qa_mapping = ColumnMapping(text="context", prompt="question", response="answer", id="qa_id")
    return [
        import_dataset(ws, notes, NOTES_DATASET, notes_mapping, task="classification", seed=seed,
                       source_file=NOTES_CSV, overwrite=True),
        import_dataset(ws, qa, QA_DATASET, qa_mapping, task="causal-lm", seed=seed,
                       source_file=QA_JSONL, overwrite=True),
    ]
