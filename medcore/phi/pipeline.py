"""Redact whole files: a column decision per column, chunked streaming, worker processes, atomic output, audit.

redact_file("notes.jsonl", "notes.redacted.parquet", text_field="text", mode="research", all_columns=True)

Every column gets a decision (medcore.phi.columns): the text columns are redacted by the PHI detector, the
others are pseudonymised, date-shifted, reduced to the year, surrogated, dropped or kept. Without
`all_columns` only the text columns are redacted and the rest is copied (each listed as "not checked").
"""

from __future__ import annotations

import itertools
import multiprocessing
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from medcore.errors import MedcoreError
from medcore.fileio import sha256_files
from medcore.phi.audit import append_audit_record, load_salt
from medcore.phi.columns import ColumnDecision, decide_columns
from medcore.phi.config import RedactionConfig, build_config
from medcore.phi.files import SAMPLE_VALUES, ChunkWriter, is_missing, peek_columns, read_chunks, scan_file
from medcore.phi.redact import redact_texts
from medcore.phi.tagger import describe_settings
from medcore.phi.transform import ColumnApplier, output_schema, value_key
from medcore.workspace import Workspace, get_workspace

Progress = Callable[[int, int | None], None]
MAX_LISTED_ROWS = 100  # the report lists at most this many row numbers per problem (counts are exact)
UNCHECKED = "not checked: pass --all-columns (all_columns=True) to decide every column"


class RedactionReport(BaseModel):
    """What a redaction run did, without any PHI: counts, hashes, settings, column decisions, problem row numbers."""

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
    columns: list[ColumnDecision] = Field(
        default_factory=list, description="Each column's action and why (no values)."
    )
    values_removed: dict[str, int] = Field(
        default_factory=dict,
        description="Values set to null per column: dates that do not parse, years implying an age over 89.",
    )
    chars: int = 0
    seconds: float = 0.0
    chars_per_s: float = 0.0
    audit_hash: str | None = None


class TextRedactionFailed(MedcoreError):
    """The detector raised on the text at `index` of a chunk; carries the exception type only, never the text."""

    def __init__(self, index: int, kind: str):
        super().__init__(index, kind)  # args kept as they are so the error pickles back from a worker
        self.index, self.kind = index, kind


@dataclass
class ColumnPlan:
    """What happens to every column of one file."""

    decisions: list[ColumnDecision]
    text_fields: list[str]  # the mapped text columns: spans, empty-row counts, missing-field checks
    redact_fields: list[str]  # every column redacted as text, the mapped ones first
    patient_field: str | None
    applier: ColumnApplier


def redact_chunk(texts: list[str], keys: list[str | None], config: dict, salt: bytes) -> list[tuple[str, list[dict]]]:
    """Worker entry point (also called inline): redacted text and span dicts (offsets only) per text.

    Raises:
        TextRedactionFailed: the index of the first text the detector fails on (found by retrying one by one).
    """
    settings = RedactionConfig.model_validate(config)
    try:
        return redact_span_dicts(texts, keys, settings, salt)
    except MedcoreError:
        raise  # a setup problem (no spaCy, a bad allow-list), said without patient text
    except Exception:  # located below, text by text, and reported by row and column
        pass
    results = []
    for index, (text, key) in enumerate(zip(texts, keys, strict=True)):
        try:
            results += redact_span_dicts([text], [key], settings, salt)
        except MedcoreError:
            raise
        except Exception as exc:  # the message may quote the text: keep the type only
            raise TextRedactionFailed(index, type(exc).__name__) from None
    return results


def redact_span_dicts(texts, keys, settings: RedactionConfig, salt: bytes) -> list[tuple[str, list[dict]]]:
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
    """The texts of one chunk, the chunk's records with their other columns transformed, and where each
    redacted text goes back."""

    def __init__(self, chunk, plan: ColumnPlan, report: RedactionReport):
        self.rows = [row for row, _ in chunk]
        self.texts, self.keys, self.slots, self.records = [], [], [], []
        for index, (row, record) in enumerate(chunk):
            key = value_key(record.get(plan.patient_field)) if plan.patient_field else None
            for field in plan.redact_fields:
                value = text_value(row, record, field, field in plan.text_fields, report)
                if value is not None:
                    self.texts.append(value)
                    self.keys.append(key)
                    self.slots.append((index, field))
            self.records.append(plan.applier.apply(row, record, key))

    def where(self, index: int) -> tuple[int, str]:
        """(row number, column) of the text at `index`."""
        record_index, field = self.slots[index]
        return self.rows[record_index], field

    def finish(self, results, span_fields: dict[str, str], report: RedactionReport) -> list[dict]:
        for record in self.records:
            for name in span_fields.values():
                record[name] = []
        with_phi = set()
        for (index, field), (redacted, spans) in zip(self.slots, results, strict=True):
            self.records[index][field] = redacted
            if field in span_fields:
                self.records[index][span_fields[field]] = spans
            for span in spans:
                report.counts[span["type"]] = report.counts.get(span["type"], 0) + 1
            if spans:
                with_phi.add(index)
        report.rows_with_phi += len(with_phi)
        return self.records


