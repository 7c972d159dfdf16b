"""Launch, watch, cancel, stop and resume training jobs: the calls behind the console's Runs page and `medcore runs`."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medcore.access.acting import acting_for
from medcore.access.actor import Actor, require
from medcore.errors import MedcoreError
from medcore.fileio import file_lock
from medcore.jobs.queue import enqueue
from medcore.jobs.resume import check_dataset_unchanged, record_dataset_hash, validate_checkpoint
from medcore.jobs.slurm import SlurmConfig, render_sbatch, require_sbatch, submit_sbatch, trainer_args, write_sbatch
from medcore.jobs.state import (
    ACTIVE_STATES,
    CANCEL_GRACE_S,
    RESUMABLE_STATES,
    RunInfo,
    clear_request,
    find_run,
    observe_run,
    read_launch,
    settle_abandoned,
    settle_final_state,
    update_launch,
    write_request,
)
from medcore.procs import (
    check_port,
    free_port,
    is_alive,
    python_module,
    signal_group,
    signal_ranks,
    spawn_detached,
    terminate_job,
)
from medcore.rundir import FINAL_STATES, RunDir
from medcore.workspace import Workspace, get_workspace


def submit_command(
    rd: RunDir,
    command: list[str],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    port_auto: bool = False,
    nnodes: int = 1,
    node_rank: int = 0,
    gpus_per_job: int = 0,
    env: dict[str, str] | None = None,
    attempt: int = 1,
    needs_slot: bool = True,
) -> str:
    """Queue `command` for the run folder `rd` under a detached supervisor; returns at once with the run id.

    launch_run and resume_run build the torchrun command; this runs any command the same way
    (tests use it with stand-in scripts; an admin can re-run a hand-edited command).
    """
    update_launch(
        rd,
        backend="local",
        command=[str(c) for c in command],
        host=host,
        port=port,
        port_auto=port_auto,
        nnodes=nnodes,
        node_rank=node_rank,
        gpus_per_job=gpus_per_job,
        env=env or {},
        cwd=os.getcwd(),
        attempt=attempt,
        needs_slot=needs_slot,
        hostname=socket.gethostname(),
        queued_at=time.time(),
        supervisor=None,
        torchrun=None,
        started_at=None,
    )
    clear_request(rd)  # a stop or cancel of an earlier attempt must not end this one
    rd.update_status(state="queued", error=None, hint=None, exit_code=None, ended_at=None)
    update_launch(rd, ticket=str(enqueue(Workspace(rd.path.parent.parent), rd.run_id)))
    supervisor = spawn_detached(python_module("medcore.jobs.supervisor", str(rd.path)), rd.log)
    # The supervisor records itself too; recording it here closes the window before it starts.
    update_launch(rd, supervisor=supervisor)
    return rd.run_id


def launch_run(
    spec: Any,
    ws: Workspace | None = None,
    *,
    overrides: dict | None = None,
    port: int | None = None,
    backend: str = "local",
    slurm: SlurmConfig | None = None,
    actor: Actor | None = None,
) -> str:
    """Validate `spec` (a RunSpec, dict or spec file), create the run folder and queue the job; returns the run id.

    Nothing is created when the spec is invalid, an explicitly chosen port is busy, or the SLURM
    backend is asked for where sbatch is missing. Local runs get a free port unless the spec or
    `port` names one. For `actor` (a console user): their role is checked, training on data without a proven
    redaction (allow_unredacted) needs its own permission, and the launch is audited.
    """
    from medcore import train

    ws = ws or get_workspace()
    with acting_for(ws, actor, "launch_run", kind="run_launched") as outcome:
        if backend not in ("local", "slurm"):
            raise MedcoreError(f"Unknown backend '{backend}': use 'local' (torchrun here) or 'slurm' (sbatch).")
        plan = train.plan_run(spec, ws, overrides, port)
        outcome.update(dataset=plan.spec.dataset, model=plan.spec.model)
        if plan.spec.allow_unredacted:
            outcome["allow_unredacted"] = True
            if actor is not None:
                require(actor, "train_unredacted")  # refused inside: recorded as this launch's refusal
        if backend == "slurm":
            require_sbatch()
        elif plan.port:
            _check_own_port(plan)
        plan.create_run_dir()
        record_dataset_hash(plan.run_dir)
        outcome["run_id"] = run_id = _queue(plan, backend=backend, slurm=slurm, attempt=1)
    return run_id


def _check_own_port(plan) -> None:
    # Only node 0 listens on the rendezvous port, and only a local address can be checked from here.
    if plan.node_rank == 0 and _is_local(plan.host):
        check_port(plan.port, "127.0.0.1" if plan.host == "localhost" else plan.host)


def _is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", socket.gethostname())


def _queue(plan, *, backend: str, slurm: SlurmConfig | None, attempt: int) -> str:
    """Hand a LaunchPlan (medcore.train.LaunchPlan) to SLURM or to the local queue and its supervisor."""
    rd = plan.run_dir
    if backend == "slurm":
        cfg = slurm or SlurmConfig()
        command = plan.command(cfg.rdzv_port)
        text = render_sbatch(
            rd, cfg, nnodes=plan.nnodes, nproc_per_node=plan.nproc_per_node, train_args=trainer_args(command)
        )
        job_id = submit_sbatch(write_sbatch(rd, text))
        update_launch(
            rd,
            backend="slurm",
            slurm_job_id=job_id,
            slurm=cfg.model_dump(),
            attempt=attempt,
            queued_at=time.time(),
            command=command,
        )
        rd.update_status(state="queued", error=None, hint=None, exit_code=None, ended_at=None)
        return rd.run_id
    chosen = int(plan.port or free_port())
    return submit_command(
        rd,
        plan.command(chosen),
        host=plan.host,
        port=chosen,
        # Only a single-node port may be swapped at start: other nodes were told this one.
        port_auto=not plan.port and plan.nnodes == 1,
        # A second node of a job on node 0's own machine (a local multi-node test) joins without a slot:
        # node 0 holds one, and queueing behind it would stall the rendezvous.
        needs_slot=not (plan.node_rank > 0 and _is_local(plan.host)),
        nnodes=plan.nnodes,
        node_rank=plan.node_rank,
        gpus_per_job=plan.gpus_per_job,
        attempt=attempt,
    )


def run_status(run_id: str, ws: Workspace | None = None) -> RunInfo:
    """The run's state from status.json, process liveness and the exit code."""
    return observe_run(find_run(run_id, ws))


