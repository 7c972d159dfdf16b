"""Redact whole files and datasets: chunked streaming, worker processes, atomic output, audit record, report."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from medcore.errors import MedcoreError
from medcore.phi.audit import append_audit_record, load_salt
from medcore.phi.config import RedactionConfig, build_config
from medcore.phi.files import ChunkWriter, is_missing, peek_columns, read_chunks
from medcore.phi.redact import redact_texts
from medcore.workspace import Workspace, get_workspace

if TYPE_CHECKING:
    from medcore.data.manifest import DatasetManifest

Progress = Callable[[int, int | None], None]
MAX_LISTED_ROWS = 100  # the report lists at most this many row numbers per problem (counts are exact)


class RedactionReport(BaseModel):
    """What a redaction run did, without any PHI: counts, hashes, settings, problem row numbers."""

    input_name: str
    output_name: str
    input_sha256: str
    output_sha256: str = ""
    text_fields: list[str]
    config: dict
    rows_in: int = 0
    rows_out: int = 0
    rows_with_phi: int = 0
    rows_empty: int = Field(0, description="Rows whose text was empty, None or NaN (written unchanged).")
    rows_non_text: int = Field(0, description="Rows whose text field held a number or object (redacted as text).")
    skipped: dict[str, int] = Field(default_factory=dict, description="Rows not written, per reason.")
    problem_rows: dict[str, list[int]] = Field(default_factory=dict, description="Row numbers per problem.")
    counts: dict[str, int] = Field(default_factory=dict, description="PHI spans found per category.")
    chars: int = 0
    seconds: float = 0.0
    chars_per_s: float = 0.0
    audit_hash: str | None = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def redact_chunk(texts: list[str], keys: list[str | None], config: dict, salt: bytes) -> list[tuple[str, list[dict]]]:
    """Worker entry point (also called inline): redacted text and span dicts (offsets only) per text."""
    settings = RedactionConfig.model_validate(config)
    return [
        (redacted, [{"start": s.start, "end": s.end, "type": s.type, "score": s.score} for s in spans])
        for redacted, spans in redact_texts(texts, settings, salt, keys)
    ]


def check_fields(in_path: Path, fields: list[str]) -> None:
    columns = peek_columns(in_path)
    missing = [f for f in fields if columns is not None and f not in columns]
    if missing:
        raise MedcoreError(
            f"Field '{missing[0]}' not found in {in_path.name}; columns are: {', '.join(map(str, columns))}. "
            "Pass --text-field with the column that holds the notes."
        )


class ChunkJob:
    """The texts of one chunk, and where each redacted text goes back."""

    def __init__(self, chunk, fields: list[str], patient_field: str | None, report: RedactionReport):
        self.chunk, self.fields, self.texts, self.keys, self.slots = chunk, fields, [], [], []
        for index, (row, record) in enumerate(chunk):
            key = record.get(patient_field) if patient_field else None
            for field in fields:
                value = record.get(field) if field in record else None
                if field not in record:
                    report.problem_rows.setdefault(f"missing_field:{field}", []).append(row)
                if is_missing(value) or (isinstance(value, str) and not value.strip()):
                    report.rows_empty += 1
                    continue
                if not isinstance(value, str):
                    report.rows_non_text += 1
                    value = str(value)  # an MRN stored as a number is still PHI: redact its text form
                self.texts.append(value)
                self.keys.append(None if is_missing(key) else str(key))
                self.slots.append((index, field))
                report.chars += len(value)

    def records(self, results, add_spans: bool, report: RedactionReport) -> list[dict]:
        records = [dict(record) for _, record in self.chunk]
        for record in records:
            for field in self.fields:
                if add_spans:
                    record[span_field(field, self.fields)] = []
        with_phi = set()
        for (index, field), (redacted, spans) in zip(self.slots, results, strict=True):
            records[index][field] = redacted
            if add_spans:
                records[index][span_field(field, self.fields)] = spans
            for span in spans:
                report.counts[span["type"]] = report.counts.get(span["type"], 0) + 1
            if spans:
                with_phi.add(index)
        report.rows_with_phi += len(with_phi)
        return records


def span_field(field: str, fields: list[str]) -> str:
    return "phi_spans" if field == fields[0] else f"phi_spans_{field}"


def redact_file(
    in_path: str | Path,
    out_path: str | Path,
    *,
    text_field: str | list[str] = "text",
    config: RedactionConfig | None = None,
    mode: str | None = None,
    method: str | None = None,
    salt: bytes | None = None,
    ws: Workspace | None = None,
    patient_field: str | None = None,
    report_path: str | Path | None = None,
    progress: Progress | None = None,
    chunk_rows: int = 256,
    add_spans: bool = True,
    audit: bool = True,
) -> RedactionReport:
    """Redact the text field(s) of every record of a JSONL/CSV/Parquet file into a new file of any of those.

    Output records keep their other fields; each redacted field is replaced, and `phi_spans` (original
    offsets, never the PHI) is added. Rows that cannot be read are skipped and listed by row number.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    config = config or build_config(mode=mode, method=method)
    fields = [text_field] if isinstance(text_field, str) else list(text_field)
    if in_path.resolve() == out_path.resolve():
        raise MedcoreError(f"Output {out_path} is the input file; write the redacted copy to a new file.")
    check_fields(in_path, fields)
    ws = ws or get_workspace()
    salt = salt if salt is not None else load_salt(ws)
    report = RedactionReport(
        input_name=in_path.name,
        output_name=out_path.name,
        input_sha256=sha256_file(in_path),
        text_fields=fields,
        config=config.model_dump(mode="json", exclude={"allowlist", "lexicon"}),
    )
    started, problems = time.perf_counter(), {}
    writer = ChunkWriter(out_path, [span_field(f, fields) for f in fields] if add_spans else [])
    try:
        run_chunks(
            read_chunks(in_path, chunk_rows, problems),
            fields,
            patient_field,
            config,
            salt,
            writer,
            report,
            add_spans,
            progress,
        )
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finish_report(report, problems, started, out_path)
    if audit:
        report.audit_hash = audit_redaction(ws, report, kind="redaction")["hash"]
    if report_path:
        from medcore.rundir import write_json_atomic

        write_json_atomic(Path(report_path), report.model_dump(mode="json"))
    return report


