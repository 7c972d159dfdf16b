"""Read an upload (CSV, JSON, JSONL, Parquet or a Hugging Face datasets folder) into a pandas DataFrame.

Errors name the file, the line or byte at fault and the fix; they never quote the file's content,
because an upload is patient text until proven otherwise.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import IO

import pandas as pd

from medcore.data.csv_check import check_csv_structure
from medcore.errors import MedcoreError

MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # the console's upload limit; bigger sets belong in a folder import
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FOLDER_PATTERNS = ("*.parquet", "*.jsonl", "*.json", "*.csv")

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]


def detect_format(file_name: str) -> str:
    """The upload format for `file_name`'s extension ('csv', 'tsv', 'json', 'jsonl', 'parquet')."""
    suffix = Path(file_name).suffix.lower()
    if suffix not in FORMATS:
        raise MedcoreError(
            f"Cannot read '{Path(file_name).name}': unsupported extension '{suffix or '(none)'}'. "
            f"Upload one of: {', '.join(sorted(FORMATS))}, or a Hugging Face datasets folder."
        )
    return FORMATS[suffix]


def read_upload(source: Source, file_name: str | None = None) -> pd.DataFrame:
    """Read an uploaded file (path or bytes) or a datasets folder into a DataFrame.

    Args:
        source: a file path, a folder path (HF `save_to_disk` folder or a folder of parquet/jsonl/json/csv
            files), raw bytes, or a binary file object (e.g. Streamlit's UploadedFile).
        file_name: the upload's name; required with bytes, it picks the format by extension.

    Raises:
        MedcoreError: unsupported extension, over 200 MB, empty, not UTF-8, malformed (with line number).
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        if path.is_dir():
            return read_folder(path)
        check_input_file(path, decode_text=False)
        name = file_name or path.name
        fmt = detect_format(name)
        check_size(path.stat().st_size, name)
        data = path.read_bytes()
    else:
        if not file_name:
            raise MedcoreError("An upload given as bytes needs its file name (e.g. 'notes.csv') to pick the format.")
        name, fmt = file_name, detect_format(file_name)
        data = bytes(source) if not hasattr(source, "read") else source.read()
        check_size(len(data), name)
    return parse_bytes(data, fmt, Path(name).name)


DECODE_CHUNK = 1 << 20  # bytes decoded at a time while checking a text file's encoding


def check_input_file(path: Path, decode_text: bool = True) -> str:
    """The one check of an input file that import and redaction share; returns its format.

    The same bad file gets the same message whichever command reads it, before anything is written or audited.
    decode_text=False leaves the text checks (UTF-8, rows) to a caller that decodes the whole file anyway
    (read_upload's parse_bytes, with the same messages), so a large upload is not decoded twice.

    Raises:
        MedcoreError: missing, not a file, unknown extension, empty, a damaged or row-less Parquet file, text that
            is not UTF-8 (with the byte offset and line), whitespace only, or a CSV/TSV with a header and no row.
    """
    if not path.exists():
        raise MedcoreError(f"File {path} does not exist. Check the path or upload the file.")
    if not path.is_file():
        raise MedcoreError(f"{path} is not a file. Give a CSV, TSV, JSON, JSONL or Parquet file.")
    fmt = detect_format(path.name)
    if path.stat().st_size == 0:
        raise MedcoreError(f"'{path.name}' is empty (0 bytes). Export the data again and re-upload.")
    if fmt == "parquet":
        rows = parquet_rows(path)  # the footer only: cheap
    elif not decode_text:
        return fmt
    else:
        rows = text_lines_with_content(path)
        rows -= 1 if fmt in ("csv", "tsv") else 0  # the header
    if rows <= 0:
        raise MedcoreError(f"'{path.name}' has no rows. Check that the export included the data, not only a header.")
    return fmt


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a damaged or truncated file
        raise MedcoreError(
            f"'{path.name}' is not a readable Parquet file ({type(exc).__name__}): it may be truncated. "
            "Export it again."
        ) from None


def text_lines_with_content(path: Path) -> int:
    """Lines holding more than whitespace; the whole file is decoded as UTF-8 on the way (in chunks)."""
    import codecs

    decoder, lines, offset, line_number = codecs.getincrementaldecoder("utf-8-sig")(), 0, 0, 1
    with open(path, "rb") as handle:
        while chunk := handle.read(DECODE_CHUNK):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = line_number + chunk[: exc.start].count(b"\n")
                raise MedcoreError(
                    f"'{path.name}' is not UTF-8 text: undecodable byte at offset {offset + exc.start} (line {line}). "
                    "Re-save it as UTF-8 (Excel: 'CSV UTF-8'; iconv -f cp1252 -t utf-8)."
                ) from None
            lines += sum(1 for line in text.splitlines() if line.strip())
            offset += len(chunk)
            line_number += chunk.count(b"\n")
        decoder.decode(b"", final=True)
    if not lines:
        raise MedcoreError(f"'{path.name}' holds only whitespace. Export the data again and re-upload.")
    return lines


def check_size(size: int, name: str) -> None:
    if size == 0:
        raise MedcoreError(f"'{name}' is empty (0 bytes). Export the data again and re-upload.")
    if size > MAX_UPLOAD_BYTES:
        raise MedcoreError(
            f"'{name}' is {size / 2**20:.0f} MB; uploads are limited to {MAX_UPLOAD_BYTES // 2**20} MB. "
            "Split it into several files inside one folder and import the folder."
        )


def parse_bytes(data: bytes, fmt: str, name: str) -> pd.DataFrame:
    """Parse one file's bytes; the result has at least one row and one column."""
    if fmt == "parquet":
        frame = _read_parquet(data, name)
    else:
        text = _decode(data, name)
        if not text.strip():
            raise MedcoreError(f"'{name}' holds only whitespace. Export the data again and re-upload.")
        if fmt in ("csv", "tsv"):
            frame = _read_csv(text, name, sep="," if fmt == "csv" else "\t")
        elif fmt == "json":
            frame = _read_json(text, name)
        else:
            frame = pd.DataFrame.from_records(_parse_jsonl(text, name))
    if frame.empty:
        raise MedcoreError(f"'{name}' has no rows. Check that the export included the data, not only a header.")
    return frame


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # -sig: Excel writes a byte-order mark before UTF-8 CSVs
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MedcoreError(
            f"'{name}' is not UTF-8 text: undecodable byte at offset {exc.start} (line {line}). "
            "Re-save it as UTF-8 (Excel: 'CSV UTF-8'; iconv -f cp1252 -t utf-8)."
        ) from None


def _read_csv(text: str, name: str, sep: str) -> pd.DataFrame:
    check_csv_structure(text, name, sep)
    try:
        return pd.read_csv(io.StringIO(text), sep=sep)
    except pd.errors.EmptyDataError:
        raise MedcoreError(f"'{name}' has no columns. Export it with a header row.") from None
    except pd.errors.ParserError as exc:
        # pandas' tokenizer messages give line numbers and field counts, never cell content.
        detail = str(exc).replace("Error tokenizing data. C error: ", "").strip()
        raise MedcoreError(
            f"'{name}' is not a well-formed {'CSV' if sep == ',' else 'TSV'} file: {detail}. "
            "Quote fields that contain the separator or line breaks, then re-export."
        ) from None


def _read_json(text: str, name: str) -> pd.DataFrame:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            # Several top-level objects, one per line: it is JSON Lines with a .json extension.
            return pd.DataFrame.from_records(_parse_jsonl(text, name))
        raise MedcoreError(
            f"'{name}' is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload = payload["data"]
    if not isinstance(payload, list):
        raise MedcoreError(
            f"'{name}' must hold a list of records ([{{...}}, ...]) or {{\"data\": [...]}}; "
            f"found a top-level {type(payload).__name__}."
        )
    bad = next((i for i, rec in enumerate(payload) if not isinstance(rec, dict)), None)
    if bad is not None:
        raise MedcoreError(f"'{name}': record {bad + 1} is a {type(payload[bad]).__name__}, not an object.")
    return pd.DataFrame.from_records(payload)


def _parse_jsonl(text: str, name: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MedcoreError(
                f"'{name}': line {number} is not valid JSON ({exc.msg} at column {exc.colno}). "
                "Each line of a JSONL file must be one complete JSON object."
            ) from None
        if not isinstance(record, dict):
            raise MedcoreError(f"'{name}': line {number} is a {type(record).__name__}, not a JSON object.")
        records.append(record)
    return records


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise MedcoreError(
            f"'{name}' is not a readable Parquet file ({type(exc).__name__}). Re-export it or upload CSV/JSONL."
        ) from None


def read_folder(folder: Path) -> pd.DataFrame:
    """A Hugging Face `save_to_disk` folder (Dataset or DatasetDict), or a folder of data files."""
    if (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists():
        return _read_hf_saved(folder)
    files = sorted({p for pattern in FOLDER_PATTERNS for p in folder.rglob(pattern) if not _hidden(p, folder)})
    if not files:
        raise MedcoreError(
            f"Folder {folder} holds no dataset: expected a Hugging Face save_to_disk folder or "
            f"{', '.join(FOLDER_PATTERNS)} files."
        )
    check_size(sum(p.stat().st_size for p in files), folder.name)
    frames = [parse_bytes(p.read_bytes(), detect_format(p.name), str(p.relative_to(folder))) for p in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _read_hf_saved(folder: Path) -> pd.DataFrame:
    """Load with `datasets.load_from_disk` (local files only); a DatasetDict's splits are concatenated."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    check_size(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()), folder.name)
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise MedcoreError(
            f"Folder {folder} looks like a Hugging Face datasets folder but cannot be loaded "
            f"({type(exc).__name__}). Save it again with Dataset.save_to_disk."
        ) from None
    parts = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
    frames = [part.to_pandas() for part in parts]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.empty:
        raise MedcoreError(f"The datasets folder {folder} has no rows.")
    return frame
