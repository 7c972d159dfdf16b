"""Check an upload against a column mapping and guess a mapping: row-level problems, never cell text.

Row numbers are 1-based record numbers (the first record is row 1; a CSV header line is not counted).
"""

from __future__ import annotations

import numbers
from itertools import pairwise

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medcore.data.manifest import ColumnMapping
from medcore.errors import MedcoreError
from medcore.models import Task

MAX_ROW_PROBLEMS = 200  # shown in the console/CLI; the total is always reported
MIN_ROWS_PER_LABEL = 2  # fewer and a stratified split cannot place the label in train and in a held-out split


class RowProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    row: int = Field(description="1-based record number in the upload.")
    column: str = Field(description="Column at fault.")
    problem: str = Field(description="What is wrong; never the cell's content.")


class ValidationStats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = 0
    empty_texts: int = 0
    duplicate_ids: int = 0
    text_length: dict[str, float] = Field(default_factory=dict, description="Characters: min, p5, p50, p95, max.")
    label_counts: dict[str, int] = Field(default_factory=dict)
    patients: int | None = Field(None, description="Distinct patient ids when a patient column is mapped.")


class ValidationReport(BaseModel):
    """The outcome of validate_dataset; `ok` is False when any error was found."""

    model_config = ConfigDict(extra="forbid")
    ok: bool
    task: Task | None = None
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    row_problems: list[RowProblem] = Field(default_factory=list, description=f"First {MAX_ROW_PROBLEMS} problems.")
    row_problems_total: int = 0
    stats: ValidationStats = Field(default_factory=ValidationStats)

    def summary(self, limit: int = 5) -> str:
        """One message for an exception or the CLI: the errors and the first few row problems."""
        lines = list(self.errors)
        for p in self.row_problems[:limit]:
            lines.append(f"row {p.row}, column '{p.column}': {p.problem}")
        if self.row_problems_total > limit:
            lines.append(f"... {self.row_problems_total - limit} more row problems")
        return "\n".join(lines)


class DatasetValidationError(MedcoreError):
    """An import refused by validation; `report` holds the full ValidationReport for the console."""

    def __init__(self, report: ValidationReport, source: str = "the upload"):
        self.report = report
        super().__init__(f"{source} failed validation; fix these and import again:\n{report.summary()}")


def infer_task(mapping: ColumnMapping) -> Task | None:
    if mapping.spans:
        return "token-classification"
    if mapping.label:
        return "classification"
    if mapping.prompt or mapping.response:
        return "causal-lm"
    return None


def validate_dataset(df: pd.DataFrame, mapping: ColumnMapping, task: Task | None = None) -> ValidationReport:
    """Check `df` against `mapping` for `task` (inferred from the mapping when None)."""
    task = task or infer_task(mapping)
    report = ValidationReport(ok=True, task=task, stats=ValidationStats(rows=len(df)))
    problems: list[RowProblem] = []
    if _check_columns(df, mapping, task, report):
        _check_text(df, mapping.text, report, problems)
        if mapping.text_pair:
            _check_text(df, mapping.text_pair, report, problems, count_stats=False)
        if mapping.label:
            _check_labels(df, mapping.label, report, problems)
        if mapping.spans:
            _check_spans(df, mapping.spans, mapping.text, report, problems)
        if mapping.id:
            _check_ids(df, mapping.id, report, problems)
        for column in (mapping.prompt, mapping.response):
            if column:
                _check_text(df, column, report, problems, count_stats=False)
        if mapping.patient_id:
            _check_patients(df, mapping.patient_id, report, problems)
        for column in mapping.subgroups:
            missing = int(df[column].isna().sum())
            if missing:
                report.warnings.append(f"Subgroup column '{column}' is empty in {missing} rows; they form no group.")
    if 0 < len(df) < 10:
        report.warnings.append(f"Only {len(df)} rows: validation and test splits will be tiny or empty.")
    report.row_problems_total = len(problems)
    report.row_problems = sorted(problems, key=lambda p: (p.row, p.column))[:MAX_ROW_PROBLEMS]
    report.ok = not report.errors
    return report


