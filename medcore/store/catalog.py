"""The Runs list (`runs_table`) and catalog.duckdb, a snapshot of datasets/runs/evals for outside tools.

catalog.duckdb is derived from the workspace files and can be rebuilt at any time. DuckDB lets one
process hold a database file, and then no other process can open it, even read-only; so a sync opens
it, replaces the tables in one short transaction, closes it, and retries with backoff while another
process holds it. MedCore itself never reads it (see medcore.store.views for the live views).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pandas as pd

from medcore.errors import MedcoreError
from medcore.rundir import FINAL_STATES, RunDir, read_json
from medcore.store.live_metrics import PARQUET_NAME, best_metric, compact_run_metrics, read_run_metrics
from medcore.store.views import DUCKDB_CONFIG, datasets_sql, evals_sql
from medcore.workspace import Workspace, get_workspace

log = logging.getLogger(__name__)
RUN_COLUMNS = [
    "run_id", "state", "model", "task", "dataset", "lora_preset", "zero_preset", "step", "max_steps",
    "best_metric_name", "best_metric", "created_at", "started_at", "ended_at", "error", "hint",
]  # fmt: skip
TABLES = ("datasets", "runs", "evals")
_best_cache: dict[Path, tuple[tuple[int, int], tuple[str | None, float | None]]] = {}


def _spec_field(spec: dict, *paths: str):
    """The first present value among dotted paths (the run spec nests presets; older specs were flat)."""
    for dotted in paths:
        value = spec
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            return value if not isinstance(value, dict) else value.get("name")
    return None


def run_best_metric(rd: RunDir, state: str | None = None) -> tuple[str | None, float | None]:
    """(name, value) of the run's best metric; cached per metrics.jsonl size+mtime, compacting ended runs."""
    try:
        stat = rd.metrics.stat()
    except FileNotFoundError:
        return None, None
    key = (stat.st_size, stat.st_mtime_ns)
    cached = _best_cache.get(rd.metrics)
    if cached and cached[0] == key:
        return cached[1]
    if state in FINAL_STATES and not (rd.path / PARQUET_NAME).exists():
        try:  # an ended run nobody compacted yet: do it once so later cold reads are Parquet-fast
            compact_run_metrics(rd)
        except OSError as exc:
            log.warning("cannot compact metrics of run %s: %s", rd.run_id, exc.strerror)
    result = best_metric(read_run_metrics(rd))
    _best_cache[rd.metrics] = (key, result)
    return result


def runs_table(ws: Workspace | None = None) -> pd.DataFrame:
    """One row per run folder (newest first), from spec.json, status.json, launch.json and the metrics.

    State is as recorded in status.json; `medcore.jobs` additionally checks process liveness.
    """
    ws = ws or get_workspace(create=False)
    folders = [p for p in ws.runs.iterdir() if p.is_dir() and not p.name.startswith(".")] if ws.runs.exists() else []
    rows = []
    for folder in folders:
        rd = RunDir(folder)
        spec, status, launch = (read_json(p, default={}) or {} for p in (rd.spec, rd.status, rd.launch))
        if not (spec or status or launch):
            continue  # a folder still being created
        state = status.get("state") or ("queued" if launch else "unknown")
        name, value = (status.get("best_metric_name"), status.get("best_metric"))
        if value is None:
            name, value = run_best_metric(rd, state)
        rows.append(
            {
                "run_id": rd.run_id,
                "state": state,
                "model": _spec_field(spec, "model", "model.name"),
                "task": _spec_field(spec, "task"),
                "dataset": _spec_field(spec, "dataset", "data.dataset"),
                "lora_preset": _spec_field(spec, "lora_preset", "lora.preset", "lora"),
                "zero_preset": _spec_field(spec, "zero_preset", "deepspeed.preset", "zero"),
                "step": status.get("step"),
                "max_steps": status.get("max_steps"),
                "best_metric_name": name,
                "best_metric": value,
                "created_at": launch.get("queued_at") or rd.path.stat().st_mtime,
                "started_at": launch.get("started_at"),
                "ended_at": status.get("ended_at"),
                "error": status.get("error"),
                "hint": status.get("hint"),
            }
        )
    table = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return table.sort_values("created_at", ascending=False, ignore_index=True) if rows else table


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflict" in text


def sync_catalog(ws: Workspace | None = None, tables: Iterable[str] = TABLES, timeout_s: float = 30.0) -> None:
    """Rebuild `tables` of catalog.duckdb from the workspace files in one short transaction.

    Raises:
        MedcoreError: another process kept the file locked for `timeout_s` (e.g. a DuckDB shell left open).
    """
    ws = ws or get_workspace()
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise MedcoreError(f"Unknown catalog tables {sorted(unknown)}; tables are: {', '.join(TABLES)}.")
    runs = runs_table(ws) if "runs" in tables else None  # built before taking the file: keep the hold short
    deadline, delay = time.monotonic() + timeout_s, 0.01
    while True:
        try:
            _write_catalog(ws, tables, runs)
            return
        except (duckdb.IOException, duckdb.TransactionException) as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                raise MedcoreError(
                    f"Cannot update the catalog {ws.catalog}: another process holds it. Close DuckDB sessions "
                    "opened on that file (use medcore.store.connect() instead, which takes no lock) and retry."
                ) from None
            time.sleep(delay * (0.5 + random.random()))  # jitter: two waiting writers do not retry in lockstep
            delay = min(delay * 2, 0.5)


def refresh_catalog(ws: Workspace, tables: Iterable[str] = TABLES, timeout_s: float = 10.0) -> bool:
    """Best-effort sync_catalog for writers whose files are already the truth (imports, redactions, run ends).

    Returns False (and logs why) when the snapshot could not be updated; the next sync catches up.
    """
    try:
        sync_catalog(ws, tables=tables, timeout_s=timeout_s)
        return True
    except MedcoreError as exc:
        log.warning("catalog snapshot not updated: %s", exc)
        return False


def _write_catalog(ws: Workspace, tables: Iterable[str], runs: pd.DataFrame | None) -> None:
    con = duckdb.connect(str(ws.catalog), config=DUCKDB_CONFIG)
    try:
        con.execute("BEGIN TRANSACTION")
        if "datasets" in tables:
            con.execute(f"CREATE OR REPLACE TABLE datasets AS {datasets_sql(ws)}")
        if runs is not None:
            con.register("runs_frame", runs)
            con.execute("CREATE OR REPLACE TABLE runs AS SELECT * FROM runs_frame")
        create = "CREATE OR REPLACE TABLE evals" if "evals" in tables else "CREATE TABLE IF NOT EXISTS evals"
        con.execute(f"{create} AS {evals_sql(ws)}")  # the table exists whichever tables were asked for
        con.execute("COMMIT")
    finally:
        con.close()
