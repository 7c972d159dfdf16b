"""One detached supervisor per job: wait for a queue slot, run torchrun, record the exit code and final state.

    python -m medcore.jobs.supervisor RUN_DIR

medcore.jobs.launch_run starts it in its own session (it outlives the console). It reads the command
from RUN_DIR/launch.json, takes a slot (medcore.jobs.queue), starts the command in a new session with
the slot's lock inherited, watches control.json for a cancel request (terminate now) or a save-and-stop that
outlives its grace period (terminate then), sweeps leftover ranks, and writes the final state to status.json. Its own
output goes to RUN_DIR/train.log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.jobs import queue
from medcore.jobs.diagnose import ATTEMPT_MARK
from medcore.jobs.state import (
    CANCEL_GRACE_S,
    read_launch,
    read_request,
    record_run_end,
    settle_final_state,
    torchrun_shutdown_env,
    update_launch,
)
from medcore.procs import (
    JOB_TAG_ENV,
    free_port,
    port_is_free,
    proc_ref,
    python_module,
    tagged_processes,
    terminate_job,
)
from medcore.rundir import RunDir
from medcore.train.spec import load_spec
from medcore.workspace import Workspace

POLL_S = 0.2
_terminated = False


def log(message: str) -> None:
    # Its output is train.log: on a full or read-only disk a log line is lost, never the final state after it.
    with contextlib.suppress(OSError):
        print(f"[medcore.jobs {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _on_sigterm(signum, frame) -> None:
    # Being terminated (e.g. cancel while queued, or shutdown) is handled like a cancel request.
    global _terminated
    _terminated = True


def cancel_requested(rd: RunDir) -> bool:
    return _terminated or read_request(rd).get("action") == "cancel"


def replace_port(command: list[str], old: int, new: int) -> list[str]:
    """Swap a port that got taken while the job was queued (`--master-port=P`, `HOST:P`, or a bare `P`)."""
    out = []
    for token in command:
        if token == str(old):
            token = str(new)
        elif token.endswith((f"={old}", f":{old}")):
            token = token[: -len(str(old))] + str(new)
        out.append(token)
    return out


def resolve_command(rd: RunDir, launch: dict) -> list[str]:
    """The command to run, with a still-free port when MedCore chose it (it may have been taken meanwhile)."""
    command = list(launch["command"])
    port, host = launch.get("port"), launch.get("host", "127.0.0.1")
    if port and launch.get("port_auto") and not port_is_free(int(port), host):
        new = free_port(host)
        log(f"port {port} was taken while queued; using {new}")
        command = replace_port(command, int(port), new)
        update_launch(rd, port=new, command=command)
    return command


def job_env(rd: RunDir, launch: dict, slot: queue.Slot, tag: str) -> dict[str, str]:
    env = {**torchrun_shutdown_env(rd), **os.environ}  # a timeout the user set wins
    env.update({k: str(v) for k, v in (launch.get("env") or {}).items()})
    env[JOB_TAG_ENV] = tag
    env["PYTHONUNBUFFERED"] = "1"  # ranks' lines reach train.log as they happen
    if slot.devices and "CUDA_VISIBLE_DEVICES" not in (launch.get("env") or {}):
        # the devices the queue's ledger gave this job: no running job holds them, whatever its size
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, slot.devices))
    return env


def stop_overdue(request: dict) -> bool:
    """A save-and-stop whose grace period (which covers a save) has run out."""
    deadline = float(request.get("at", 0)) + float(request.get("grace_s") or 0)
    return request.get("action") == "stop" and time.time() > deadline


def watch_job(rd: RunDir, proc: subprocess.Popen, tag: str) -> int:
    """Wait for the job; terminate the whole job (group + tagged ranks) on a cancel request, or when a save-and-stop
    has not ended it within its grace period."""
    while proc.poll() is None:
        request = read_request(rd)
        if _terminated or request.get("action") == "cancel":
            grace = float(request.get("grace_s") or CANCEL_GRACE_S)
            log(f"cancel requested: SIGTERM to the job, SIGKILL after {grace:g}s")
            terminate_job(proc.pid, tag, grace)
            break
        if stop_overdue(request):
            log(f"save-and-stop did not end the job within its grace period ({request['grace_s']:g}s); terminating it")
            terminate_job(proc.pid, tag, CANCEL_GRACE_S)
            break
        time.sleep(POLL_S)
    return proc.wait()


def run_supervised(rd: RunDir) -> int:
    ws = Workspace(rd.path.parent.parent)
    launch = read_launch(rd)
    tag = f"{rd.run_id}:{launch.get('attempt', 1)}:{os.getpid()}"
    update_launch(rd, supervisor=proc_ref(os.getpid()), tag=tag)
    gpus = int(launch.get("gpus_per_job") or 0)
    k = queue.max_jobs(1)  # a slot per device at most: the ledger decides which jobs fit beside each other
    ticket = Path(launch["ticket"]) if launch.get("ticket") else queue.enqueue(ws, rd.run_id)
    try:
        if launch.get("needs_slot", True):
            log(f"queued (at most {k} concurrent job(s) on {socket.gethostname()})")
            slot = queue.wait_for_slot(ws, ticket, k, give_up=lambda: cancel_requested(rd), gpus=gpus)
        else:
            log("joining node 0's job on this machine without a queue slot")
            slot = None if cancel_requested(rd) else queue.Slot(os.open(os.devnull, os.O_RDONLY), 0)
    except MedcoreError as exc:  # more GPUs than the machine has: it would wait forever
        log(str(exc))
        rd.update_status(state="failed", error=str(exc), hint=None, exit_code=None, ended_at=time.time())
        return 1
    finally:
        ticket.unlink(missing_ok=True)
    if slot is None:
        log("cancelled while queued")
        settle_final_state(rd, None)
        return 0
    command = resolve_command(rd, launch)
    rd.clear_exits()  # the ranks of this attempt record their own exits
    if int(launch.get("node_rank") or 0) == 0:  # one node cleans the shared folder, before any rank can save
        for name in rd.remove_temp_checkpoints():
            log(f"removed {name}, left by a save that was interrupted")
    rd.update_status(state="starting", error=None, hint=None, exit_code=None, ended_at=None)
    log(f"slot {slot.index} free; {ATTEMPT_MARK}{' '.join(command)}")
    with open(rd.log, "ab") as log_file:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=job_env(rd, launch, slot, tag),
            cwd=launch.get("cwd") or None,
            start_new_session=True,
            pass_fds=(slot.fd,),
        )
    update_launch(rd, torchrun={**proc_ref(proc.pid), "pgid": proc.pid}, slot=slot.index, started_at=time.time())
    exit_code = watch_job(rd, proc, tag)
    leftovers = tagged_processes(tag)
    if leftovers:
        # Ranks whose agent died first are re-parented and keep running: no orphans may outlive a job.
        log(f"{len(leftovers)} process(es) of the job outlived the launcher; terminating them")
        terminate_job(None, tag, grace_s=5.0)
    slot.release()
    final = settle_final_state(rd, exit_code)
    log(f"job exited with code {exit_code}; state {final.get('state')}")
    if "write_error" not in final:  # else observers settle it again, and record the end once it can be written
        record_run_end(rd, log)
    if final.get("state") == "completed":
        evaluate_after(rd)
    return 0


def evaluate_after(rd: RunDir) -> None:
    """After a run completes: its test-split scoring (when spec.evaluate_after) and its model card, in a child
    process logging to train.log.

    By module name, not import: evaluation sits above jobs (it loads runs). Node 0 only: one eval per job.
    """
    spec = load_spec(rd.spec)
    if spec.node_rank != 0:
        return
    log(
        "after training: "
        + ("scoring the run on its test split, then " if spec.evaluate_after else "")
        + "its model card"
    )
    with open(rd.log, "ab") as log_file:
        subprocess.run(python_module("medcore.evaluate.after_run", str(rd.path)), stdin=subprocess.DEVNULL,
                       stdout=log_file, stderr=subprocess.STDOUT, check=False)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not (Path(argv[0]) / "launch.json").exists():
        print("usage: python -m medcore.jobs.supervisor RUN_DIR  (a run folder with launch.json)", file=sys.stderr)
        return 2
    # No SIGINT handling: the supervisor has its own session, so a console's Ctrl-C never reaches it.
    signal.signal(signal.SIGTERM, _on_sigterm)
    return run_supervised(RunDir(Path(argv[0]).resolve()))


if __name__ == "__main__":
    raise SystemExit(main())
