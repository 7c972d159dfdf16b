"""Live training metrics: read named runs' metrics.jsonl incrementally, and compact them to Parquet at run end.

metrics.jsonl (appended and flushed by rank 0, see medcore.rundir) is the source of truth.
A process keeps, per file, the byte offset it has parsed and the rows so far (Arrow chunks with
their highest step), so a live chart's poll parses only the lines appended since the last one and
touches only chunks past the step it asks from. A half-written last line is left for the next poll;
a line that is not JSON is skipped. metrics.parquet is a compacted copy written when a run ends; its
metadata records how many bytes of the JSONL it covers, so rows appended later (a resumed run) are
read from the JSONL tail.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from medcore.rundir import RunDir
from medcore.workspace import Workspace, get_workspace

PARQUET_NAME = "metrics.parquet"
COVERED_KEY = b"medcore.jsonl_bytes"
HEAD_KEY = b"medcore.jsonl_head_sha256"
HEAD_BYTES = 4096  # a rewritten (not appended) JSONL differs here; then the Parquet copy is stale
CACHE_RUNS = 64  # parsed runs kept per process (~1.5 MB per 10k rows)
MAX_CHUNKS = 32  # small per-poll chunks are merged past this, so a long-lived console stays fast
SMALL_READ = 64 * 1024  # below this, json.loads beats pyarrow's threaded reader's start-up cost
EMPTY = pa.table({"step": pa.array([], pa.int64())})


@dataclass
class _Tail:
    """What one process has parsed of one metrics.jsonl: Arrow chunks and each chunk's highest step."""

    inode: int
    offset: int = 0
    chunks: list[tuple[int, pa.Table]] = field(default_factory=list)

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.chunks.append((pc.max(table["step"]).as_py(), table))
        if len(self.chunks) > MAX_CHUNKS:
            merged = _concat([t for _, t in self.chunks])
            self.chunks = [(pc.max(merged["step"]).as_py(), merged)]

    def rows_after(self, floor: int | None) -> list[pa.Table]:
        if floor is None:
            return [t for _, t in self.chunks]
        return [t.filter(pc.greater(t["step"], floor)) for top, t in self.chunks if top > floor]


_cache: OrderedDict[Path, _Tail] = OrderedDict()
_lock = threading.Lock()  # Streamlit serves sessions from threads of one process


def clear_cache() -> None:
    """Forget what this process has parsed (the next read starts from Parquet/JSONL on disk)."""
    with _lock:
        _cache.clear()


def _concat(tables: list[pa.Table]) -> pa.Table:
    # permissive: a field logged as 2 (int) in one chunk and 1.5 (double) in another becomes double.
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def parse_lines(data: bytes) -> pa.Table:
    """Complete JSONL lines -> an Arrow table. Lines that are not JSON objects with a `step` are dropped."""
    import pyarrow.json as pj

    table = None
    if len(data) > SMALL_READ:
        try:
            table = pj.read_json(io.BytesIO(data))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            table = None  # a corrupt line (e.g. a crash mid-write, then a resume): go line by line
    if table is None:
        records = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int | float):
                records.append(record)
        table = _records_to_table(records) if records else EMPTY
    if "step" not in table.column_names:
        return EMPTY
    table = table.filter(pc.is_valid(table["step"]))
    return table.set_column(table.column_names.index("step"), "step", table["step"].cast(pa.int64()))


def _records_to_table(records: list[dict]) -> pa.Table:
    """Columns are the union of the records' keys (a field may first appear in a later line)."""
    keys = list(dict.fromkeys(key for record in records for key in record))
    columns = {}
    for key in keys:
        values = [record.get(key) for record in records]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. a number in one line, text in another
            columns[key] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(columns)


def _load_compacted(run: RunDir, size: int, head: bytes) -> tuple[pa.Table, int] | None:
    """The Parquet copy and the JSONL bytes it covers, when it matches the JSONL on disk."""
    import pyarrow.parquet as pq

    path = run.path / PARQUET_NAME
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid):
        return None
    meta = table.schema.metadata or {}
    covered = int(meta.get(COVERED_KEY, b"-1"))
    if covered < 0 or covered > size or meta.get(HEAD_KEY) != hashlib.sha256(head[:covered]).hexdigest().encode():
        return None
    return table.replace_schema_metadata(None), covered


