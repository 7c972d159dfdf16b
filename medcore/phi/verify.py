"""Check, not trust, that a dataset marked redacted came out of an audited redaction run (the training gate).

A manifest is a file anyone can edit, so its `redaction.status` proves nothing. The evidence is the hash-chained
audit log: the manifest's `redaction.audit_hash` must name a record of an intact log, that record must be the
redaction that wrote this dataset with every column decided, and its content hash must match the split files
as they are now (a dataset re-imported or edited after its redaction no longer does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medcore.fileio import sha256_files
from medcore.phi.audit import read_audit_log, verify_audit_log
from medcore.phi.columns import text_roles
from medcore.workspace import Workspace

if TYPE_CHECKING:
    from medcore.data.manifest import DatasetManifest

REDACTION_KIND = "redaction"  # the audit record kind redact_dataset appends; the gate accepts no other


@dataclass
class RedactionCheck:
    """Whether a dataset's redaction is proven; `problem` says what is wrong and how to fix it (never PHI)."""

    ok: bool
    problem: str = ""
    record: dict | None = None


def dataset_content_hash(folder: Path) -> str:
    """sha256 over a dataset folder's split Parquet files, in split order (as import and redaction compute it)."""
    from medcore.data.manifest import SPLITS

    return sha256_files(folder / f"{split}.parquet" for split in SPLITS)


def verify_redaction(ws: Workspace, name: str, manifest: DatasetManifest | None = None) -> RedactionCheck:
    """Prove from the audit log that dataset `name` is the unchanged output of an audited redaction run."""
    from medcore.data.manifest import dataset_dir, read_manifest

    manifest = manifest or read_manifest(ws, name)
    info = manifest.redaction
    if info.status != "redacted":
        return refuse(f"dataset '{name}' has not been redacted (status {info.status})", name, manifest)
    if not info.audit_hash:
        return refuse(
            f"dataset '{name}' is marked redacted but names no audit record (manifest edited?)", name, manifest
        )
    log = verify_audit_log(ws, citations=False)  # this dataset's citation is checked below, by name
    if not log.ok:
        what = f"the audit log fails verification ({len(log.problems)} problem(s), first: {log.problems[0]})"
        return refuse(
            f"{what}, so the redaction of '{name}' cannot be confirmed; see `medcore audit verify`", name, manifest
        )
    record = next((r for r in read_audit_log(ws) if r.get("hash") == info.audit_hash), None)
    if record is None:
        what = f"dataset '{name}' names audit record {info.audit_hash[:16]}, which is not in the audit log"
        return refuse(f"{what} (manifest edited?)", name, manifest)
    if record.get("kind") != REDACTION_KIND or record.get("output_dataset") != name:
        what = f"audit record {info.audit_hash[:16]} is a '{record.get('kind')}' record"
        return refuse(f"{what}, not the redaction that wrote '{name}' (manifest edited?)", name, manifest, record)
    if "columns" not in record:
        what = f"dataset '{name}' was redacted by a MedCore that redacted only the text columns, not every column"
        return refuse(what, name, manifest, record)
    try:
        current = dataset_content_hash(dataset_dir(ws, name))
    except OSError:
        current = None
    if current != record.get("content_hash"):
        what = (
            f"dataset '{name}' changed after its audited redaction (its split files no longer match the audit record"
        )
        return refuse(f"{what}: re-imported, overwritten or edited)", name, manifest, record)
    redacted = {c.get("column") for c in record["columns"] if c.get("action") == "redact"}
    unredacted = [c for c in text_roles(manifest.mapping) if c not in redacted]
    if unredacted:
        what = f"column(s) {', '.join(unredacted)} of '{name}' are mapped as text but were not redacted in its run"
        return refuse(f"{what} (mapping edited?)", name, manifest, record)
    return RedactionCheck(True, record=record)


def refuse(what: str, name: str, manifest: DatasetManifest, record: dict | None = None) -> RedactionCheck:
    """A failed check whose message ends with the fix: redact (again) from the parent, or the audited override."""
    parent = manifest.redaction.parent or (record or {}).get("dataset")
    if manifest.redaction.status == "redacted" and parent and parent != name:
        fix = f"{{option:reredact={parent} --out-name {name} --overwrite}} and train on '{name}'"
    else:
        fix = f"{{option:redact={name}}} and train on the redacted copy"
    return RedactionCheck(False, f"{what}; {fix}, or {{option:allow_unredacted}}", record)
