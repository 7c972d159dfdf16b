"""Stream records in and out of JSONL, CSV and Parquet files in chunks (a 1 GB file never sits in memory).

Readers yield lists of (row_number, record dict); bad rows (invalid JSON, undecodable bytes) are reported
by row number and skipped, never quoted. Writers write to a temp file that is renamed on success, so a
crash never leaves a half-written output.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

from medcore.errors import MedcoreError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
Chunk = list[tuple[int, dict]]


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


def read_chunks(path: Path, chunk_rows: int, problems: dict[str, list[int]]) -> Iterator[Chunk]:
    """Records in chunks, each with its 1-based row number; bad rows are noted in `problems` and skipped."""
    fmt = file_format(path)
    if not path.exists():
        raise MedcoreError(f"Input file {path} does not exist. Check the path.")
    if fmt == "jsonl":
        yield from read_jsonl(path, chunk_rows, problems)
    elif fmt == "csv":
        yield from read_csv(path, chunk_rows, problems)
    else:
        yield from read_parquet(path, chunk_rows)


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


def read_parquet(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise MedcoreError(f"{path.name} is not a readable Parquet file ({type(exc).__name__}).") from None
    row = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows):
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

        return list(pq.read_schema(path).names)
    return None


class ChunkWriter:
    """Writes chunks of records to `<out>.tmp-<pid>`; `commit` renames it into place, `abort` deletes it."""

    def __init__(self, path: Path, span_fields: list[str]):
        self.path, self.fmt, self.span_fields = path, file_format(path), span_fields
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.tmp, "wb") if self.fmt == "jsonl" else None
        self.parquet_writer = None
        self.csv_header_written = False

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        if self.fmt == "jsonl":
            self.handle.write(
                b"".join(json.dumps(r, ensure_ascii=False, default=str).encode() + b"\n" for r in records)
            )
        elif self.fmt == "csv":
            self.write_csv(records)
        else:
            self.write_parquet(records)

    def write_csv(self, records: list[dict]) -> None:
        import pandas as pd

        rows = [{k: json.dumps(v) if k in self.span_fields else v for k, v in r.items()} for r in records]
        pd.DataFrame(rows).to_csv(self.tmp, mode="a", header=not self.csv_header_written, index=False)
        self.csv_header_written = True

    def write_parquet(self, records: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        span_type = pa.list_(
            pa.struct([("start", pa.int64()), ("end", pa.int64()), ("type", pa.string()), ("score", pa.float64())])
        )
        columns = {k: [r.get(k) for r in records] for k in records[0]}
        if self.parquet_writer is None:
            fields = [pa.field(k, span_type if k in self.span_fields else infer_type(v)) for k, v in columns.items()]
            self.schema = pa.schema(fields)
            self.parquet_writer = pq.ParquetWriter(self.tmp, self.schema)
        table = pa.Table.from_pydict(
            {f.name: columns.get(f.name, [None] * len(records)) for f in self.schema}, schema=self.schema
        )
        self.parquet_writer.write_table(table)

    def commit(self) -> None:
        self.close()
        if not self.tmp.exists():  # no records at all: still produce an (empty) output file
            self.tmp.write_bytes(b"")
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


def infer_type(values: list):
    import pyarrow as pa

    kind = pa.array([v for v in values if not is_missing(v)] or [None], from_pandas=True).type
    return pa.string() if pa.types.is_null(kind) else kind
