"""Real processes at once: two jobs appending metrics (and syncing the catalog), a live-chart reader, a notebook.

Zero errors anywhere, and the readers see every row arrive, in order, exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

WRITE_SECONDS = 18.0

JOB = """
import json, os, sys, time
from medcore.rundir import RunDir, write_json_atomic
from medcore.store import sync_catalog
from medcore.workspace import get_workspace

ws = get_workspace()
rd = RunDir(ws.runs / sys.argv[1])
rd.path.mkdir(parents=True, exist_ok=True)
write_json_atomic(rd.spec, {"model": "minilm", "task": "classification"})
rd.update_status(state="running", step=0)
errors, step, syncs, deadline = [], 0, 0, time.time() + float(sys.argv[2])
with open(rd.metrics, "a") as fh:
    while time.time() < deadline:
        step += 1
        line = json.dumps({"step": step, "loss": 1.0 / step, "lr": 1e-4, "tokens_per_s": 900.0, "time": time.time()})
        if step % 7 == 0:  # leave half a line on disk for a moment, as a writer interrupted mid-write would
            fh.write(line[:9]); fh.flush(); time.sleep(0.01); fh.write(line[9:] + "\\n")
        else:
            fh.write(line + "\\n")
        fh.flush()
        if step % 25 == 0:
            rd.update_status(step=step)
        if step % 150 == 0:
            try:
                sync_catalog(ws, tables=("runs",)); syncs += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.005)
rd.update_status(state="completed", step=step)
print(json.dumps({"run": sys.argv[1], "steps": step, "syncs": syncs, "errors": errors}), flush=True)
"""

LIVE_READER = """
import json, os, sys, time
from medcore import store

runs, stop = sys.argv[1].split(","), sys.argv[2]
seen = {r: [] for r in runs}
errors, polls, growing, last_pass = [], 0, 0, False
while True:
    last_pass = os.path.exists(stop)  # one more full poll after the writers are done
    try:
        new = store.metrics(runs, since_step={r: (s[-1] if s else 0) for r, s in seen.items()})
        for run_id, steps in new.groupby("run_id")["step"]:
            seen[run_id].extend(steps.tolist())
        polls += 1
        growing += bool(len(new))
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    if last_pass:
        break
    time.sleep(0.05)
ordered = all(s == list(range(1, len(s) + 1)) for s in seen.values())
print(json.dumps({"counts": {r: len(s) for r, s in seen.items()}, "ordered": ordered, "polls": polls,
                  "polls_with_new_rows": growing, "errors": errors}), flush=True)
"""

NOTEBOOK = """
import json, os, sys, time
from medcore import store

stop = sys.argv[1]
errors, history, queries, con = [], [], 0, None
while True:
    last_pass = os.path.exists(stop)
    try:
        if con is None or queries % 10 == 0:
            con = store.connect()  # a notebook re-running its first cell
        counts = dict(con.execute("SELECT run_id, count(*) FROM metrics GROUP BY 1").fetchall())
        con.execute("SELECT id, state FROM runs").fetchall()
        con.execute("SELECT count(*) FROM datasets").fetchall()
        history.append(counts)
        queries += 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    if last_pass:
        break
    time.sleep(0.1)
monotonic = all(all(b.get(k, 0) >= v for k, v in a.items()) for a, b in zip(history, history[1:]))
print(json.dumps({"final": history[-1] if history else {}, "queries": queries, "monotonic": monotonic,
                  "distinct_totals": len({sum(h.values()) for h in history}), "errors": errors}), flush=True)
"""


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _result(proc: subprocess.Popen, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_jobs_live_reader_and_notebook_at_once(workspace, tmp_path):
    stop = tmp_path / "writers-done"
    runs = ["job-a", "job-b"]
    jobs = [_start(JOB, run, str(WRITE_SECONDS)) for run in runs]
    time.sleep(1.0)  # let the jobs create their run folders before the notebook takes its first look
    live = _start(LIVE_READER, ",".join(runs), str(stop))
    notebook = _start(NOTEBOOK, str(stop))
    written = {r["run"]: r for r in (_result(job, WRITE_SECONDS + 30) for job in jobs)}
    stop.touch()
    seen, nb = _result(live, 30), _result(notebook, 30)

    for run in runs:
        assert written[run]["errors"] == [] and written[run]["syncs"] >= 3
    assert seen["errors"] == [] and nb["errors"] == []
    assert seen["ordered"]  # every step exactly once, in order, never a half line
    assert seen["counts"] == {run: written[run]["steps"] for run in runs}
    assert seen["polls_with_new_rows"] >= 20  # rows arrived while the jobs ran, not only at the end
    assert nb["final"] == {run: written[run]["steps"] for run in runs}
    assert nb["monotonic"] and nb["distinct_totals"] >= 10 and nb["queries"] >= 20