def run_chunks(chunks, fields, patient_field, config, salt, writer, report, add_spans, progress) -> None:
    """Redact chunk by chunk, in order; with workers, at most 2 chunks per worker are in flight (bounded memory)."""
    settings = config.model_dump(mode="json")
    done = 0

    def finish(job: ChunkJob, results) -> None:
        nonlocal done
        records = job.records(results, add_spans, report)
        writer.write(records)
        done += len(records)
        report.rows_in += len(records)
        report.rows_out += len(records)
        if progress:
            progress(done, None)

    chunks = check_first_chunk(chunks, fields)
    if config.workers <= 1:
        for chunk in chunks:
            job = ChunkJob(chunk, fields, patient_field, report)
            finish(job, redact_chunk(job.texts, job.keys, settings, salt))
        return
    from medcore.phi.detect import get_analyzer

    get_analyzer(config.lexicon)  # load spaCy once in the parent; forked workers share it copy-on-write
    # fork: workers start in milliseconds with the pipeline loaded; medcore.phi starts no threads before this.
    context = multiprocessing.get_context("fork")
    with context.Pool(config.workers) as pool:
        pending: deque = deque()
        for chunk in chunks:
            job = ChunkJob(chunk, fields, patient_field, report)
            pending.append((job, pool.apply_async(redact_chunk, (job.texts, job.keys, settings, salt))))
            if len(pending) >= 2 * config.workers:
                job, result = pending.popleft()
                finish(job, result.get())
        while pending:
            job, result = pending.popleft()
            finish(job, result.get())


def check_first_chunk(chunks, fields: list[str]):
    """Fail early, naming the keys, when no record of the first chunk has the text field (JSONL has no header)."""
    first = next(chunks, None)
    if first is None:
        return iter(())
    if not any(field in record for _, record in first for field in fields):
        keys = sorted({str(k) for _, record in first for k in record})
        raise MedcoreError(
            f"Field '{fields[0]}' is in none of the first {len(first)} records (from row {first[0][0]}); "
            f"their fields are: {', '.join(keys)}. Pass --text-field with the field that holds the notes."
        )
    return itertools.chain([first], chunks)


