"""medcore.store: incremental live metrics, compaction, views for notebooks, the Runs list and the catalog snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest

from medcore import store
from medcore.data import ColumnMapping, import_dataset
from medcore.errors import MedcoreError
from medcore.rundir import RunDir, write_json_atomic
from medcore.store import live_metrics


def metric_row(step: int, **extra) -> dict:
    return {"step": step, "epoch": step / 100, "loss": 3.0 / (step + 1), "lr": 1e-4, "time": 1.7e9 + step, **extra}


def append(rd: RunDir, rows: list[dict], partial: str = "") -> None:
    with open(rd.metrics, "a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows) + partial)


def logged_min(rd: RunDir, key: str) -> float:
    rows = [json.loads(line) for line in rd.metrics.read_text().splitlines()]
    return min(r[key] for r in rows if key in r)


def make_run(ws, run_id: str, steps: int = 0, state: str = "running", spec: dict | None = None) -> RunDir:
    rd = RunDir(ws.runs / run_id)
    rd.path.mkdir(parents=True)
    write_json_atomic(rd.spec, spec or {"model": "minilm", "task": "classification", "lora": {"preset": "small"}})
    write_json_atomic(rd.launch, {"queued_at": time.time(), "started_at": time.time()})
    rd.update_status(state=state, step=steps)
    append(rd, [metric_row(s) for s in range(1, steps + 1)])
    return rd


@pytest.fixture(autouse=True)
def fresh_cache():
    live_metrics.clear_cache()
    yield
    live_metrics.clear_cache()


def test_metrics_reads_only_new_complete_lines(workspace):
    a, b = make_run(workspace, "run-a", 5), make_run(workspace, "run-b", 3)
    frame = store.metrics(["run-a", "run-b"], ws=workspace)
    assert frame.groupby("run_id")["step"].max().to_dict() == {"run-a": 5, "run-b": 3}
    assert list(frame.columns[:2]) == ["run_id", "step"]

    append(a, [metric_row(6), metric_row(7, eval_loss=0.4)], partial='{"step": 8, "lo')
    append(b, [metric_row(4)])
    new = store.metrics(["run-a", "run-b"], since_step={"run-a": 5, "run-b": 3}, ws=workspace)
    assert new[["run_id", "step"]].values.tolist() == [["run-a", 6], ["run-a", 7], ["run-b", 4]]
    assert new["eval_loss"].isna().tolist() == [True, False, True]  # a column that appears later is picked up

    with open(a.metrics, "a") as fh:  # the writer finishes its half line, then a crash leaves garbage
        fh.write('ss": 0.1}\n{"step": 9, not json\n')
    append(a, [metric_row(10)])
    assert store.metrics("run-a", since_step=7, ws=workspace)["step"].tolist() == [8, 10]
    assert store.metrics(["no-such-run"], ws=workspace).empty


def test_a_rewritten_metrics_file_is_reread(workspace):
    rd = make_run(workspace, "run-a", 50)
    assert len(store.metrics("run-a", ws=workspace)) == 50
    rd.metrics.unlink()  # e.g. a run folder re-created under the same id
    append(rd, [metric_row(s) for s in range(1, 4)])
    assert store.metrics("run-a", ws=workspace)["step"].tolist() == [1, 2, 3]


def test_compacted_parquet_plus_jsonl_tail(workspace):
    rd = make_run(workspace, "run-a", 200, state="completed")
    path = store.compact_run_metrics(rd)
    expected = store.metrics("run-a", ws=workspace)
    live_metrics.clear_cache()  # a fresh process: the cold read now comes from Parquet
    pd.testing.assert_frame_equal(store.metrics("run-a", ws=workspace), expected)
    append(rd, [metric_row(201), metric_row(202)])  # a resumed run appends after compaction
    live_metrics.clear_cache()
    assert store.metrics("run-a", since_step=199, ws=workspace)["step"].tolist() == [200, 201, 202]

    rd.metrics.write_text("".join(json.dumps(metric_row(s, loss=9.0)) + "\n" for s in range(1, 4)))
    live_metrics.clear_cache()  # the JSONL was rewritten: the stale Parquet must be ignored
    fresh = store.metrics("run-a", ws=workspace)
    assert fresh["step"].tolist() == [1, 2, 3] and (fresh["loss"] == 9.0).all() and path.exists()


def test_runs_table_and_best_metric(workspace):
    a = make_run(workspace, "run-a", 30, state="completed")
    append(a, [metric_row(31, eval_loss=0.7), metric_row(32, eval_loss=0.5), metric_row(33, eval_loss=0.6)])
    make_run(workspace, "run-b", 10, spec={"model": {"name": "tiny-llama"}, "task": "causal-lm", "zero_preset": "z2"})
    (workspace.runs / "empty-folder").mkdir()
    table = store.runs_table(workspace).set_index("run_id")
    assert sorted(table.index) == ["run-a", "run-b"]
    assert table.loc["run-a", ["state", "model", "lora_preset", "best_metric_name"]].tolist() == [
        "completed", "minilm", "small", "eval_loss",
    ]  # fmt: skip
    assert table.loc["run-a", "best_metric"] == logged_min(a, "eval_loss")
    assert (a.path / live_metrics.PARQUET_NAME).exists()  # an ended run got compacted on first look
    assert table.loc["run-b", ["model", "zero_preset", "best_metric_name"]].tolist() == ["tiny-llama", "z2", "loss"]
    assert table.loc["run-b", "best_metric"] == logged_min(RunDir(workspace.runs / "run-b"), "loss")


def test_connect_views_over_the_workspace(workspace):
    empty = store.connect(workspace)
    for view in ("datasets", "runs", "metrics", "audit", "evals"):
        assert empty.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
    df = pd.DataFrame({"text": [f"note {i}" for i in range(20)], "label": ["a", "b"] * 10})
    import_dataset(workspace, df, "notes", ColumnMapping(text="text", label="label"))
    make_run(workspace, "run-a", 12)
    make_run(workspace, "run-b", 7)
    append(RunDir(workspace.runs / "run-b"), [], partial='{"step": 8, "lo')
    (workspace.audit / "2026-11.jsonl").write_text(json.dumps({"event": "redact", "entities": 3}) + "\n")
    con = store.create_views(empty, workspace)
    assert con.execute("SELECT run_id, count(*), max(step) FROM metrics GROUP BY 1 ORDER BY 1").fetchall() == [
        ("run-a", 12, 12), ("run-b", 7, 7),
    ]  # fmt: skip
    assert con.execute("SELECT name, rows, redaction_status FROM datasets").fetchall() == [("notes", 20, "raw")]
    assert con.execute("SELECT id, state, model FROM runs ORDER BY id").fetchall() == [
        ("run-a", "running", "minilm"), ("run-b", "running", "minilm"),
    ]  # fmt: skip
    assert con.execute("SELECT entities FROM audit").fetchall() == [(3,)]
    make_run(
        workspace, "run-c", 1, spec={"model": "minilm", "task": "classification", "lora": "small", "zero": "zero2"}
    )
    assert con.execute(
        "SELECT id, lora_preset, zero_preset FROM runs WHERE id IN ('run-a', 'run-c') ORDER BY id"
    ).fetchall() == [
        ("run-a", "small", None),
        ("run-c", "small", "zero2"),
    ]  # fmt: skip  (a RunSpec's plain preset names, and the older nested form)
    append(RunDir(workspace.runs / "run-a"), [metric_row(13)])  # views are live: no reconnect needed
    assert con.execute("SELECT max(step) FROM metrics WHERE run_id = 'run-a'").fetchone() == (13,)


def test_sync_catalog_tables(workspace):
    make_run(workspace, "run-a", 5, state="completed")
    store.sync_catalog(workspace)
    con = duckdb.connect(str(workspace.catalog), read_only=True)
    assert con.execute("SELECT run_id, state, best_metric_name FROM runs").fetchall() == [
        ("run-a", "completed", "loss")
    ]
    assert {r[0] for r in con.execute("SHOW TABLES").fetchall()} == {"datasets", "runs", "evals"}
    con.close()
    with pytest.raises(MedcoreError, match="Unknown catalog tables"):
        store.sync_catalog(workspace, tables=("metrics",))


HOLD_CATALOG = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (x INT)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


@pytest.mark.slow
def test_sync_catalog_waits_for_another_process_holding_the_file(workspace):
    """A DuckDB shell left open on catalog.duckdb: sync retries until it closes, or fails with a clear message."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_CATALOG, str(workspace.catalog), "1.5"], stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == b"locked"
    with pytest.raises(MedcoreError, match="another process holds it"):
        store.sync_catalog(workspace, timeout_s=0.3)
    start = time.monotonic()
    store.sync_catalog(workspace, timeout_s=20)
    assert holder.wait(timeout=10) == 0 and time.monotonic() - start > 0.5  # it waited for the holder
    con = duckdb.connect(str(workspace.catalog), read_only=True)
    assert {r[0] for r in con.execute("SHOW TABLES").fetchall()} >= {"datasets", "runs", "evals", "held"}
    con.close()