def _check_columns(df: pd.DataFrame, mapping: ColumnMapping, task: Task | None, report: ValidationReport) -> bool:
    roles = {"text": mapping.text, "text_pair": mapping.text_pair, "label": mapping.label, "id": mapping.id}
    roles |= {"patient_id": mapping.patient_id}
    roles |= {"prompt": mapping.prompt, "response": mapping.response, "spans": mapping.spans}
    roles |= {f"subgroup {c}": c for c in mapping.subgroups}
    roles |= {f"not-PHI {c}": c for c in mapping.not_phi}
    columns = [str(c) for c in df.columns]
    missing = {role: col for role, col in roles.items() if col and col not in columns}
    for role, col in missing.items():
        report.errors.append(
            f"Column '{col}' (mapped as {role}) not found; columns are: {', '.join(columns)}. "
            f"Pick the {role} column in the mapping."
        )
    if task == "classification" and not mapping.label:
        report.errors.append("Task 'classification' needs a label column: map one (e.g. --label-column).")
    if task == "token-classification" and not mapping.spans:
        report.errors.append("Task 'token-classification' needs a spans column: map one (e.g. --spans-column).")
    if task == "causal-lm" and bool(mapping.prompt) != bool(mapping.response):
        report.errors.append("Causal-LM fine-tuning needs both a prompt and a response column, or neither.")
    _check_pair_role(mapping, task, report)
    texts = sorted({mapping.text, mapping.text_pair, mapping.prompt, mapping.response} & set(mapping.not_phi))
    if texts:
        report.errors.append(f"Text column(s) {', '.join(texts)} cannot be marked not PHI: notes are always redacted.")
    return not missing


def _check_pair_role(mapping: ColumnMapping, task: Task | None, report: ValidationReport) -> None:
    """A second text is read only by classification (spans and prompts belong to one text)."""
    if not mapping.text_pair:
        return
    if mapping.text_pair == mapping.text:
        report.errors.append(
            f"Column '{mapping.text}' is mapped as both the text and the second text: map the pair's other column."
        )
    if task not in (None, "classification"):
        report.errors.append(
            f"Task '{task}' reads one text; a second text column ('{mapping.text_pair}') is for pair "
            "classification. Unmap the second text, or map a label column for classification."
        )


def _check_text(df: pd.DataFrame, column: str, report, problems: list[RowProblem], count_stats: bool = True) -> None:
    values = df[column]
    as_text = values.astype("string")
    empty = values.isna() | as_text.str.strip().eq("").fillna(True)
    for index in empty.to_numpy().nonzero()[0]:
        problems.append(RowProblem(row=int(index) + 1, column=column, problem="empty or missing text"))
    n_empty = int(empty.sum())
    if n_empty:
        report.errors.append(f"{n_empty} rows have empty text in column '{column}': fill or remove them.")
    if not count_stats:
        return
    report.stats.empty_texts = n_empty
    lengths = as_text[~empty].str.len()
    if len(lengths):
        q = lengths.quantile([0.05, 0.5, 0.95])
        report.stats.text_length = {
            "min": float(lengths.min()),
            "p5": float(q[0.05]),
            "p50": float(q[0.5]),
            "p95": float(q[0.95]),
            "max": float(lengths.max()),
        }


def _check_labels(df: pd.DataFrame, column: str, report: ValidationReport, problems: list[RowProblem]) -> None:
    labels = df[column]
    missing = labels.isna()
    for index in missing.to_numpy().nonzero()[0]:
        problems.append(RowProblem(row=int(index) + 1, column=column, problem="missing label"))
    if missing.any():
        report.errors.append(f"{int(missing.sum())} rows have no label in column '{column}': label or remove them.")
    counts = labels[~missing].astype(str).value_counts()
    # A free-text column mapped as the label must not echo its values (they may be notes) into messages.
    categorical = len(counts) <= 50 and all(len(v) <= 40 for v in counts.index)
    if categorical:
        report.stats.label_counts = {str(k): int(v) for k, v in counts.items()}
    else:
        report.errors.append(
            f"Column '{column}' has {len(counts)} distinct values over {len(labels)} rows: it looks like free text "
            "or an id, not a label. Map a categorical column as the label."
        )
        return
    if len(counts) < 2:
        report.errors.append(f"Column '{column}' has a single label: classification needs at least two.")
    rare = counts[counts < MIN_ROWS_PER_LABEL]
    if len(rare):
        report.errors.append(
            f"Labels with fewer than {MIN_ROWS_PER_LABEL} rows cannot be split stratified: "
            f"{', '.join(map(repr, rare.index))}. Add examples or merge them into another label."
        )
    elif len(counts) >= 2 and counts.max() >= 20 * counts.min():
        report.warnings.append(f"Labels are imbalanced ({counts.max()} vs {counts.min()} rows): watch macro-F1.")


