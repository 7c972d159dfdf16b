"""Redact a workspace dataset into a new, audited dataset: one decision per column, applied to every split.

medcore data redact notes --mode research --drop fax --not-phi ward
redact_dataset(ws, "notes", "research", drop=["fax"], not_phi=["ward"])   # -> the "notes-redacted" manifest

The new folder is staged under datasets/.staging and renamed into place. It holds the splits, the manifest
(redaction status, parent, mode, method, audit hash; dropped columns unmapped) and redaction_report.json
(counts, column decisions, problem row numbers: no PHI). The audit record lists every column's decision.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from medcore.data.encryption import check_dataset_key
from medcore.data.manifest import (
    SPLITS,
    ColumnMapping,
    DatasetManifest,
    RedactionInfo,
    check_dataset_name,
    dataset_dir,
    read_manifest,
    split_path,
    write_manifest,
)
from medcore.errors import MedcoreError
from medcore.phi.audit import append_audit_record, load_salt
from medcore.phi.columns import ColumnDecision, decide_columns, scan_dataset, text_roles, with_not_phi
from medcore.phi.config import RedactionConfig, build_config
from medcore.phi.pipeline import MAX_LISTED_ROWS, Progress, RedactionReport, audit_columns, pseudonym_key, redact_file
from medcore.phi.tagger import describe_settings
from medcore.phi.verify import REDACTION_KIND, dataset_content_hash
from medcore.rundir import write_json_atomic
from medcore.workspace import Workspace

REPORT_FILE = "redaction_report.json"


def redact_dataset(
    ws: Workspace,
    name: str,
    mode: str = "safe-harbor",
    method: str | None = None,
    out_name: str | None = None,
    progress: Progress | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    keep: Iterable[str] = (),
    drop: Iterable[str] = (),
    not_phi: Iterable[str] = (),
    threshold: float | None = None,
    tagger: str | Path | None = None,
) -> DatasetManifest:
    """Redact every column of dataset `name` into a new dataset `<name>-redacted` (or `out_name`).

    Args:
        tagger: the PHI tagger, by name (`combined`, `encoder`, `fast`, `none`) or folder (None: the default tagger).
        threshold: the PHI tagger's threshold (None: the one cross-validation chose, recorded with the tagger).
        keep, drop: this run's overrides of the column decisions (see preview_column_decisions).
        not_phi: more columns the user vouches hold no PHI; kept, and recorded in the new mapping.

    Raises:
        MedcoreError: unknown dataset or column, output exists (without overwrite), a value the detector fails on.
    """
    source = read_manifest(ws, name)
    check_dataset_key(ws, name, source.key_id)  # an encrypted source without its key: refused before any work
    out_name = check_dataset_name(out_name or f"{name}-redacted"[:64])
    target = dataset_dir(ws, out_name)
    if target.exists() and not overwrite:
        raise MedcoreError(f"Dataset '{out_name}' already exists. Pick another output name or delete it first.")
    config = build_config(mode=mode, method=method, workers=workers, threshold=threshold, tagger=tagger)
    keep, drop = sorted(set(keep)), sorted(set(drop))
    mapping = with_not_phi(source.mapping, not_phi)
    scan = scan_dataset(ws, name, skip=text_roles(mapping))
    decisions = decide_columns(mapping, scan.samples, scan.types, config.mode, keep=keep, drop=drop, config=config)
    staging = ws.datasets / ".staging" / f"{out_name}-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        report, hashes = redact_splits(ws, source, mapping, decisions, config, staging, progress)
        content_hash = dataset_content_hash(staging)
        report.output_name, report.output_sha256 = out_name, content_hash
        record = append_audit_record(
            ws, REDACTION_KIND, dataset=name, output_dataset=out_name, splits=hashes,
            text_fields=report.text_fields, columns=audit_columns(decisions), not_phi=mapping.not_phi, keep=keep,
            drop=drop, values_removed=report.values_removed, config=report.config, counts=report.counts,
            rows_in=source.total_rows, source_content_hash=source.content_hash, content_hash=content_hash,
        )  # fmt: skip
        report.audit_hash = record["hash"]
        manifest = output_manifest(source, mapping, decisions, staging, out_name, config, record["hash"])
        write_manifest(staging, manifest)
        write_json_atomic(staging / REPORT_FILE, report.model_dump(mode="json"))
        from medcore.data.importer import swap_into_place

        swap_into_place(staging, target, overwrite=overwrite)  # readers never see a half-replaced dataset
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    from medcore.store.catalog import refresh_catalog

    refresh_catalog(ws, tables=("datasets",))
    return manifest


def redact_splits(
    ws, source, mapping, decisions, config: RedactionConfig, staging: Path, progress
) -> tuple[RedactionReport, dict]:
    """Redact each split with the same decisions and pseudonym key: one report summed over the splits, and
    each split's input and output hashes."""
    salt = load_salt(ws)
    key = pseudonym_key(config.mode, salt)  # one key for every split: a patient's pseudonym is the same in each
    total, done_before = source.total_rows or None, 0
    fields = text_roles(mapping)
    summary = RedactionReport(
        input_name=source.name, output_name="", input_sha256=source.content_hash, text_fields=fields,
        config=describe_settings(config), columns=decisions,
    )  # fmt: skip
    hashes = {}
    for split in SPLITS:
        relay = (lambda done, _t, base=done_before: progress(base + done, total)) if progress else None
        report = redact_file(
            split_path(ws, source.name, split), staging / f"{split}.parquet", text_field=fields, config=config,
            salt=salt, ws=ws, patient_field=mapping.patient_id, progress=relay, add_spans=False, audit=False,
            decisions=decisions, pseudonym_key=key,
        )  # fmt: skip
        done_before += report.rows_out
        add_split(summary, report, split)
        hashes[split] = {"input_sha256": report.input_sha256, "output_sha256": report.output_sha256}
    return summary, hashes


