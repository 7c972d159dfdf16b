"""DuckDB views over the workspace files, and `connect()` for notebooks: in-memory, read-only, never blocking.

Decision: the workspace files are the source of truth (datasets/*/manifest.json, runs/*/spec.json,
status.json, launch.json, metrics.jsonl, audit/*.jsonl, evals/*/config.json and result.json, reviews/*/review.json
and verdicts.jsonl). Each process queries them through its own
in-memory DuckDB connection, so there is no shared database file to lock: any number of readers and
writers in any processes work at once. catalog.duckdb is only a snapshot for outside tools
(see medcore.store.catalog).

Views re-read the files on every query (new rows and new runs appear). A view whose files did not
exist at connect time is empty until `create_views(con, ws)` is called again.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from medcore.workspace import Workspace, get_workspace

# The eval and review folder contracts live in medcore.evaluate.results and medcore.evaluate.review, a layer above
# the store; these names must equal theirs (tests/test_store_evals.py checks it).
EVALS_DIR, EVAL_CONFIG, EVAL_RESULT, EVAL_COMPARISON = "evals", "config.json", "result.json", "comparison.json"
REVIEWS_DIR, REVIEW_MANIFEST, REVIEW_VERDICTS = "reviews", "review.json", "verdicts.jsonl"
LISTED_METRICS = ("accuracy", "macro_f1", "auroc")  # an eval's headline figures, each with its 95% CI
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
               -- a RunSpec holds the preset names as plain strings (lora, zero); older specs nested them
               coalesce(spec.json->>'lora_preset', CASE WHEN json_type(spec.json->'lora') = 'VARCHAR'
                        THEN spec.json->>'lora' END, spec.json->'lora'->>'preset') AS lora_preset,
               coalesce(spec.json->>'zero_preset', CASE WHEN json_type(spec.json->'zero') = 'VARCHAR'
                        THEN spec.json->>'zero' END, spec.json->'deepspeed'->>'preset') AS zero_preset,
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


def evals_sql(ws: Workspace) -> str:
    """One row per complete eval folder (config.json and result.json; unfinished .tmp- folders are skipped), with
    each of LISTED_METRICS and its 95% interval as <name>, <name>_low, <name>_high."""
    config = _objects(ws, EVALS_DIR, f"*/{EVAL_CONFIG}")
    result = _objects(ws, EVALS_DIR, f"*/{EVAL_RESULT}")
    comparison = _objects(ws, EVALS_DIR, f"*/{EVAL_COMPARISON}")
    metrics = ",\n".join(
        f"(result.json->'metrics'->'{name}'->>'{key}')::DOUBLE AS {name}{suffix}"
        for name in LISTED_METRICS
        for key, suffix in (("value", ""), ("ci_low", "_low"), ("ci_high", "_high"))
    )
    return f"""
        WITH config AS (SELECT {_folder_name("filename")} AS eval_id, filename, json FROM {config}),
             result AS (SELECT {_folder_name("filename")} AS eval_id, json FROM {result}),
             comparison AS (SELECT DISTINCT {_folder_name("filename")} AS eval_id FROM {comparison})
        SELECT eval_id,
               to_timestamp((config.json->>'created_at')::DOUBLE) AS created_at,
               config.json->>'model' AS model,
               config.json->'model_identity'->>'kind' AS model_kind,
               config.json->'model_identity'->>'run_id' AS run_id,
               config.json->>'dataset' AS dataset,
               config.json->>'split' AS split,
               (result.json->>'n')::BIGINT AS n,
               comparison.eval_id IS NOT NULL AS compared,
               {metrics},
               parse_dirpath(config.filename) AS path
        FROM config JOIN result USING (eval_id) LEFT JOIN comparison USING (eval_id)
        WHERE NOT starts_with(eval_id, '.')"""


def reviews_sql(ws: Workspace) -> str:
    """One row per review: items, verdicts (each reviewer's latest on an item counts once), reviewers, closed."""
    manifest = _objects(ws, REVIEWS_DIR, f"*/{REVIEW_MANIFEST}")
    verdicts = _jsonl(ws, REVIEWS_DIR, f"*/{REVIEW_VERDICTS}")
    if verdicts is None:
        verdicts = "(SELECT NULL::VARCHAR AS filename, NULL::VARCHAR AS reviewer, NULL::BIGINT AS item WHERE false)"
    return f"""
        WITH manifest AS (SELECT {_folder_name("filename")} AS review_id, filename, json FROM {manifest}),
             verdicts AS (
               SELECT {_folder_name("filename")} AS review_id,
                      count(DISTINCT (reviewer, item)) AS verdicts,
                      count(DISTINCT reviewer) AS reviewers
               FROM {verdicts} GROUP BY 1)
        SELECT review_id,
               manifest.json->>'name' AS name,
               manifest.json->>'source' AS source,
               manifest.json->>'dataset' AS dataset,
               manifest.json->>'split' AS split,
               (manifest.json->>'items')::BIGINT AS items,
               coalesce(verdicts.verdicts, 0) AS verdicts,
               coalesce(verdicts.reviewers, 0) AS reviewers,
               manifest.json->>'closed_at' IS NOT NULL AS closed,
               to_timestamp((manifest.json->>'created_at')::DOUBLE) AS created_at,
               to_timestamp((manifest.json->>'closed_at')::DOUBLE) AS closed_at,
               parse_dirpath(manifest.filename) AS path
        FROM manifest LEFT JOIN verdicts USING (review_id)
        WHERE NOT starts_with(review_id, '.')"""


def create_views(con: duckdb.DuckDBPyConnection, ws: Workspace) -> duckdb.DuckDBPyConnection:
    """(Re)create the views datasets, runs, metrics, audit, evals and reviews."""
    for name, sql in (
        ("datasets", datasets_sql(ws)),
        ("runs", runs_sql(ws)),
        ("metrics", metrics_sql(ws)),
        ("audit", audit_sql(ws)),
        ("evals", evals_sql(ws)),
        ("reviews", reviews_sql(ws)),
    ):
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
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


def _newest_first(view: str, ws: Workspace | None) -> pd.DataFrame:
    con = connect(ws)
    try:
        return con.execute(f"SELECT * FROM {view} ORDER BY created_at DESC NULLS LAST, 1").df()
    finally:
        con.close()


def evals_table(ws: Workspace | None = None) -> pd.DataFrame:
    """The evals view, newest first: eval_id, created_at, model, model_kind, run_id, dataset, split, n, compared,
    LISTED_METRICS with their CIs (accuracy, accuracy_low, accuracy_high, ...), path."""
    return _newest_first("evals", ws)


def reviews_table(ws: Workspace | None = None) -> pd.DataFrame:
    """The reviews view, newest first: review_id, name, source, dataset, split, items, verdicts, reviewers, closed,
    created_at, closed_at, path. No model names: those stay sealed in the review folder."""
    return _newest_first("reviews", ws)