def _check_spans(df: pd.DataFrame, column: str, text: str, report: ValidationReport, problems: list) -> None:
    """Each cell a list of {start, end, type} within its text; stats.label_counts counts spans per type."""
    bad_rows, overlapping, counts = 0, 0, {}
    for index, (cell, note) in enumerate(zip(df[column], df[text], strict=True)):
        problem = _span_cell_problem(cell, len(note) if isinstance(note, str) else 0, counts)
        if problem:
            bad_rows += 1
            problems.append(RowProblem(row=index + 1, column=column, problem=problem))
        else:
            bounds = sorted((int(span["start"]), int(span["end"])) for span in cell)
            overlapping += any(b[0] < a[1] for a, b in pairwise(bounds))
    if overlapping:
        report.warnings.append(
            f"{overlapping} rows have overlapping spans in '{column}': BIO tags hold one type per token, "
            "so the earlier span wins where they overlap."
        )
    if bad_rows:
        report.errors.append(
            f"{bad_rows} rows have invalid spans in column '{column}': each row needs a list (empty when the note "
            "has none) of {start, end, type} with 0 <= start < end <= the note's length in characters."
        )
    # Span types become the tagger's labels and appear in messages: they must look like types, not note text.
    if len(counts) > 50 or any(len(kind) > 40 for kind in counts):
        report.errors.append(
            f"Column '{column}' has {len(counts)} distinct span types, some long: types must be short names "
            "(NAME, DATE, ...). Check that the type field holds the entity type."
        )
        return
    report.stats.label_counts = dict(sorted(counts.items()))
    if not counts and not bad_rows:
        report.errors.append(f"Column '{column}' holds no spans at all: token classification needs some.")


def _span_cell_problem(cell, length: int, counts: dict[str, int]) -> str | None:
    """What is wrong with one row's spans (None when fine); counts the types of a good row. Never quotes the cell."""
    if isinstance(cell, str) or not isinstance(cell, list | tuple | np.ndarray):
        kind = "text (upload JSONL or Parquet, where spans are a list)" if isinstance(cell, str) else "missing"
        return f"spans are {kind}, not a list of {{start, end, type}}"
    kinds = []
    for number, span in enumerate(cell, 1):
        if not isinstance(span, dict) or not {"start", "end", "type"} <= set(span):
            return f"span {number} is not a {{start, end, type}} object"
        start, end, kind = span["start"], span["end"], span["type"]
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (start, end)):
            return f"span {number}: start and end must be whole numbers (character offsets)"
        if not 0 <= start < end <= length:
            return f"span {number}: offsets {start}-{end} are not within the text (length {length}) or start >= end"
        if not isinstance(kind, str) or not kind.strip():
            return f"span {number}: type must be a non-empty string"
        kinds.append(kind)
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return None


def _check_ids(df: pd.DataFrame, column: str, report: ValidationReport, problems: list[RowProblem]) -> None:
    ids = df[column]
    for index in ids.isna().to_numpy().nonzero()[0]:
        problems.append(RowProblem(row=int(index) + 1, column=column, problem="missing id"))
    dup = ids.notna() & ids.duplicated(keep=False)
    first_row = {}
    for index, value in zip(dup.to_numpy().nonzero()[0], ids[dup], strict=True):
        first = first_row.setdefault(value, int(index) + 1)
        if first != int(index) + 1:
            problems.append(
                RowProblem(row=int(index) + 1, column=column, problem=f"duplicate id (same as row {first})")
            )
    n_dup = int(ids[ids.notna()].duplicated().sum())
    report.stats.duplicate_ids = n_dup
    if n_dup or ids.isna().any():
        report.errors.append(
            f"Column '{column}' must hold a unique id per row: {n_dup} duplicates, {int(ids.isna().sum())} missing. "
            "Fix the ids or leave the id column unmapped (row numbers are used)."
        )