def add_split(summary: RedactionReport, report: RedactionReport, split: str) -> None:
    for name in ("rows_in", "rows_out", "rows_with_phi", "rows_empty", "rows_non_text", "chars"):
        setattr(summary, name, getattr(summary, name) + getattr(report, name))
    summary.seconds = round(summary.seconds + report.seconds, 3)
    summary.chars_per_s = round(summary.chars / summary.seconds, 1) if summary.seconds else 0.0
    for target, source in ((summary.counts, report.counts), (summary.values_removed, report.values_removed)):
        for key, value in source.items():
            target[key] = target.get(key, 0) + value
    for reason, rows in report.problem_rows.items():  # row numbers are per split file
        summary.problem_rows[f"{split}:{reason}"] = rows[:MAX_LISTED_ROWS]


def output_manifest(
    source: DatasetManifest,
    mapping: ColumnMapping,
    decisions: list[ColumnDecision],
    staging: Path,
    out_name: str,
    config: RedactionConfig,
    audit_hash: str,
) -> DatasetManifest:
    """The new dataset's manifest: its columns as written, dropped columns unmapped, the redaction recorded."""
    import pyarrow.parquet as pq

    dropped = {d.column for d in decisions if d.action == "drop"}
    manifest = source.model_copy(deep=True)
    manifest.name, manifest.created_at = out_name, time.time()
    manifest.encrypted, manifest.key_id = False, None  # redacted data stays plain Parquet, for notebooks and DuckDB
    manifest.content_hash = dataset_content_hash(staging)
    schema = pq.read_schema(staging / f"{SPLITS[0]}.parquet")
    manifest.columns = {f.name: str(f.type) for f in schema}
    manifest.mapping = unmap_columns(mapping, dropped)
    if mapping.label in dropped:
        manifest.label_set = []
        manifest.task = "causal-lm" if manifest.mapping.prompt and manifest.mapping.response else None
    manifest.redaction = RedactionInfo(
        status="redacted", mode=config.mode, method=config.method, parent=source.name, audit_hash=audit_hash
    )
    return manifest


def unmap_columns(mapping: ColumnMapping, dropped: set[str]) -> ColumnMapping:
    """The mapping without the dropped columns (a pseudonymised patient id stays mapped: splits still group)."""
    roles = [r for r in ("label", "id", "patient_id", "spans") if r in ColumnMapping.model_fields]
    update = {role: None for role in roles if getattr(mapping, role) in dropped}
    update["subgroups"] = [c for c in mapping.subgroups if c not in dropped]
    update["not_phi"] = [c for c in mapping.not_phi if c not in dropped]
    return mapping.model_copy(update=update)


def read_redaction_report(ws: Workspace, name: str) -> RedactionReport | None:
    """What the redaction that wrote dataset `name` did (column decisions, counts); None for other datasets."""
    from medcore.rundir import read_json

    data = read_json(dataset_dir(ws, name) / REPORT_FILE)
    return RedactionReport.model_validate(data) if data else None