def text_value(row: int, record: dict, field: str, mapped: bool, report: RedactionReport) -> str | None:
    """The text to redact in one cell, or None when there is none (missing, empty)."""
    if field not in record and mapped:
        report.problem_rows.setdefault(f"missing_field:{field}", []).append(row)
    value = record.get(field)
    binary = isinstance(value, bytes)
    if binary:  # binary data in a text column: redacted as the text it decodes to, bad bytes as U+FFFD
        value = value.decode("utf-8", "replace")
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        report.rows_empty += mapped
        return None
    if binary:
        report.problem_rows.setdefault(f"binary_decoded:{field}", []).append(row)
    elif not isinstance(value, str):
        report.rows_non_text += mapped
        value = str(value)  # an MRN stored as a number is still PHI: redact its text form
    report.chars += len(value)
    return value


def span_field(field: str, fields: list[str]) -> str:
    return "phi_spans" if field == fields[0] else f"phi_spans_{field}"


def pseudonym_key(mode: str, salt: bytes) -> bytes:
    """Research: the workspace salt (the same pseudonym in every run). Safe Harbor: a fresh key per run, never
    stored, so no code derived from an identifier can be recomputed afterwards (45 CFR 164.514(c))."""
    return salt if mode == "research" else secrets.token_bytes(32)


