"""The per-machine job queue: K slots held with fcntl locks, first come first served, no daemon needed.

Each submitted run gets a ticket file in runs/.queue/ named by its submit time; only the oldest ticket
whose supervisor is alive may take a free slot. A slot is an flock on runs/.queue/<host>-slot-<i>.lock,
held by the supervisor and inherited by torchrun, so the kernel frees it when both are gone, even after
a crash: no stale state to clean up.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.fileio import write_bytes_atomic
from medcore.procs import is_alive
from medcore.rundir import read_json
from medcore.workspace import Workspace

MAX_JOBS_ENV = "MEDCORE_MAX_JOBS"
POLL_S = 0.25
# A ticket whose supervisor is not recorded yet counts as alive this long (the launcher is starting it).
STARTUP_GRACE_S = 30.0


def queue_dir(ws: Workspace) -> Path:
    path = ws.runs / ".queue"
    path.mkdir(parents=True, exist_ok=True)
    return path


def count_gpus() -> int:
    """GPUs on this machine, without importing torch (nvidia-smi -L lists one per line)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def max_jobs(gpus_per_job: int = 1) -> int:
    """K: $MEDCORE_MAX_JOBS, else one job per set of `gpus_per_job` GPUs, else 1 (CPU: jobs share the cores)."""
    raw = os.environ.get(MAX_JOBS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise MedcoreError(
                f"{MAX_JOBS_ENV}={raw!r} is not a positive integer: set it to e.g. 1 or 2, or unset it."
            )
        return int(raw)
    gpus = count_gpus()
    return max(1, gpus // max(1, gpus_per_job)) if gpus else 1


@dataclass
class Slot:
    """A held slot: the open locked file (pass `fd` to the job so the lock outlives this process) and its index."""

    fd: int
    index: int

    def release(self) -> None:
        os.close(self.fd)


def enqueue(ws: Workspace, run_id: str) -> Path:
    """Write the run's ticket at submit time; the name sorts by arrival, so the queue is first come first served."""
    ticket = queue_dir(ws) / f"{time.time_ns():020d}-{run_id}.ticket"
    write_bytes_atomic(ticket, json.dumps({"run_id": run_id, "created": time.time()}).encode())
    return ticket


def _owner_alive(ws: Workspace, ticket: Path) -> bool:
    """A ticket lives while its run's supervisor does (or, briefly, while that supervisor is being started)."""
    try:
        info = json.loads(ticket.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    launch = read_json(ws.runs / info["run_id"] / "launch.json", default={}) or {}
    if launch.get("supervisor"):
        return is_alive(launch["supervisor"])
    return time.time() - info.get("created", 0) < STARTUP_GRACE_S


def first_in_line(ws: Workspace, ticket: Path) -> bool:
    """Whether `ticket` is the oldest live ticket (tickets of dead supervisors are removed on the way)."""
    for other in sorted(ticket.parent.glob("*.ticket")):
        if other == ticket:
            return True
        if _owner_alive(ws, other):
            return False
        other.unlink(missing_ok=True)
    return True


def try_slot(ws: Workspace, k: int) -> Slot | None:
    """Take the first free slot of K without blocking."""
    host = socket.gethostname()
    for index in range(k):
        fd = os.open(queue_dir(ws) / f"{host}-slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, True)
        return Slot(fd, index)
    return None


def wait_for_slot(ws: Workspace, ticket: Path, k: int, give_up: Callable[[], bool]) -> Slot | None:
    """Block until this ticket is first in line and a slot is free; None when `give_up()` turns true."""
    while not give_up():
        if first_in_line(ws, ticket):
            slot = try_slot(ws, k)
            if slot is not None:
                return slot
        time.sleep(POLL_S)
    return None


def busy_slots(ws: Workspace, k: int) -> int:
    """How many of the K slots are held now (for the console's queue view)."""
    held = 0
    host = socket.gethostname()
    for index in range(k):
        path = queue_dir(ws) / f"{host}-slot-{index}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            held += 1
        finally:
            os.close(fd)
    return held