def list_runs(ws: Workspace | None = None) -> list[RunInfo]:
    """Every run in the workspace, newest first."""
    ws = ws or get_workspace()
    if not ws.runs.exists():
        return []
    runs = [observe_run(RunDir(p)) for p in ws.runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(runs, key=lambda r: r.created_at or 0, reverse=True)


def _ids_in(states: tuple[str, ...], ws: Workspace | None) -> str:
    ids = [r.run_id for r in list_runs(ws) if r.state in states]
    return ", ".join(ids[:10]) if ids else "none"


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")  # colours, cursor moves, window titles
LIBRARY_WARNING = re.compile(r"^\s*(?:\S+\.py:\d+: \w*Warning: |warnings\.warn\()")


def read_logs(run_id: str, tail: int = 100, ws: Workspace | None = None, library_warnings: bool = False) -> str:
    """The last `tail` lines of the run's train.log (launcher, supervisor and all ranks), as plain text.

    Terminal escapes (colours, progress-bar redraws) are removed, and libraries' deprecation warnings with their
    source line are left out unless `library_warnings`: they bury the lines a user needs (`medcore runs logs`
    and the file itself keep everything).
    """
    rd = find_run(run_id, ws)
    if not rd.log.exists():
        return ""
    with open(rd.log, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size, block, data = fh.tell(), 8192, b""
        while size > 0 and data.count(b"\n") <= tail:
            step = min(block, size)
            size -= step
            fh.seek(size)
            data = fh.read(step) + data
            block *= 2
    text = ANSI_ESCAPE.sub("", data.decode("utf-8", errors="replace")).replace("\r\n", "\n")
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]  # a progress bar's last redraw wins
    if not library_warnings:
        lines = [line for line in lines if not LIBRARY_WARNING.match(line)]
    lines = lines[:-1] if lines and not lines[-1] else lines
    return "\n".join(lines[-tail:]) if tail > 0 else ""


def follow_logs(
    run_id: str, ws: Workspace | None = None, poll_s: float = 0.5, offset: int | None = None
) -> Iterator[str]:
    """Yield log text written after byte `offset` (default: the current end), until the run reaches a final state."""
    rd = find_run(run_id, ws)
    if offset is None:
        offset = rd.log.stat().st_size if rd.log.exists() else 0
    while True:
        final = observe_run(rd).state in FINAL_STATES
        if rd.log.exists():
            with open(rd.log, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset += len(chunk)
            if chunk:
                yield chunk.decode("utf-8", errors="replace")
        if final:
            return
        time.sleep(poll_s)


def cancel_run(
    run_id: str, ws: Workspace | None = None, grace_s: float = CANCEL_GRACE_S, *, actor: Actor | None = None
) -> RunInfo:
    """Stop a queued or running job now, without saving (_cancel_run); for `actor`, checked and audited."""
    with acting_for(ws or get_workspace(), actor, "cancel_run", kind="run_cancelled", run_id=run_id):
        return _cancel_run(run_id, ws, grace_s)


def _cancel_run(run_id: str, ws: Workspace | None = None, grace_s: float = CANCEL_GRACE_S) -> RunInfo:
    """Stop a queued or running job now, without saving: state `cancelled` once every process is gone.

    The ranks read the request at their next step and exit without a checkpoint; SIGTERM to the whole job, SIGKILL
    after `grace_s`, ends whatever has not (a save in progress is cut short: resume uses the last complete one).
    """
    rd = find_run(run_id, ws)
    info = observe_run(rd)
    if info.state in FINAL_STATES:
        raise MedcoreError(
            f"Run {run_id} is already {info.state}; only queued or running runs can be cancelled. "
            f"Active runs: {_ids_in(ACTIVE_STATES, ws)}."
        )
    write_request(rd, "cancel", grace_s)
    launch = read_launch(rd)
    if info.backend == "slurm":
        from medcore.jobs.slurm import cancel_slurm

        cancel_slurm(launch)
        settle_final_state(rd, None)
        return observe_run(rd)
    job = launch.get("torchrun") or {}
    if is_alive(job):
        signal_group(job.get("pgid"), signal.SIGTERM)  # start shutting down now; the supervisor escalates
    deadline = time.monotonic() + grace_s + 15.0
    while time.monotonic() < deadline and is_alive(read_launch(rd).get("supervisor")):
        # Not the trainer's own "stopped" (written while ranks still tear down): the launcher's end record, written
        # once every process of the job is gone.
        if _settled(rd.read_status()):
            return observe_run(rd)
        time.sleep(0.2)
    # The supervisor is gone (killed) or stuck: finish the job off from here.
    launch = read_launch(rd)
    job = launch.get("torchrun") or {}
    terminate_job(job.get("pgid") if is_alive(job) else None, launch.get("tag"), grace_s)
    if not _settled(rd.read_status()):
        settle_abandoned(rd)  # the cancel request makes it `cancelled`, whatever the trainer wrote last
    return observe_run(rd)


def _settled(status: dict[str, Any]) -> bool:
    return status.get("state") in FINAL_STATES and status.get("ended_at") is not None


def stop_run(
    run_id: str, ws: Workspace | None = None, grace_s: float | None = None, *, actor: Actor | None = None
) -> RunInfo:
    """Save, then stop (_stop_run); for `actor`, checked and audited."""
    with acting_for(ws or get_workspace(), actor, "cancel_run", kind="run_stopped", run_id=run_id):
        return _stop_run(run_id, ws, grace_s)


def _stop_run(run_id: str, ws: Workspace | None = None, grace_s: float | None = None) -> RunInfo:
    """ "Save, then stop": SIGINT to the ranks; the trainer checkpoints and exits 0 with state `stopped`.

    A job still alive `grace_s` later is terminated by its supervisor (default: 2 x the run's last save, at least
    60 s: medcore.jobs.state.stop_grace_s).
    """
    rd = find_run(run_id, ws)
    info = observe_run(rd)
    job = read_launch(rd).get("torchrun")
    if info.state not in ("starting", "running") or not is_alive(job):
        raise MedcoreError(
            f"Run {run_id} is {info.state}, not running: only a running job can save and stop "
            f"(a queued one can be cancelled). Running runs: {_ids_in(('running',), ws)}."
        )
    write_request(rd, "stop", grace_s)
    if not signal_ranks(job, signal.SIGINT):
        signal_group(job["pgid"], signal.SIGINT)  # no rank started yet (rendezvous): torchrun ends the job
    return observe_run(rd)


def checkpoint_now(run_id: str, ws: Workspace | None = None, *, actor: Actor | None = None) -> Path:
    """Ask the running trainer for a checkpoint (_checkpoint_now); for `actor`, checked and audited."""
    with acting_for(ws or get_workspace(), actor, "cancel_run", kind="run_checkpoint_requested", run_id=run_id):
        return _checkpoint_now(run_id, ws)


def _checkpoint_now(run_id: str, ws: Workspace | None = None) -> Path:
    """Ask the running trainer to save a checkpoint at its next step (it deletes the trigger when done)."""
    rd = find_run(run_id, ws)
    info = observe_run(rd)
    if info.state != "running":
        raise MedcoreError(
            f"Run {run_id} is {info.state}: only a running job can checkpoint. "
            f"Running runs: {_ids_in(('running',), ws)}."
        )
    rd.checkpoint_trigger.touch()
    return rd.checkpoint_trigger


def resume_run(
    run_id: str, ws: Workspace | None = None, *, port: int | None = None, actor: Actor | None = None
) -> str:
    """Re-queue a run from its newest checkpoint (_resume_run); for `actor`, checked and audited."""
    with acting_for(ws or get_workspace(), actor, "resume_run", kind="run_resumed", run_id=run_id) as outcome:
        outcome["new_run_id"] = result = _resume_run(run_id, ws, port=port)
    return result


def _resume_run(run_id: str, ws: Workspace | None = None, *, port: int | None = None) -> str:
    """Re-queue a failed, cancelled or stopped run from its newest checkpoint, after validating that checkpoint and
    that its dataset is unchanged.

    Atomic: the check and the queueing happen under the run's lock, so of two resumes at once (a double click, two
    users) one queues the run and the other finds it queued.
    """
    rd = find_run(run_id, ws)
    with file_lock(rd.path / ".resume.lock"):
        info = observe_run(rd)
        if info.state not in RESUMABLE_STATES:
            why = "finished; nothing to resume" if info.state == "completed" else "still active"
            raise MedcoreError(
                f"Run {run_id} is {info.state} ({why}); only failed, cancelled or stopped runs resume. "
                f"Resumable runs: {_ids_in(RESUMABLE_STATES, ws)}."
            )
        from medcore import train

        plan = train.plan_resume(rd, Workspace(rd.path.parent.parent), port)
        validate_checkpoint(rd, plan.spec)
        check_dataset_unchanged(rd, plan.spec, plan.workspace)
        launch = read_launch(rd)
        if port:
            _check_own_port(plan)
        clear_request(rd)
        backend = launch.get("backend", "local")
        slurm = SlurmConfig(**launch["slurm"]) if launch.get("slurm") else None
        return _queue(plan, backend=backend, slurm=slurm, attempt=int(launch.get("attempt", 1)) + 1)