def plan_columns(
    scan,
    fields: list[str],
    patient_field: str | None,
    config: RedactionConfig,
    salt: bytes,
    *,
    all_columns: bool,
    keep: Iterable[str],
    drop: Iterable[str],
    decisions: list[ColumnDecision] | None,
    key: bytes | None,
) -> ColumnPlan:
    """Every column's decision (given, decided from the scan, or "not checked") and the applier for them."""
    from medcore.data.manifest import ColumnMapping

    if decisions is None and all_columns:
        mapping = ColumnMapping(text=fields[0], patient_id=patient_field)
        decisions = decide_columns(
            mapping, scan.samples, scan.types, config.mode, keep=keep, drop=drop, text_columns=fields, config=config
        )
    elif decisions is None:
        drop = set(drop)
        decisions = [
            ColumnDecision(column=c, action="redact", kind="text", reason="a --text-field column")
            if c in fields
            else ColumnDecision(column=c, action="drop", kind="user_drop", reason="dropped at the user's request")
            if c in drop
            else ColumnDecision(column=c, action="keep", kind="unchecked", reason=UNCHECKED)
            for c in scan.columns
        ]
    redact_fields = list(dict.fromkeys([*fields, *(d.column for d in decisions if d.action == "redact")]))
    key = key if key is not None else pseudonym_key(config.mode, salt)
    return ColumnPlan(decisions, fields, redact_fields, patient_field, ColumnApplier(decisions, config, salt, key))


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
    all_columns: bool = False,
    keep: Iterable[str] = (),
    drop: Iterable[str] = (),
    decisions: list[ColumnDecision] | None = None,
    pseudonym_key: bytes | None = None,
) -> RedactionReport:
    """Redact the text field(s) of every record of a JSONL/CSV/Parquet file into a new file of any of those.

    Output records keep their other fields (with `all_columns`, each transformed by its column decision; `keep`
    and `drop` override them); each redacted field is replaced, and `phi_spans` (original offsets, never the
    PHI) is added. Columns keep their Arrow types. Rows that cannot be read are skipped and listed by row number.
    `decisions` (one list for several files, as for a dataset's splits) replaces deciding from this file, and
    `pseudonym_key` keeps pseudonyms equal across those files.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    config = config or build_config(mode=mode, method=method)
    fields = [text_field] if isinstance(text_field, str) else list(text_field)
    if in_path.resolve() == out_path.resolve():
        raise MedcoreError(f"Output {out_path} is the input file; write the redacted copy to a new file.")
    check_fields(in_path, fields)
    ws = ws or get_workspace()
    salt = salt if salt is not None else load_salt(ws)
    sample = SAMPLE_VALUES if all_columns and decisions is None else 0
    scan = scan_file(in_path, sample_size=sample, skip=fields)
    plan = plan_columns(scan, fields, patient_field, config, salt, all_columns=all_columns, keep=keep, drop=drop,
                        decisions=decisions, key=pseudonym_key)  # fmt: skip
    report = RedactionReport(
        input_name=in_path.name,
        output_name=out_path.name,
        input_sha256=sha256_files([in_path]),
        text_fields=fields,
        config=describe_settings(config),
        columns=plan.decisions,
    )
    spans = {f: span_field(f, fields) for f in fields} if add_spans else {}
    started, problems = time.perf_counter(), {}
    writer = ChunkWriter(out_path, output_schema(scan.types, plan.decisions, spans.values()), spans.values())
    try:
        run_chunks(read_chunks(in_path, chunk_rows, problems), plan, config, salt, writer, report, spans, progress)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    problems.update(plan.applier.problem_rows)
    report.values_removed = plan.applier.removed
    finish_report(report, problems, started, out_path)
    if audit:
        report.audit_hash = audit_redaction(ws, report, kind="redaction")["hash"]
    if report_path:
        from medcore.rundir import write_json_atomic

        write_json_atomic(Path(report_path), report.model_dump(mode="json"))
    return report


def run_chunks(chunks, plan: ColumnPlan, config, salt, writer, report, spans: dict[str, str], progress) -> None:
    """Redact chunk by chunk, in order; with workers, at most 2 chunks per worker are in flight (bounded memory)."""
    settings = config.model_dump(mode="json")
    done = 0

    def finish(job: ChunkJob, results) -> None:
        nonlocal done
        records = job.finish(results, spans, report)
        writer.write(records, job.rows)
        done += len(records)
        report.rows_in += len(records)
        report.rows_out += len(records)
        if progress:
            progress(done, None)

    chunks = check_first_chunk(chunks, plan.text_fields)
    if config.workers <= 1:
        for chunk in chunks:
            job = ChunkJob(chunk, plan, report)
            finish(job, located(job, lambda job=job: redact_chunk(job.texts, job.keys, settings, salt)))
        return
    from medcore.phi.detect import get_analyzer, tagger_for

    # spaCy and the tagger load once in the parent; forked workers share them copy-on-write and start in milliseconds.
    get_analyzer(config.lexicon, config.spacy_ner)
    tagger_for(config)
    context = multiprocessing.get_context("fork")
    with context.Pool(config.workers, initializer=one_torch_thread) as pool:
        pending: deque = deque()
        for chunk in chunks:
            job = ChunkJob(chunk, plan, report)
            pending.append((job, pool.apply_async(redact_chunk, (job.texts, job.keys, settings, salt))))
            if len(pending) >= 2 * config.workers:
                job, result = pending.popleft()
                finish(job, located(job, result.get))
        while pending:
            job, result = pending.popleft()
            finish(job, located(job, result.get))


def one_torch_thread() -> None:
    """Worker start: one torch thread per worker process (workers already use every core; more threads only
    contend), which also keeps a forked child clear of the parent's OpenMP thread pool."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def located(job: ChunkJob, call):
    """`call()`, with a detector failure turned into a message naming the row and column (never the text)."""
    try:
        return call()
    except TextRedactionFailed as exc:
        row, field = job.where(exc.index)
        raise MedcoreError(
            f"Row {row}, column '{field}': the PHI detector failed on this value ({exc.kind}); nothing was written. "
            "Fix or remove that row (or --drop the column if it is not a text column) and redact again."
        ) from None


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
    report.output_sha256 = sha256_files([out_path])


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
        columns=audit_columns(report.columns),
        values_removed=report.values_removed,
        **extra,
    )


def audit_columns(decisions: list[ColumnDecision]) -> list[dict]:
    """The decisions as the audit log keeps them: column, action and kind (names only)."""
    return [{"column": d.column, "action": d.action, "kind": d.kind} for d in decisions]
