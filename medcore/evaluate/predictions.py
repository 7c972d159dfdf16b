"""Read and check a predictions file (CSV or Parquet): true and predicted labels, class probabilities, subgroups.

Errors name the file, the column and the fix, and refer to records by 1-based data row number (the header is not a
row). They never quote a cell: the one exception is a label name, shown only when it is short and its column holds few distinct
values (a predictions column can hold generated text by mistake, and generated text can hold patient text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medcore.errors import MedcoreError
from medcore.evaluate.metrics import check_probabilities, describe_rows

MISSING = "(missing)"  # the subgroup of rows with no value in a subgroup column
MAX_CATEGORIES = 50  # a column with more distinct values may be free text: its values are never shown
MAX_LABEL_CHARS = 40  # longer "labels" are not shown in messages either: they may be generated text
SHOWN = 10


SMALL_GROUP = 30  # examples; the same threshold as the small cells of bootstrap.SMALL_CELL


class PredictionColumns(BaseModel):
    """Which columns of the predictions file hold what."""

    model_config = ConfigDict(extra="forbid")

    label_column: str = Field(description="Column holding each row's true label.")
    pred_column: str = Field(description="Column holding each row's predicted label.")
    proba_prefix: str | None = Field(
        None,
        description="Prefix of the probability columns, one per class: with 'p_' class 'yes' is scored from "
        "column 'p_yes'. Two classes may give only the positive class's column. Without it, AUROC, AUPRC, "
        "Brier and ECE are undefined.",
    )
    subgroups: list[str] = Field(
        default_factory=list,
        description="Columns to score each value of separately (e.g. sex, age_band); rows without a value form "
        f"the group '{MISSING}'.",
    )


@dataclass(frozen=True)
class Predictions:
    """A checked predictions file: class names, integer codes into them, probabilities (n, K) and subgroups."""

    source: str
    labels: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    subgroups: dict[str, np.ndarray]


def read_predictions(path: Path, columns: PredictionColumns) -> Predictions:
    """Read `path` and check it against `columns`.

    Raises:
        MedcoreError: unreadable or empty file, a missing column, rows without a label, a predicted label that is
            neither a true label nor a probability column, bad probabilities, a subgroup column with too many values.
    """
    path = Path(path)
    frame = read_table(path)
    name = path.name
    require_columns(frame, [columns.label_column, columns.pred_column, *columns.subgroups], name)
    y_true = label_values(frame[columns.label_column], columns.label_column, name)
    y_pred = label_values(frame[columns.pred_column], columns.pred_column, name)
    proba_frame = probability_columns(frame, columns.proba_prefix, name)
    labels = class_names(y_true, y_pred, proba_frame, columns, name)
    proba = None if proba_frame is None else read_probabilities(proba_frame, labels, columns.proba_prefix, name)
    return Predictions(
        source=name,
        labels=labels,
        y_true=encode(y_true, labels),
        y_pred=encode(y_pred, labels),
        proba=proba,
        subgroups={c: subgroup_values(frame[c], c, name) for c in columns.subgroups},
    )


def read_table(path: Path) -> pd.DataFrame:
    """The file as a DataFrame; CSV cells stay text ('007' stays '007'), Parquet keeps its types."""
    if not path.is_file():
        raise MedcoreError(f"Predictions file {path} does not exist. Check the path.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, encoding_errors="replace")
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise MedcoreError(f"Cannot read {path.name}: predictions must be .csv or .parquet, not '{suffix}'.")
    except pd.errors.EmptyDataError:
        raise MedcoreError(f"{path.name} is empty. Write the predictions with a header row.") from None
    except pd.errors.ParserError as exc:
        # pandas' tokenizer messages give line numbers and field counts, never cell content.
        raise MedcoreError(f"{path.name} is not a well-formed CSV file: {str(exc).strip()}") from None
    except (OSError, ValueError) as exc:
        raise MedcoreError(f"{path.name} is not a readable Parquet file ({type(exc).__name__}).") from None
    if frame.empty:
        raise MedcoreError(f"{path.name} has no rows. Write one row per scored example.")
    return frame


def require_columns(frame: pd.DataFrame, wanted: list[str], name: str) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        existing = ", ".join(str(c) for c in frame.columns[:50]) + (", ..." if len(frame.columns) > 50 else "")
        named = ", ".join(f"'{c}'" for c in missing)
        raise MedcoreError(
            f"Column{'s' if len(missing) > 1 else ''} {named} not found in {name}; columns are: {existing}. "
            "Pass one of those."
        )


def label_values(series: pd.Series, column: str, name: str) -> np.ndarray:
    """The column as label strings; a row without a label is an error."""
    missing = np.flatnonzero((series.isna() | (series.astype(str).str.strip() == "")).to_numpy())
    if missing.size:
        raise MedcoreError(
            f"Column '{column}' of {name} has no label in {describe_rows(missing)}. Fill or drop those rows."
        )
    return as_text(series)


def as_text(series: pd.Series) -> np.ndarray:
    """Cells as stripped strings; integral floats (1.0 from Parquet) read as integers ('1')."""
    if pd.api.types.is_float_dtype(series) and (series == series.round()).all():
        series = series.astype("int64")
    return series.astype(str).str.strip().to_numpy(dtype=object)


def probability_columns(frame: pd.DataFrame, prefix: str | None, name: str) -> pd.DataFrame | None:
    if prefix is None:
        return None
    found = [c for c in frame.columns if str(c).startswith(prefix) and len(str(c)) > len(prefix)]
    if not found:
        existing = ", ".join(str(c) for c in frame.columns[:50])
        raise MedcoreError(
            f"No probability columns starting with '{prefix}' in {name}; columns are: {existing}. "
            "Pass the prefix of the per-class probability columns (--proba-prefix), or leave it out."
        )
    return frame[found].rename(columns=lambda c: str(c)[len(prefix) :])


def show_labels(values: list[str], column_values: np.ndarray, first_rows: dict[str, int] | None = None) -> str:
    """Labels for a message: quoted when label-sized in a column of few distinct values; else only where they are."""
    distinct = len(set(column_values))
    if distinct > MAX_CATEGORIES:
        rows = np.sort(np.array([first_rows[v] for v in values])) if first_rows else np.array([], dtype=int)
        where = f", first seen in {describe_rows(rows)}" if rows.size else ""
        return f"{len(values)} values{where} (not shown: {distinct} distinct values look like free text, not labels)"
    shown = []
    for value in values[:SHOWN]:
        where = f" (row {first_rows[value] + 1})" if first_rows else ""
        shown.append((repr(value) if len(value) <= MAX_LABEL_CHARS else f"a {len(value)}-character value") + where)
    return ", ".join(shown) + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


def class_names(y_true, y_pred, proba: pd.DataFrame | None, columns: PredictionColumns, name: str) -> list[str]:
    """The classes: the probability columns' names when given, else the true labels; in natural order."""
    classes = set(y_true) if proba is None else scored_classes(y_true, list(proba.columns), columns, name)
    unknown = sorted(set(y_pred) - classes)
    if unknown:
        first = {v: int(np.flatnonzero(y_pred == v)[0]) for v in unknown}
        source = "true labels" if proba is None else "probability columns"
        raise MedcoreError(
            f"Column '{columns.pred_column}' of {name} predicts labels never seen among the {source}: "
            f"{show_labels(unknown, y_pred, first)}. Predict only known classes (check spelling and case)."
        )
    return natural_order(classes)


