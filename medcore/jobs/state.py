"""A run's truthful state: status.json + launch.json + process liveness + exit code, and how it is settled.

Files this package adds to the run folder (see medcore.rundir for the rest):
  launch.json    how and where the job runs: command, host, port, supervisor and torchrun pid/pgid, times
  control.json   a pending request from the console/CLI: {"action": "cancel" | "stop", "grace_s", "at"}
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcore.errors import MedcoreError
from medcore.fileio import file_lock
from medcore.jobs.diagnose import diagnose_log
from medcore.procs import settle_if_vanished
from medcore.rundir import FINAL_STATES, TEST_EVAL, RunDir, read_json, write_json_atomic
from medcore.workspace import Workspace, get_workspace

ACTIVE_STATES = ("queued", "starting", "running")
RESUMABLE_STATES = ("failed", "cancelled", "stopped")
# Failures the log can prove were the cause, whatever a surviving rank reported.
ROOT_CAUSES = ("gpu_oom", "host_oom", "rank_killed", "disk_full", "nccl_timeout", "rendezvous_timeout", "port_in_use")
# A run folder younger than this with no supervisor recorded is still being launched, not dead.
LAUNCH_GRACE_S = 30.0


@dataclass(frozen=True)
class RunInfo:
    """What the console and CLI show for one run."""

    run_id: str
    state: str
    path: str
    backend: str = "local"
    step: int | None = None
    max_steps: int | None = None
    error: str | None = None
    hint: str | None = None
    exit_code: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    test_eval: dict[str, Any] | None = None  # the evaluation after completion (rundir.TEST_EVAL)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def control_path(rd: RunDir) -> Path:
    return rd.path / "control.json"


def read_launch(rd: RunDir) -> dict[str, Any]:
    return read_json(rd.launch, default={}) or {}


def _locked(rd: RunDir):
    # The launcher and the supervisor both add fields to launch.json; the lock keeps either from losing the other's.
    return file_lock(rd.path / ".launch.lock")


def update_launch(rd: RunDir, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into launch.json (atomic file replace under a lock)."""
    with _locked(rd):
        current = read_launch(rd)
        current.update(fields)
        write_json_atomic(rd.launch, current)
        return current


def read_request(rd: RunDir) -> dict[str, Any]:
    return read_json(control_path(rd), default={}) or {}


def write_request(rd: RunDir, action: str, grace_s: float = 10.0) -> None:
    write_json_atomic(control_path(rd), {"action": action, "grace_s": grace_s, "at": time.time()})


def clear_request(rd: RunDir) -> None:
    control_path(rd).unlink(missing_ok=True)


def find_run(run_id: str, ws: Workspace | None = None) -> RunDir:
    """The run folder of `run_id`; an unknown id fails with the ids that exist."""
    ws = ws or get_workspace()
    if run_id and "/" not in run_id and not run_id.startswith(".") and (ws.runs / run_id).is_dir():
        return RunDir(ws.runs / run_id)
    known = (
        sorted(p.name for p in ws.runs.iterdir() if p.is_dir() and not p.name.startswith("."))
        if ws.runs.exists()
        else []
    )
    listing = ", ".join(known[-10:]) if known else "none yet"
    raise MedcoreError(f"No run '{run_id}' in {ws.runs}. Runs are: {listing}. See `medcore runs list`.")


def settle_final_state(rd: RunDir, exit_code: int | None) -> dict[str, Any]:
    """Write the final state once the job's processes are gone; the trainer's own final word wins when it gave one."""
    status = rd.read_status()
    state = status.get("state")
    request = read_request(rd).get("action")
    fields: dict[str, Any] = {"exit_code": exit_code, "ended_at": time.time()}
    if state == "completed":
        pass  # artifacts are written; a crash while tearing down does not undo them
    elif request == "cancel":
        fields.update(
            state="cancelled", error="Cancelled on request.", hint="Resume it with `medcore runs resume ID`."
        )
    elif state in FINAL_STATES:
        if state == "failed":
            # A surviving rank records its own symptom (a broken connection); the launcher's log names the
            # root cause (the rank that was killed, the OOM). The root cause wins; the symptom is kept.
            diag = diagnose_log(rd.log, exit_code)
            if not status.get("error") or diag.pattern in ROOT_CAUSES:
                fields.update(error=diag.reason, hint=diag.hint, rank_error=status.get("error"))
    elif exit_code == 0:
        fields["state"] = "completed"
    else:
        diag = diagnose_log(rd.log, exit_code)
        if request == "stop":
            fields.update(
                state="failed",
                error=f"Save-and-stop was requested but the trainer did not confirm a checkpoint. {diag.reason}",
                hint=diag.hint,
            )
        else:
            fields.update(state="failed", error=diag.reason, hint=diag.hint)
    try:
        return rd.update_status(**fields)
    except OSError:
        # A full or read-only disk must not hide the state from readers: report it, persist it later.
        return {**status, **fields}


def observe_run(rd: RunDir) -> RunInfo:
    """The run's state now. A job whose processes all vanished without a final state is settled as failed."""
    status = rd.read_status()
    launch = read_launch(rd)
    state = status.get("state") or ("queued" if launch else "unknown")
    backend = launch.get("backend", "local")
    # Without launch.json the run was started by hand (plain torchrun): status.json is all there is.
    if state not in FINAL_STATES and backend == "local" and launch:
        being_launched = not launch.get("supervisor") and time.time() - launch.get("queued_at", 0) < LAUNCH_GRACE_S
        if not being_launched:
            status = settle_if_vanished(
                rd.read_status,
                [launch.get("supervisor"), launch.get("torchrun")],
                lambda s: s.get("state") in FINAL_STATES,
                lambda s: settle_final_state(rd, None),
            )
            state = status.get("state", state)
    elif state not in FINAL_STATES and backend == "slurm":
        from medcore.jobs.slurm import observe_slurm

        status = observe_slurm(rd, launch) or status
        state = status.get("state", state)
    return RunInfo(
        run_id=rd.run_id,
        state=state,
        path=str(rd.path),
        backend=backend,
        step=status.get("step"),
        max_steps=status.get("max_steps"),
        error=status.get("error"),
        hint=status.get("hint"),
        exit_code=status.get("exit_code"),
        created_at=launch.get("queued_at") or rd.path.stat().st_mtime,
        started_at=launch.get("started_at"),
        ended_at=status.get("ended_at"),
        pid=(launch.get("torchrun") or {}).get("pid"),
        test_eval=status.get(TEST_EVAL),
        extra={k: launch[k] for k in ("host", "port", "nnodes", "node_rank", "slot", "slurm_job_id") if k in launch},
    )
