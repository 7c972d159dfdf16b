"""DuckDB views over the workspace files, and `connect()` for notebooks: in-memory, read-only, never blocking.

Decision: the workspace files are the source of truth (datasets/*/manifest.json, runs/*/spec.json,
status.json, launch.json, metrics.jsonl, audit/*.jsonl). Each process queries them through its own
in-memory DuckDB connection, so there is no shared database file to lock: any number of readers and
writers in any processes work at once. catalog.duckdb is only a snapshot for outside tools
(see medcore.store.catalog).

Views re-read the files on every query (new rows and new runs appear). A view whose files did not
exist at connect time is empty until `create_views(con, ws)` is called again.
"""

from __future__ import annotations

import duckdb

from medcore.workspace import Workspace, get_workspace

EVALS_SCHEMA = (
    "eval_id VARCHAR, run_id VARCHAR, dataset VARCHAR, split VARCHAR, metric VARCHAR, value DOUBLE, "
    "ci_low DOUBLE, ci_high DOUBLE, subgroup VARCHAR, created_at TIMESTAMP WITH TIME ZONE"
)
# JSON, Parquet and ICU are built into the wheel; never let DuckDB fetch an extension over the network.
DUCKDB_CONFIG = {"autoinstall_known_extensions": False}
_EMPTY_OBJECTS = "(SELECT NULL::VARCHAR AS filename, NULL::JSON AS json WHERE false)"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _objects(ws: Workspace, folder: str, pattern: str) -> str:
    """read_json_objects over a glob, or an empty relation of the same shape when nothing matches yet."""
    base = ws.root / folder
    if not base.exists() or not any(base.glob(pattern)):
        return _EMPTY_OBJECTS
    return f"read_json_objects({_quote(str(base / pattern))}, filename=true, ignore_errors=true)"


def _folder_name(file: str) -> str:
    """SQL for the name of the folder holding `file` (the run id or dataset name)."""
    return f"regexp_extract({file}, '([^/\\\\]+)[/\\\\][^/\\\\]+$', 1)"


def datasets_sql(ws: Workspace) -> str:
    source = _objects(ws, "datasets", "*/manifest.json")
    return f"""
        SELECT json->>'name' AS name,
               parse_dirpath(filename) AS path,
               coalesce((json->'rows'->>'train')::BIGINT, 0) + coalesce((json->'rows'->>'validation')::BIGINT, 0)
                 + coalesce((json->'rows'->>'test')::BIGINT, 0) AS rows,
               json->'rows' AS split_rows,
               json->'columns' AS schema,
               json->>'content_hash' AS content_hash,
               json->'redaction'->>'status' AS redaction_status,
               json->'redaction'->>'parent' AS redaction_parent,
               json->>'task' AS task,
               json->'label_set' AS label_set,
               json->>'source_file' AS source_file,
               to_timestamp((json->>'created_at')::DOUBLE) AS created_at
        FROM {source}"""


def runs_sql(ws: Workspace) -> str:
    spec = _objects(ws, "runs", "*/spec.json")
    status = _objects(ws, "runs", "*/status.json")
    launch = _objects(ws, "runs", "*/launch.json")
    return f"""
        WITH spec AS (SELECT {_folder_name("filename")} AS id, json FROM {spec}),
             status AS (SELECT {_folder_name("filename")} AS id, json FROM {status}),
             launch AS (SELECT {_folder_name("filename")} AS id, json FROM {launch})
        SELECT id,
               spec.json AS spec,
               coalesce(status.json->>'state', CASE WHEN launch.json IS NULL THEN 'unknown' ELSE 'queued' END) AS state,
               coalesce(spec.json->>'model', spec.json->'model'->>'name') AS model,
               spec.json->>'task' AS task,
               coalesce(spec.json->>'lora_preset', spec.json->'lora'->>'preset') AS lora_preset,
               coalesce(spec.json->>'zero_preset', spec.json->'deepspeed'->>'preset') AS zero_preset,
               (status.json->>'step')::BIGINT AS step,
               (status.json->>'max_steps')::BIGINT AS max_steps,
               to_timestamp((launch.json->>'queued_at')::DOUBLE) AS created_at,
               to_timestamp((launch.json->>'started_at')::DOUBLE) AS started_at,
               to_timestamp((status.json->>'ended_at')::DOUBLE) AS ended_at,
               status.json->>'error' AS error
        FROM spec FULL OUTER JOIN status USING (id) LEFT JOIN launch USING (id)"""


def _jsonl(ws: Workspace, folder: str, pattern: str) -> str | None:
    base = ws.root / folder
    if not base.exists() or not any(p.stat().st_size for p in base.glob(pattern)):
        return None
    return (
        f"read_json({_quote(str(base / pattern))}, format='newline_delimited', union_by_name=true, "
        "ignore_errors=true, filename=true)"
    )


def metrics_sql(ws: Workspace) -> str:
    """Every run's metrics.jsonl: a half-written last line or a new column never breaks a query."""
    source = _jsonl(ws, "runs", "*/metrics.jsonl")
    if source is None:
        return "SELECT NULL::VARCHAR AS run_id, NULL::BIGINT AS step WHERE false"
    return f"SELECT {_folder_name('filename')} AS run_id, * EXCLUDE (filename) FROM {source} WHERE step IS NOT NULL"


def audit_sql(ws: Workspace) -> str:
    source = _jsonl(ws, "audit", "*.jsonl")
    if source is None:
        return "SELECT NULL::VARCHAR AS filename WHERE false"
    return f"SELECT * FROM {source}"


def create_views(con: duckdb.DuckDBPyConnection, ws: Workspace) -> duckdb.DuckDBPyConnection:
    """(Re)create the views datasets, runs, metrics, audit and the (empty for now) evals table."""
    for name, sql in (
        ("datasets", datasets_sql(ws)),
        ("runs", runs_sql(ws)),
        ("metrics", metrics_sql(ws)),
        ("audit", audit_sql(ws)),
    ):
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
    con.execute(f"CREATE TABLE IF NOT EXISTS evals ({EVALS_SCHEMA})")
    return con


def connect(ws: Workspace | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the workspace, for notebooks and ad-hoc SQL.

    It holds no lock on any workspace file, so it never blocks a job, the console or another notebook:
        con = medcore.store.connect(); con.sql("SELECT run_id, max(step) FROM metrics GROUP BY 1").df()
    """
    ws = ws or get_workspace(create=False)
    con = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
    con.execute("SET TimeZone = 'UTC'")
    return create_views(con, ws)
