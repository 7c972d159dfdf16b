"""The dataset folder contract: what medcore.data writes and medcore.phi / train / store / console read.

datasets/<name>/
  manifest.json        DatasetManifest below
  train.parquet        the splits, normalised to Parquet (every split has the same columns)
  validation.parquet
  test.parquet         (each split also holds `source_row`: the record's 1-based number in the upload)
                       raw splits are AES-GCM encrypted files when $MEDCORE_ENCRYPT_RAW was on at import
                       (medcore.data.encryption; manifest.encrypted, key_id); redacted splits are always plain
  redaction_report.json  redacted datasets only: each column's decision, counts, problem rows (no PHI)

A dataset is written into a temp folder and renamed into place, so a bad or interrupted import
never leaves a half dataset. Redaction writes a new dataset (`<name>-redacted` by default) whose
manifest has redaction.status == "redacted" and redaction.parent == <name>; that status is only a claim,
which medcore.phi.verify checks against the audit log before training.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medcore.data.encryption import parquet_source
from medcore.errors import MedcoreError
from medcore.rundir import read_json, write_json_atomic
from medcore.workspace import Workspace

SPLITS = ("train", "validation", "test")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class ColumnMapping(BaseModel):
    """Which upload column plays which role. Only `text` is always required."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="Column holding the clinical note (or the answer context for QA).")
    text_pair: str | None = Field(
        None,
        description="Second text column for pair classification: question pairs, NLI premise/hypothesis; the model "
        "reads both, as the tokenizer's sentence pair.",
    )
    label: str | None = Field(None, description="Classification target column.")
    id: str | None = Field(None, description="Record id column; row numbers are used when absent.")
    patient_id: str | None = Field(None, description="Patient id column: keeps a patient's notes in one split.")
    subgroups: list[str] = Field(default_factory=list, description="Columns for fairness breakdowns (sex, age band).")
    prompt: str | None = Field(None, description="Instruction/question column for causal-LM fine-tuning.")
    response: str | None = Field(None, description="Answer column for causal-LM fine-tuning.")
    not_phi: list[str] = Field(
        default_factory=list,
        description="Columns you vouch hold no PHI: redaction copies them unchanged and the audit record lists them.",
    )
    spans: str | None = Field(
        None,
        description="Column of character spans per row for token classification (NER): a list of "
        "{start, end (exclusive), type} over the text column.",
    )


class RedactionInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["raw", "redacted"] = "raw"
    mode: str | None = None
    method: str | None = None
    parent: str | None = Field(None, description="Dataset this one was redacted from.")
    audit_hash: str | None = Field(None, description="Hash of the audit record of the redaction run.")
    override: bool = Field(False, description="True if marked usable without redaction (audited).")


class DatasetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    created_at: float = Field(default_factory=time.time)
    source_file: str | None = Field(None, description="Name (not path) of the uploaded file.")
    source_format: str | None = None
    columns: dict[str, str] = Field(default_factory=dict, description="Column -> Arrow type, as stored.")
    mapping: ColumnMapping
    task: str | None = Field(
        None, description="classification, causal-lm or token-classification, as validated at import; None: text only."
    )
    rows: dict[str, int] = Field(default_factory=dict, description="Rows per split.")
    label_set: list[str] = Field(default_factory=list)
    content_hash: str = Field("", description="sha256 over the split files, in split order.")
    redaction: RedactionInfo = Field(default_factory=RedactionInfo)
    encrypted: bool = Field(False, description="True if the split files are encrypted at rest (raw data only).")
    key_id: str | None = Field(
        None, description="Fingerprint of the data key the splits are encrypted with (never the key itself)."
    )

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def suggest_dataset_name(file_name: str) -> str:
    """A valid dataset name from an upload's file name (`Notes 2024.csv` -> `notes-2024`)."""
    stem = file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    return re.sub(r"[^a-z0-9_.-]+", "-", stem).strip("-._")[:64].rstrip("-._") or "dataset"


def check_dataset_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise MedcoreError(
            f"Dataset name '{name}' is not allowed: use 1-64 lower-case letters, digits, '_', '-' or '.', "
            "starting with a letter or digit."
        )
    return name


def dataset_dir(ws: Workspace, name: str) -> Path:
    return ws.datasets / check_dataset_name(name)


def read_manifest(ws: Workspace, name: str) -> DatasetManifest:
    path = dataset_dir(ws, name) / "manifest.json"
    data = read_json(path)
    if data is None:
        known = ", ".join(list_dataset_names(ws)) or "none yet"
        raise MedcoreError(f"Dataset '{name}' not found in {ws.datasets}. Datasets: {known}. Import one first.")
    return DatasetManifest.model_validate(data)


def write_manifest(folder: Path, manifest: DatasetManifest) -> None:
    write_json_atomic(folder / "manifest.json", manifest.model_dump(mode="json"))


def list_dataset_names(ws: Workspace) -> list[str]:
    if not ws.datasets.exists():
        return []
    return sorted(p.parent.name for p in ws.datasets.glob("*/manifest.json"))


def split_path(ws: Workspace, name: str, split: str) -> Path:
    if split not in SPLITS:
        raise MedcoreError(f"Unknown split '{split}'. Splits are: {', '.join(SPLITS)}.")
    return dataset_dir(ws, name) / f"{split}.parquet"


def load_split(ws: Workspace, name: str, split: str):
    """One split as a pandas DataFrame (an empty split reads as zero rows, same columns); an encrypted split is
    decrypted in memory (a missing or wrong key: MedcoreError naming the dataset)."""
    import pandas as pd

    path = split_path(ws, name, split)
    if not path.exists():
        raise MedcoreError(f"Dataset '{name}' has no '{split}' split at {path}. Re-import the dataset.")
    return pd.read_parquet(parquet_source(path, ws))
