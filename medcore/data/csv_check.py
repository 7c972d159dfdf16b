"""Catch a broken CSV before pandas quietly reshapes it: ragged rows, and a stray quote that swallows records.

pandas pads a row with too few fields with empty values, and an unclosed quote turns the following lines into one
cell: both import "successfully" and surface later as a puzzling label or split error with no row number. Here
every record is checked against the header with Python's csv module (the same quoting rules), and the message
names the rows and lines at fault, never their content.
"""

from __future__ import annotations

import csv
import io

from medcore.errors import MedcoreError

SHOWN = 5  # rows listed in a message
# A quoted cell holding this many lines that each look like a whole record (exactly one separator between every
# two columns) was almost certainly opened by a stray quote: a note's own lines rarely match the header's shape
# three times over.
SWALLOWED_LINES = 3


def check_csv_structure(text: str, name: str, sep: str = ",") -> None:
    """Raise MedcoreError when a record's field count differs from the header's, or a quote runs over records.

    Row numbers count data rows from 1 (the header is row 0); line numbers are the file's physical lines.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    kind = "CSV" if sep == "," else "TSV"
    try:
        header = next(reader, None)
        if header is None:
            return
        width, ragged, swallowed, start, row = len(header), [], [], reader.line_num + 1, 0
        for row, fields in enumerate(reader, start=1):
            end = reader.line_num
            if fields and len(fields) != width:
                ragged.append((row, start, end, len(fields)))
            elif width >= 3 and swallowed_records(fields, sep, width):
                swallowed.append((row, start, end))
            start = end + 1
    except csv.Error as exc:  # e.g. an unclosed quote at the end of the file; the message holds no content
        raise MedcoreError(
            f"'{name}' is not a well-formed {kind} file: {exc} (line {reader.line_num}, in the record that starts "
            f"on line {start}, row {row + 1}). A quote opened in that record is not closed where a field ends: "
            "close it, or double quotes inside a value (\"\"), then re-export."
        ) from None
    if ragged:
        listed = "; ".join(f"row {r} (line{lines(a, b)}) has {n}" for r, a, b, n in ragged[:SHOWN])
        more = f" and {len(ragged) - SHOWN} more rows" if len(ragged) > SHOWN else ""
        raise MedcoreError(
            f"'{name}' has rows whose field count differs from its header's {width}: {listed}{more}. A stray quote "
            "or an unquoted separator inside a value shifts the columns; fix those rows or re-export with every "
            "text field quoted."
        )
    if swallowed:
        listed = "; ".join(f"row {r} (lines {a}-{b})" for r, a, b in swallowed[:SHOWN])
        raise MedcoreError(
            f"'{name}' has a quoted value that runs over several lines shaped like whole records: {listed}. A quote "
            "opened there was never closed, so the records after it were read as one cell. Close or double the "
            "quote, then re-export."
        )


def swallowed_records(fields: list[str], sep: str, width: int) -> bool:
    """Whether a cell holds SWALLOWED_LINES or more lines with a separator for every column (whole records)."""
    for cell in fields:
        if "\n" in cell:
            lines_like_records = sum(1 for line in cell.split("\n") if line.count(sep) == width - 1)
            if lines_like_records >= SWALLOWED_LINES:
                return True
    return False


def lines(first: int, last: int) -> str:
    return f" {first}" if first == last else f"s {first}-{last}"