def _tail_of(run: RunDir) -> _Tail | None:
    """The run's parse state, brought up to date with the file on disk (call under _lock)."""
    path = run.metrics
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    tail = _cache.get(path)
    if tail is None or tail.inode != stat.st_ino or stat.st_size < tail.offset:
        tail = _Tail(inode=stat.st_ino)
        with open(path, "rb") as fh:
            compacted = _load_compacted(run, stat.st_size, fh.read(HEAD_BYTES))
        if compacted is not None:
            tail.add(compacted[0])
            tail.offset = compacted[1]
    _cache[path] = tail
    _cache.move_to_end(path)
    while len(_cache) > CACHE_RUNS:
        _cache.popitem(last=False)
    if stat.st_size > tail.offset:
        with open(path, "rb") as fh:
            fh.seek(tail.offset)
            data = fh.read(stat.st_size - tail.offset)
        end = data.rfind(b"\n") + 1  # the last line may still be being written
        if end:
            tail.add(parse_lines(data[:end]))
            tail.offset += end
    return tail


def _to_frame(tables: list[pa.Table]) -> pd.DataFrame:
    if not tables:
        return pd.DataFrame({"run_id": pd.Series(dtype="str"), "step": pd.Series(dtype="int64")})
    return _concat(tables).to_pandas()


def read_run_metrics(run: RunDir | Path) -> pd.DataFrame:
    """Every metrics row of one run (step, loss, lr, ... as logged), parsing only what is new since the last call."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    with _lock:
        tail = _tail_of(run)
        tables = tail.rows_after(None) if tail else []
    return _concat(tables).to_pandas() if tables else EMPTY.to_pandas()


def metrics(
    run_ids: list[str] | str,
    since_step: int | dict[str, int] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """Metric rows of the named runs with step > since_step (per run when a dict), for live charts.

    Reads only those runs' files (never a workspace-wide glob). Columns: run_id, step, then whatever
    the trainer logged (epoch, loss, lr, grad_norm, tokens_per_s, ..., eval_*); a field a run never
    logged is NaN. Rows are ordered by run (as given), then as logged. Unknown run ids give no rows.
    """
    ws = ws or get_workspace(create=False)
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    tables = []
    with _lock:
        for run_id in ids:
            tail = _tail_of(RunDir(ws.runs / run_id))
            floor = since_step.get(run_id) if isinstance(since_step, dict) else since_step
            for table in tail.rows_after(floor) if tail else []:
                if table.num_rows:
                    tables.append(table.add_column(0, "run_id", pa.array([run_id] * table.num_rows, pa.string())))
    return _to_frame(tables)


def compact_run_metrics(run_dir: RunDir | Path) -> Path | None:
    """Write runs/<id>/metrics.parquet from metrics.jsonl (atomically); call when a run ends.

    Returns the Parquet path, or None when the run logged nothing. The JSONL is kept: it stays the
    source of truth, and a resumed run appends to it.
    """
    import pyarrow.parquet as pq

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    if not run.metrics.exists():
        return None
    data = run.metrics.read_bytes()
    covered = data.rfind(b"\n") + 1
    table = parse_lines(data[:covered])
    if not table.num_rows:
        return None
    meta = {
        COVERED_KEY: str(covered).encode(),
        HEAD_KEY: hashlib.sha256(data[: min(covered, HEAD_BYTES)]).hexdigest().encode(),
    }
    target = run.path / PARQUET_NAME
    tmp = target.with_name(f".{PARQUET_NAME}.{os.getpid()}.tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    os.replace(tmp, target)
    return target


def best_metric(frame: pd.DataFrame) -> tuple[str | None, float | None]:
    """The run's best value: the lowest eval_loss, else the lowest training loss."""
    for name in ("eval_loss", "loss"):
        if name in frame.columns and frame[name].notna().any():
            return name, float(frame[name].min())
    return None, None
