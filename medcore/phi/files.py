"""Stream records in and out of JSONL, CSV and Parquet files in chunks (a 1 GB file never sits in memory).

Readers yield lists of (row_number, record dict); bad rows (invalid JSON, undecodable bytes) are reported
by row number and skipped, never quoted. `scan_file` reads a file once up front for its columns, their Arrow
types (a JSONL file's keys and types unified over every line) and a sample of values, so the writer's
schema is right from the first chunk. Writers write to a temp file that is renamed on success, so a crash
never leaves a half-written output.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medcore.data.encryption import parquet_source
from medcore.errors import MedcoreError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
Chunk = list[tuple[int, dict]]
SAMPLE_VALUES = 200  # values sampled per column to decide what it holds
SAMPLE_CHARS = 1000  # a sampled string is cut here: enough to judge it, bounded memory for long notes
INT64 = (-(2**63), 2**63 - 1)


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MedcoreError(
            f"Cannot redact '{path.name}': unsupported extension '{path.suffix or '(none)'}'. "
            f"Use one of {', '.join(sorted(FORMATS))} (convert a .json list to .jsonl, one record per line)."
        )
    return fmt


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_chunks(
    path: Path, chunk_rows: int, problems: dict[str, list[int]], columns: list[str] | None = None
) -> Iterator[Chunk]:
    """Records in chunks, each with its 1-based row number; bad rows are noted in `problems` and skipped.

    `columns` reads only those columns of a Parquet file (other formats always give whole records).
    """
    fmt = file_format(path)
    if not path.exists():
        raise MedcoreError(f"Input file {path} does not exist. Check the path.")
    if fmt == "jsonl":
        yield from read_jsonl(path, chunk_rows, problems)
    elif fmt == "csv":
        yield from read_csv(path, chunk_rows, problems)
    else:
        yield from read_parquet(path, chunk_rows, columns)


def read_jsonl(path: Path, chunk_rows: int, problems: dict[str, list[int]]) -> Iterator[Chunk]:
    chunk: Chunk = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.setdefault("not_utf8", []).append(number)
                continue
            except json.JSONDecodeError:
                problems.setdefault("invalid_json", []).append(number)
                continue
            if not isinstance(record, dict):
                problems.setdefault("not_an_object", []).append(number)
                continue
            if b"\\ud" in raw.lower() and not encodable(record):
                # A "\\ud800" escape decodes to a lone surrogate, which no UTF-8 writer accepts.
                record = replace_surrogates(record)
                problems.setdefault("not_utf8_replaced", []).append(number)
            chunk.append((number, record))
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def read_csv(path: Path, chunk_rows: int, problems: dict[str, list[int]]) -> Iterator[Chunk]:
    import pandas as pd

    # Undecodable bytes become U+FFFD (counted per row below) rather than aborting a long run midway.
    reader = pd.read_csv(path, chunksize=chunk_rows, dtype=object, keep_default_na=True, encoding_errors="replace")
    row = 1  # data rows are numbered from 1, after the header line
    try:
        for frame in reader:
            records = frame.to_dict(orient="records")
            chunk = []
            for record in records:
                if any(isinstance(v, str) and "\ufffd" in v for v in record.values()):
                    problems.setdefault("not_utf8_replaced", []).append(row)
                chunk.append((row, record))
                row += 1
            yield chunk
    except pd.errors.ParserError as exc:
        raise MedcoreError(f"{path.name} is not valid CSV near data row {row}: {str(exc).split(':')[0]}.") from None


def read_parquet(path: Path, chunk_rows: int, columns: list[str] | None = None) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    source = parquet_source(path)  # an encrypted raw split is decrypted in memory, never to a file
    try:
        parquet = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise MedcoreError(f"{path.name} is not a readable Parquet file ({type(exc).__name__}).") from None
    row = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        records = batch.to_pylist()
        yield [(row + i, record) for i, record in enumerate(records)]
        row += len(records)


def peek_columns(path: Path) -> list[str] | None:
    """Column names without reading the data (None for JSONL, whose keys may vary by line)."""
    fmt = file_format(path)
    if fmt == "csv":
        import pandas as pd

        return list(pd.read_csv(path, nrows=0, encoding_errors="replace").columns)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(parquet_source(path)).names)
    return None


def encodable(record: dict) -> bool:
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def replace_surrogates(value):
    """`value` with every lone surrogate replaced by U+FFFD (recursively through lists and dicts)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_surrogates(v) for v in value]
    return value


@dataclass
class FileScan:
    """Every column of a file, its Arrow type and up to SAMPLE_VALUES non-missing values (strings cut short)."""

    columns: list[str] = field(default_factory=list)
    types: dict = field(default_factory=dict)
    samples: dict[str, list] = field(default_factory=dict)

    def add(self, column: str, value, sample_size: int) -> None:
        values = self.samples.setdefault(column, [])
        if len(values) < sample_size and not is_missing(value):
            values.append(value[:SAMPLE_CHARS] if isinstance(value, str) else value)


