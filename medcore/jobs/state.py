"""A run's truthful state: status.json + launch.json + process liveness + exit code, and how it is settled.

Files this package adds to the run folder (see medcore.rundir for the rest, control.json included):
  launch.json    how and where the job runs: command, host, port, supervisor and torchrun pid/pgid, times
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcore.errors import MedcoreError
from medcore.fileio import file_lock
from medcore.jobs.diagnose import PATTERNS, ROOT_CAUSES, diagnose_log, read_tail
from medcore.procs import is_alive, tagged_processes
from medcore.rundir import FINAL_STATES, LAST_SAVE_S, TEST_EVAL, RunDir, read_json, write_json_atomic
from medcore.workspace import Workspace, get_workspace

ACTIVE_STATES = ("queued", "starting", "running")
RESUMABLE_STATES = ("failed", "cancelled", "stopped")
# A state that cannot be written names its own cause: the errno of the failed write -> the diagnosis pattern.
WRITE_FAILURES = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only"}
# A run folder younger than this with no supervisor recorded is still being launched, not dead.
LAUNCH_GRACE_S = 30.0
# Stopping. Save-and-stop waits for a save: twice the run's last save (a save slows as the disk fills or the
# adapter grows), never under a minute. Cancel saves nothing, so its SIGTERM -> SIGKILL grace is short.
STOP_GRACE_MIN_S = 60.0
CANCEL_GRACE_S = 10.0
# torchrun's own wait between forwarding a signal to the ranks and SIGKILLing them (default 30 s): it must cover a
# save, or a launcher that dies (or a scheduler's SIGTERM) kills the save halfway.
TORCHRUN_SHUTDOWN_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"


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
    return rd.control


def stop_grace_s(rd: RunDir) -> float:
    """How long a save-and-stop may take before the job is terminated: 2 x the last save, at least a minute."""
    last = rd.read_status().get(LAST_SAVE_S)
    return max(STOP_GRACE_MIN_S, 2.0 * float(last)) if isinstance(last, int | float) else STOP_GRACE_MIN_S


def torchrun_shutdown_env(rd: RunDir) -> dict[str, str]:
    """torchrun's shutdown timeout (whole seconds) raised to the run's stop grace period."""
    return {TORCHRUN_SHUTDOWN_ENV: str(math.ceil(stop_grace_s(rd)))}


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


def write_request(rd: RunDir, action: str, grace_s: float | None = None, why: str | None = None) -> None:
    """Record a cancel or stop request; `why` (a stop nobody asked for through MedCore, e.g. a closed terminal) is
    shown with the final state. `grace_s` defaults to stop_grace_s for a stop, CANCEL_GRACE_S for a cancel."""
    if grace_s is None:
        grace_s = stop_grace_s(rd) if action == "stop" else CANCEL_GRACE_S
    request = {"action": action, "grace_s": grace_s, "at": time.time(), **({"why": why} if why else {})}
    write_json_atomic(control_path(rd), request)


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


def settle_final_state(
    rd: RunDir, exit_code: int | None, ended_at: float | None = None, stopped_because: str | None = None
) -> dict[str, Any]:
    """Write the final state once the job's processes are gone; the trainer's own final word wins when it gave one.

    Returns the final status. When the disk is full or read-only it cannot be written: the returned status still
    holds it (with `write_error`), and the failure reason names the disk when the log could not.
    """
    status = rd.read_status()
    state = status.get("state")
    request = read_request(rd)
    fields: dict[str, Any] = {"exit_code": exit_code, "ended_at": ended_at or time.time()}
    step = last_logged_step(rd)
    if state != "completed" and step is not None and step > (status.get("step") or 0):
        fields["step"] = step  # status.json is rewritten at most once a second; metrics.jsonl knows the last step
    diag = None
    if state == "completed":
        pass  # artifacts are written; a crash while tearing down does not undo them
    elif request.get("action") == "cancel":
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
        elif state == "stopped" and (
            why := request.get("why") or (request.get("action") != "stop" and stopped_because)
        ):
            fields["hint"] = f"Stopped because {why}; a checkpoint was saved. Resume with " \
                f"`medcore runs resume {rd.run_id}`."  # fmt: skip
    elif exit_code == 0:
        fields["state"] = "completed"
    else:
        diag = diagnose_log(rd.log, exit_code)
        if request.get("action") == "stop":
            fields.update(
                state="failed",
                error=f"Save-and-stop was requested but the trainer did not confirm a checkpoint. {diag.reason}",
                hint=diag.hint,
            )
        else:
            fields.update(state="failed", error=diag.reason, hint=diag.hint)
    try:
        return rd.update_status(**fields)
    except OSError as exc:
        # Readers still get the state (each observer derives it again); a failed job whose log could not name the
        # cause either (a disk at 0 bytes) is blamed on the disk the write just proved broken.
        cause = WRITE_FAILURES.get(exc.errno or 0)
        final = {**status, **fields, "write_error": errno.errorcode.get(exc.errno or 0, type(exc).__name__)}
        if cause and final.get("state") == "failed" and (diag is None or diag.pattern not in ROOT_CAUSES):
            pattern = next(p for p in PATTERNS if p.name == cause)
            final.update(error=pattern.reason, hint=pattern.hint)
        return final


def last_logged_step(rd: RunDir) -> int | None:
    """The highest step in the tail of metrics.jsonl (a torn last line is skipped)."""
    steps = []
    for line in read_tail(rd.metrics, 16 * 1024).splitlines():
        with contextlib.suppress(ValueError):
            step = json.loads(line).get("step")
            if isinstance(step, int):
                steps.append(step)
    return max(steps) if steps else None


def job_gone(launch: dict[str, Any]) -> bool:
    """Whether every process of the job ended: its launcher, torchrun and every rank (found by the job's tag, since
    ranks outlive a killed torchrun)."""
    if is_alive(launch.get("supervisor")) or is_alive(launch.get("torchrun")):
        return False
    return not (launch.get("tag") and tagged_processes(launch["tag"]))


def exit_from_ranks(rd: RunDir, status: dict[str, Any]) -> tuple[int | None, float | None]:
    """The job's exit code and end time from its ranks' exit records, when the launcher that saw them is gone.

    0 when every rank exited 0, the first non-zero code otherwise; (None, None) when a rank left no record
    (it was killed) and there is no non-zero code to report.
    """
    records = rd.read_exits()
    if not records:
        return None, None
    failed = sorted((r for r in records.values() if r.get("code")), key=lambda r: r.get("at", 0))
    spec = read_json(rd.spec, default={}) or {}
    world = int(status.get("world_size") or spec.get("nproc_per_node", 1) * spec.get("nnodes", 1))
    if failed:
        return int(failed[0]["code"]), failed[0].get("at")
    if world and len(records) >= world:
        return 0, max(r.get("at", 0) for r in records.values())
    return None, None


@contextlib.contextmanager
def _settle_lock(rd: RunDir):
    # Observers in several processes may find the same dead job; one settles it. A read-only folder has no lock file
    # to take, and nothing can be written there anyway.
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):
            stack.enter_context(file_lock(rd.path / ".settle.lock"))
        yield


def settle_abandoned(rd: RunDir) -> dict[str, Any]:
    """Settle a job whose launcher died (or never recorded the end): exit code and end time from the ranks' exit
    records, state from the trainer's final word or the log, then the metrics compaction and catalog refresh the
    launcher would have done."""
    with _settle_lock(rd):
        status = rd.read_status()
        if status.get("state") in FINAL_STATES and status.get("ended_at") is not None:
            return status  # another observer settled it meanwhile
        code, ended_at = exit_from_ranks(rd, status)
        launch = read_launch(rd)
        # A stop nobody asked for through MedCore. A foreground launcher that dies has the kernel SIGTERM torchrun
        # (medcore.jobs.foreground); otherwise someone signalled the job.
        why = "`medcore train` was killed (torchrun then stopped the ranks)" if launch.get("foreground") else \
            "the job got a stop signal from outside MedCore"  # fmt: skip
        final = settle_final_state(rd, code, ended_at, stopped_because=why)
    if "write_error" not in final and launch.get("supervisor"):  # launched through MedCore, not by hand
        record_run_end(rd)
    return final


def record_run_end(rd: RunDir, log=print) -> None:
    """Compact the run's metrics to Parquet and refresh the catalog snapshot (both best effort)."""
    from medcore.store import compact_run_metrics
    from medcore.store.catalog import refresh_catalog

    try:
        compact_run_metrics(rd.path)
    except Exception as exc:  # a failed compaction only costs speed: the JSONL stays the truth
        log(f"metrics not compacted: {type(exc).__name__}")
    try:
        refresh_catalog(Workspace(rd.path.parent.parent), tables=("runs",))
    except Exception as exc:  # the catalog is a snapshot: the next refresh rebuilds it from the run folders
        log(f"catalog not refreshed: {type(exc).__name__}")


