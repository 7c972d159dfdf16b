"""The folder of a detached non-training job (redaction, evaluation): its request, its status, its log.

<workspace>/jobs/<job_id>/
  request.json   what was asked, checked before the process starts
  status.json    state (queued, running, completed, failed), done/total, the result's name or the error
  job.log        the process's output: counts and names, never record text

The job runs as `python -m <module> JOB_DIR` in its own session (medcore.procs.spawn_detached), so it outlives the
console or CLI that started it; a status whose process vanished without a result reads as failed.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcore.errors import MedcoreError
from medcore.procs import proc_ref, python_module, settle_if_vanished, spawn_detached
from medcore.rundir import read_json, write_json_atomic
from medcore.workspace import Workspace

ACTIVE = ("queued", "running")
REQUEST, STATUS, LOG = "request.json", "status.json", "job.log"


def jobs_dir(ws: Workspace) -> Path:
    return ws.root / "jobs"


def start_job(ws: Workspace, kind: str, module: str, request: dict[str, Any]) -> str:
    """Write the job's folder (request, queued status) and start `python -m module JOB_DIR`; returns the job id."""
    job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder = jobs_dir(ws) / job_id
    folder.mkdir(parents=True)
    write_json_atomic(folder / REQUEST, request)
    write_json_atomic(folder / STATUS, {"state": "queued", "done": 0, "total": None, "started_at": time.time()})
    process = spawn_detached(python_module(module, str(folder)), folder / LOG, {"MEDCORE_HOME": str(ws.root)})
    update_status(folder, pid=process["pid"], process=process)
    return job_id


def update_status(folder: Path, **fields: Any) -> dict[str, Any]:
    status = read_json(folder / STATUS, default={})
    status.update(fields, updated_at=time.time())
    write_json_atomic(folder / STATUS, status)
    return status


def mark_running(folder: Path) -> dict[str, Any]:
    """Called by the job process itself as it starts."""
    return update_status(folder, state="running", pid=os.getpid(), process=proc_ref(os.getpid()))


def job_status(ws: Workspace, job_id: str, what: str) -> dict[str, Any]:
    """The job's status; a job whose process vanished without a result reads as failed.

    Raises:
        MedcoreError: no such job (`what` names the kind, e.g. "redaction job").
    """
    folder = jobs_dir(ws) / job_id
    status = read_json(folder / STATUS)
    if status is None:
        raise MedcoreError(f"No {what} '{job_id}' in {jobs_dir(ws)}.")
    return settle_if_vanished(
        lambda: read_json(folder / STATUS) or status,
        [status.get("process")],
        lambda s: s.get("state") not in ACTIVE or not s.get("process"),
        lambda s: update_status(
            folder, state="failed", error=f"The {what}'s process ended without a result; see {LOG}."
        ),
    )


def job_folder_argument(argv: list[str], module: str) -> Path | None:
    """The JOB_DIR of `python -m module JOB_DIR`, or None (after a usage line) when it is not a job folder."""
    if len(argv) != 1 or not (Path(argv[0]) / REQUEST).exists():
        print(f"usage: python -m {module} JOB_DIR  (a folder with {REQUEST})", file=sys.stderr)
        return None
    return Path(argv[0]).resolve()


def run_recorded(folder: Path, what: str, work: Callable[[], Any]) -> tuple[bool, Any]:
    """Run the job's work; a failure is recorded in the status (and its log) and returns (False, None).

    A MedcoreError's message is kept (MedCore writes them without record text); any other exception is recorded by
    its type only, because a library's message can quote the input it choked on.
    """
    try:
        return True, work()
    except MedcoreError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - the type only: library messages can quote record text
        error = f"{what.capitalize()} failed with {type(exc).__name__}; see {LOG}."
    update_status(folder, state="failed", error=error, ended_at=time.time())
    print(f"{what} failed: {error}", file=sys.stderr)
    return False, None