def scan_file(path: Path, sample_size: int = SAMPLE_VALUES, skip: Iterable[str] = ()) -> FileScan:
    """Columns (first-seen order), Arrow types and a value sample of a JSONL/CSV/Parquet file.

    JSONL is read to the end, since any line may add a key or change a type; CSV and Parquet stop once every
    column has its sample. Columns in `skip` (the notes themselves) are not sampled.
    """
    fmt = file_format(path)
    if not path.exists():
        raise MedcoreError(f"Input file {path} does not exist. Check the path.")
    skip = set(skip)
    if fmt == "jsonl":
        return scan_jsonl(path, sample_size, skip)
    import pyarrow as pa

    if fmt == "csv":
        scan = FileScan(columns=list(map(str, peek_columns(path))))
        scan.types = {c: pa.string() for c in scan.columns}  # read as text, as read_csv does: "007" stays "007"
    else:
        schema = read_parquet_schema(path)
        scan = FileScan(columns=list(schema.names), types={f.name: f.type for f in schema})
    wanted = [c for c in scan.columns if c not in skip]
    if sample_size and wanted:
        for chunk in read_chunks(path, 1024, {}, columns=wanted if fmt == "parquet" else None):
            for _, record in chunk:
                for column in wanted:
                    scan.add(column, record.get(column), sample_size)
            if all(len(scan.samples.get(c, ())) >= sample_size for c in wanted):
                break
    return scan


def scan_jsonl(path: Path, sample_size: int, skip: set[str]) -> FileScan:
    scan, kinds = FileScan(), {}
    for chunk in read_jsonl(path, 4096, {}):
        for _, record in chunk:
            for key, value in record.items():
                key = str(key)
                kinds[key] = merge_kinds(kinds.get(key, "null"), value_kind(value))
                if key not in skip:
                    scan.add(key, value, sample_size)
    scan.columns = list(kinds)
    scan.types = {k: kind_type(kind) for k, kind in kinds.items()}
    return scan


def value_kind(value) -> str:
    """JSON value -> one of null, bool, int, float, str, nested (ints beyond int64 count as text)."""
    if is_missing(value):
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if INT64[0] <= value <= INT64[1] else "str"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dict | list):
        return "nested"
    return "str"


def merge_kinds(a: str, b: str) -> str:
    """Type promotion over a column's values: null -> the other; int + float -> float; any other mix -> str."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    return "float" if {a, b} == {"int", "float"} else "str"


def kind_type(kind: str):
    import pyarrow as pa

    # Nested JSON is stored as its JSON text (a struct schema cannot follow keys that vary by line).
    return {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}.get(kind, pa.string())


def read_parquet_schema(path: Path):
    import pyarrow.parquet as pq

    source = parquet_source(path)
    try:
        return pq.read_schema(source)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise MedcoreError(f"{path.name} is not a readable Parquet file ({type(exc).__name__}).") from None


def stringify(value):
    """The text form a mixed column stores: numbers as written, nested values as JSON, missing stays None."""
    if is_missing(value) or isinstance(value, str):
        return None if is_missing(value) else value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


SPAN_FIELDS = (("start", "int64"), ("end", "int64"), ("type", "string"), ("score", "float64"))


def span_type():
    import pyarrow as pa

    return pa.list_(pa.struct([(name, pa.type_for_alias(kind)) for name, kind in SPAN_FIELDS]))


class ChunkWriter:
    """Writes chunks of records to `<out>.tmp-<pid>` under a fixed Arrow schema (its names are the CSV header);
    `commit` renames it into place, `abort` deletes it."""

    def __init__(self, path: Path, schema, span_fields: Iterable[str] = ()):
        self.path, self.fmt, self.schema, self.span_fields = path, file_format(path), schema, set(span_fields)
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.tmp, "wb") if self.fmt == "jsonl" else None
        self.parquet_writer = None
        self.csv_header_written = False

    def write(self, records: list[dict], rows: list[int] | None = None) -> None:
        if not records:
            return
        if self.fmt == "jsonl":
            self.handle.write(
                b"".join(json.dumps(r, ensure_ascii=False, default=str).encode() + b"\n" for r in records)
            )
        elif self.fmt == "csv":
            self.write_csv(records)
        else:
            self.write_parquet(records, rows or list(range(1, len(records) + 1)))

    def write_csv(self, records: list[dict]) -> None:
        import pandas as pd

        rows = [{k: json.dumps(v) if k in self.span_fields else v for k, v in r.items()} for r in records]
        frame = pd.DataFrame(rows, columns=self.schema.names)
        frame.to_csv(self.tmp, mode="a", header=not self.csv_header_written, index=False)
        self.csv_header_written = True

    def write_parquet(self, records: list[dict], rows: list[int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.parquet_writer is None:
            self.parquet_writer = pq.ParquetWriter(self.tmp, self.schema)
        arrays = [column_array(f, [r.get(f.name) for r in records], rows) for f in self.schema]
        self.parquet_writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def commit(self) -> None:
        if self.fmt == "parquet" and self.parquet_writer is None:  # no records: a valid, empty Parquet file
            import pyarrow.parquet as pq

            pq.write_table(self.schema.empty_table(), self.tmp)
        if self.fmt == "csv" and not self.csv_header_written:
            import pandas as pd

            pd.DataFrame(columns=self.schema.names).to_csv(self.tmp, index=False)
        self.close()
        os.replace(self.tmp, self.path)

    def close(self) -> None:
        if self.handle:
            self.handle.close()
            self.handle = None
        if self.parquet_writer:
            self.parquet_writer.close()
            self.parquet_writer = None

    def abort(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)


def column_array(arrow_field, values: list, rows: list[int]):
    """One column as an Arrow array of its schema type; text columns take any value in its text form."""
    import pyarrow as pa

    if pa.types.is_string(arrow_field.type) or pa.types.is_large_string(arrow_field.type):
        values = [stringify(v) for v in values]
    try:
        return pa.array(values, type=arrow_field.type, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        for row, value in zip(rows, values, strict=True):
            try:
                pa.array([value], type=arrow_field.type, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                raise MedcoreError(
                    f"Row {row}, column '{arrow_field.name}': a {type(value).__name__} value cannot be stored as "
                    f"{arrow_field.type} like the rest of the column. Fix that cell, or mark the column for --drop."
                ) from None
        raise