def _being_launched(launch: dict[str, Any]) -> bool:
    return not launch.get("supervisor") and time.time() - launch.get("queued_at", 0) < LAUNCH_GRACE_S


def observe_run(rd: RunDir) -> RunInfo:
    """The run's state now. A job whose processes are all gone without a recorded end is settled here: failed when
    nothing said otherwise, with the exit code and end time its ranks recorded."""
    status = rd.read_status()
    launch = read_launch(rd)
    state = status.get("state") or ("queued" if launch else "unknown")
    backend = launch.get("backend", "local")
    # A final state without an end record: the trainer finished, but the launcher that records the end is gone.
    unsettled = state not in FINAL_STATES or (status.get("ended_at") is None and bool(launch.get("supervisor")))
    # Without launch.json the run was started by hand (plain torchrun): status.json is all there is.
    if unsettled and backend == "local" and launch and not _being_launched(launch) and job_gone(launch):
        status = settle_abandoned(rd)  # the settled state itself: a full disk may keep it out of status.json
        state = status.get("state", state)
    elif state not in FINAL_STATES and backend == "slurm":
        from medcore.jobs.slurm import observe_slurm

        status = observe_slurm(rd, launch) or status
        state = status.get("state", state)
    extra_keys = ("host", "port", "nnodes", "node_rank", "slot", "slurm_job_id", "foreground")
    extra = {k: launch[k] for k in extra_keys if k in launch}
    if status.get("write_error"):
        extra["write_error"] = status["write_error"]  # the state shown could not be saved (disk full, read-only)
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
        extra=extra,
    )