def _check_patients(df: pd.DataFrame, column: str, report: ValidationReport, problems: list[RowProblem]) -> None:
    patients = df[column]
    report.stats.patients = int(patients.nunique(dropna=True))
    missing = patients.isna()
    for index in missing.to_numpy().nonzero()[0]:
        problems.append(RowProblem(row=int(index) + 1, column=column, problem="missing patient id"))
    if missing.any():
        report.errors.append(
            f"{int(missing.sum())} rows have no patient id in '{column}': without it a patient could span splits."
        )


TEXT_NAMES = ("text", "note", "notes", "note_text", "clinical_note", "report", "content", "body", "document")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "specialty", "diagnosis", "outcome", "y")
SPANS_NAMES = ("spans", "phi_spans", "entities", "ents", "annotations")
ID_NAMES = ("id", "note_id", "record_id", "doc_id", "document_id", "row_id", "uid")
PATIENT_NAMES = ("patient_id", "patient", "mrn", "subject_id", "person_id", "pid", "patientid")
SUBGROUP_NAMES = ("sex", "gender", "age", "age_band", "age_group", "ethnicity", "race")
PROMPT_NAMES = ("prompt", "instruction", "question", "input", "query")
RESPONSE_NAMES = ("response", "answer", "output", "completion")
# Pair datasets (Quora/MedQP question pairs, GLUE, NLI): the second text's name, and the first's when it has one.
PAIR_NAMES = ("text_pair", "text_b", "text2", "text_2", "sentence2", "sentence_2", "question2", "question_2",
              "hypothesis")  # fmt: skip
PAIR_FIRST_NAMES = ("text_a", "text1", "text_1", "sentence1", "sentence_1", "question1", "question_1", "premise")


def _by_name(columns: list[str], names: tuple[str, ...], taken: set[str]) -> str | None:
    lowered = {c.lower().strip(): c for c in columns if c not in taken}
    return next((lowered[n] for n in names if n in lowered), None)


def suggest_mapping(df: pd.DataFrame) -> ColumnMapping:
    """Guess the role of each column from its name, falling back to its values (dtype, length, cardinality)."""
    columns = [str(c) for c in df.columns]
    nested = [c for c in columns if df[c].dtype == object and df[c].dropna().map(is_nested).any()]
    strings = [
        c for c in columns if c not in nested and (df[c].dtype == object or pd.api.types.is_string_dtype(df[c]))
    ]
    if not strings:
        raise MedcoreError(f"No text column found; columns are: {', '.join(columns)}. The upload needs notes.")
    taken: set[str] = set(nested)  # lists and records are never text, ids or labels
    pair = _by_name(strings, PAIR_NAMES, taken)
    first = _by_name(columns, PAIR_FIRST_NAMES + TEXT_NAMES, taken | {pair}) if pair else None
    text_pair = pair if first else None  # a pair needs a first text named as one: a lone "hypothesis" is the text
    taken |= {text_pair} - {None}
    mean_len = {c: df[c].dropna().astype(str).str.len().mean() for c in strings if c not in taken}
    text = first or _by_name(columns, TEXT_NAMES, taken) or max(mean_len, key=lambda c: mean_len[c] or 0)
    taken.add(text)
    found = {"text_pair": text_pair}
    for role, names in (("id", ID_NAMES), ("patient_id", PATIENT_NAMES), ("prompt", PROMPT_NAMES)):
        found[role] = _by_name(columns, names, taken)
        taken |= {found[role]} - {None}
    found["response"] = _by_name(columns, RESPONSE_NAMES, taken) if found["prompt"] else None
    taken |= {found["response"]} - {None}
    subgroups = [c for c in columns if c.lower().strip() in SUBGROUP_NAMES and c not in taken]
    taken |= set(subgroups)
    label = _by_name(columns, LABEL_NAMES, taken)
    if label is None and not found["prompt"]:
        limit = max(20, len(df) // 20)
        candidates = [c for c in columns if c not in taken and 1 < df[c].nunique() <= limit]
        label = min(candidates, key=lambda c: df[c].nunique(), default=None)
    spans = next((c for c in nested if c.lower().strip() in SPANS_NAMES), None)
    return ColumnMapping(text=text, label=label, subgroups=subgroups, spans=spans, **found)


def is_nested(value) -> bool:
    """A list, record or array cell (a spans column), which has no place among text or label values."""
    return isinstance(value, list | tuple | dict) or hasattr(value, "__array__")