def scored_classes(y_true: np.ndarray, scored: list[str], columns: PredictionColumns, name: str) -> set[str]:
    """The classes named by the probability columns; one column stands for the positive of two classes."""
    prefix, seen = columns.proba_prefix, set(y_true)
    if len(scored) == 1 and len(seen | set(scored)) != 2:
        raise MedcoreError(
            f"{name} has one probability column ('{prefix}{scored[0]}') and {len(seen | set(scored))} classes; "
            f"one column serves two classes only. Give one '{prefix}<label>' column per class."
        )
    classes = set(scored) | seen if len(scored) == 1 else set(scored)
    unscored = sorted(seen - classes)
    if unscored:
        raise MedcoreError(
            f"True labels in '{columns.label_column}' of {name} have no probability column '{prefix}<label>': "
            f"{show_labels(unscored, y_true)}. Give one probability column per class."
        )
    return classes


def natural_order(labels) -> list[str]:
    """Integers in numeric order ('2' before '10'), otherwise text order. Binary tasks: the second is positive."""
    labels = list(labels)
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def read_probabilities(proba: pd.DataFrame, labels: list[str], prefix: str, name: str) -> np.ndarray:
    """(n, K) probabilities in class order, checked (NaN, range, rows summing to 1)."""
    numeric = proba.apply(pd.to_numeric, errors="coerce")
    text = np.flatnonzero((numeric.isna() & proba.notna()).any(axis=1).to_numpy())
    if text.size:
        raise MedcoreError(f"Probability columns '{prefix}*' of {name} hold non-numbers in {describe_rows(text)}.")
    if len(numeric.columns) == 1:  # two classes, only the positive class's column given
        given = numeric.columns[0]
        numeric[next(label for label in labels if label != given)] = 1.0 - numeric[given]
    where = f"Probability columns {', '.join(prefix + label for label in labels)} of {name}"
    return check_probabilities(numeric[labels].to_numpy(dtype=float), len(labels), where=where)


def encode(values: np.ndarray, labels: list[str]) -> np.ndarray:
    index = {label: code for code, label in enumerate(labels)}
    return np.array([index[v] for v in values], dtype=np.int64)


def subgroup_values(series: pd.Series, column: str, name: str) -> np.ndarray:
    """Each row's subgroup as text; empty or missing cells -> '(missing)'."""
    present = series.notna().to_numpy()
    values = np.full(len(series), MISSING, dtype=object)
    values[present] = as_text(series[present])
    values[values == ""] = MISSING
    distinct = len(set(values))
    if distinct > MAX_CATEGORIES:
        raise MedcoreError(
            f"Subgroup column '{column}' of {name} has {distinct} distinct values; a subgroup column holds a "
            f"few categories (at most {MAX_CATEGORIES}), like sex or age band. Bin it or pick another column."
        )
    return values


def group_rows(values: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of each subgroup value, values in natural order and '(missing)' last."""
    present = natural_order({v for v in values if v != MISSING})
    order = present + ([MISSING] if (values == MISSING).any() else [])
    return {value: np.flatnonzero(values == value) for value in order}