def finish_report(report: RedactionReport, problems: dict[str, list[int]], started: float, out_path: Path) -> None:
    for reason, rows in problems.items():
        if not reason.endswith("_replaced"):
            report.skipped[reason] = len(rows)
        report.problem_rows[reason] = rows[:MAX_LISTED_ROWS]
    report.problem_rows = {k: v[:MAX_LISTED_ROWS] for k, v in report.problem_rows.items()}
    report.seconds = round(time.perf_counter() - started, 3)
    report.chars_per_s = round(report.chars / report.seconds, 1) if report.seconds else 0.0
    report.output_sha256 = sha256_file(out_path)


def audit_redaction(ws: Workspace, report: RedactionReport, kind: str, **extra) -> dict:
    return append_audit_record(
        ws,
        kind,
        input=report.input_name,
        input_sha256=report.input_sha256,
        output=report.output_name,
        output_sha256=report.output_sha256,
        config=report.config,
        text_fields=report.text_fields,
        counts=report.counts,
        rows_in=report.rows_in,
        rows_with_phi=report.rows_with_phi,
        skipped=report.skipped,
        **extra,
    )


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
) -> DatasetManifest:
    """Redact a dataset's text (and prompt/response) columns into a new dataset `<name>-redacted`.

    The new folder is written under datasets/.staging and renamed into place; its manifest records
    redaction status, parent, mode, method and the hash of the audit record appended for the run.
    """
    from medcore.data.manifest import (
        SPLITS,
        RedactionInfo,
        check_dataset_name,
        dataset_dir,
        read_manifest,
        split_path,
        write_manifest,
    )

    source = read_manifest(ws, name)
    out_name = check_dataset_name(out_name or f"{name}-redacted"[:64])
    target = dataset_dir(ws, out_name)
    if target.exists() and not overwrite:
        raise MedcoreError(f"Dataset '{out_name}' already exists. Pick another output name or delete it first.")
    config = build_config(mode=mode, method=method, workers=workers)
    mapping = source.mapping
    fields = list(dict.fromkeys(f for f in (mapping.text, mapping.prompt, mapping.response) if f))
    staging = ws.datasets / ".staging" / f"{out_name}-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    salt, total, done_before = load_salt(ws), source.total_rows or None, 0
    counts: dict[str, int] = {}
    digest, split_hashes = hashlib.sha256(), {}
    try:
        for split in SPLITS:
            path = split_path(ws, name, split)
            if not path.exists():
                raise MedcoreError(f"Dataset '{name}' has no '{split}' split at {path}. Re-import the dataset.")
            relay = (lambda done, _t, base=done_before: progress(base + done, total)) if progress else None
            report = redact_file(
                path,
                staging / f"{split}.parquet",
                text_field=fields,
                config=config,
                salt=salt,
                ws=ws,
                patient_field=mapping.patient_id,
                progress=relay,
                add_spans=False,
                audit=False,
            )
            done_before += report.rows_out
            for key, value in report.counts.items():
                counts[key] = counts.get(key, 0) + value
            digest.update((staging / f"{split}.parquet").read_bytes())
            split_hashes[split] = {"input_sha256": report.input_sha256, "output_sha256": report.output_sha256}
        record = append_audit_record(
            ws,
            "redaction",
            dataset=name,
            output_dataset=out_name,
            splits=split_hashes,
            text_fields=fields,
            config=config.model_dump(mode="json", exclude={"allowlist", "lexicon"}),
            counts=counts,
            rows_in=source.total_rows,
            source_content_hash=source.content_hash,
            content_hash=digest.hexdigest(),
        )
        manifest = source.model_copy(deep=True)
        manifest.name, manifest.created_at, manifest.content_hash = out_name, time.time(), digest.hexdigest()
        manifest.redaction = RedactionInfo(
            status="redacted", mode=config.mode, method=config.method, parent=name, audit_hash=record["hash"]
        )
        write_manifest(staging, manifest)
        from medcore.data.importer import swap_into_place

        swap_into_place(staging, target, overwrite=overwrite)  # readers never see a half-replaced dataset
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    from medcore.store.catalog import refresh_catalog

    refresh_catalog(ws, tables=("datasets",))
    return manifest
