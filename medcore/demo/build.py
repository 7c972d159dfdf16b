"""Write the demo notes and QA set into a workspace's `datasets/` folder as raw upload files.

datasets/demo_notes.jsonl   every note field, gold `phi_spans` included
datasets/demo_notes.csv     the same minus `phi_spans`: what a user uploads in the console
datasets/demo_qa.jsonl      question / context / answer rows for causal-LM fine-tuning and chat
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
from pathlib import Path

from medcore.demo.notes import NOTE_KEYS, generate_notes
from medcore.demo.qa import QA_KEYS, generate_qa
from medcore.errors import MedcoreError
from medcore.fileio import write_bytes_atomic
from medcore.workspace import Workspace

NOTES_JSONL = "demo_notes.jsonl"
NOTES_CSV = "demo_notes.csv"
QA_JSONL = "demo_qa.jsonl"


def write_text_atomic(path: Path, text: str) -> str:
    """Write `text` via a temp file + rename (readers never see half a file); returns its sha256."""
    data = text.encode("utf-8")
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise MedcoreError(f"Cannot write {path}: {exc.strerror}. Check the workspace is writable.") from None
    return hashlib.sha256(data).hexdigest()


def render_jsonl(rows: list[dict], keys: tuple[str, ...]) -> str:
    return "".join(json.dumps({k: row[k] for k in keys}, ensure_ascii=False) + "\n" for row in rows)


def render_csv(rows: list[dict], keys: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    # lineterminator "\n" so the bytes are the same on every platform (csv defaults to "\r\n").
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def build_demo_workspace(ws: Workspace, seed: int = 0, n_notes: int = 2000, n_qa: int = 300) -> dict:
    """Generate the demo notes and QA set from `seed` and write them under `ws.datasets`.

    Returns summary counts (notes, patients, QA rows, gold spans per type, labels) and each file's sha256.
    """
    ws.ensure()
    notes = generate_notes(seed=seed, n=n_notes)
    qa_rows = generate_qa(seed=seed, n=n_qa)
    csv_keys = tuple(k for k in NOTE_KEYS if k != "phi_spans")
    files = {
        NOTES_JSONL: render_jsonl(notes, NOTE_KEYS),
        NOTES_CSV: render_csv(notes, csv_keys),
        QA_JSONL: render_jsonl(qa_rows, QA_KEYS),
    }
    hashes = {name: write_text_atomic(ws.datasets / name, text) for name, text in files.items()}
    return {
        "seed": seed,
        "notes": len(notes),
        "patients": len({note["patient_id"] for note in notes}),
        "qa_rows": len(qa_rows),
        "phi_spans": sum(len(note["phi_spans"]) for note in notes),
        "phi_by_type": dict(sorted(collections.Counter(s["type"] for n in notes for s in n["phi_spans"]).items())),
        "specialty": dict(sorted(collections.Counter(note["specialty"] for note in notes).items())),
        "style": dict(sorted(collections.Counter(note["style"] for note in notes).items())),
        "files": {name: str(ws.datasets / name) for name in files},
        "sha256": hashes,
    }
