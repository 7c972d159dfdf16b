"""The per-machine job queue: K slots held with fcntl locks, first come first served, no daemon needed.

Each submitted run gets a ticket file in runs/.queue/ named by its submit time; only the oldest ticket
whose supervisor is alive may take a free slot. A slot is an flock on runs/.queue/<host>-slot-<i>.lock,
held by the supervisor and inherited by torchrun, so the kernel frees it when both are gone, even after
a crash: no stale state to clean up.

GPUs come from one ledger, runs/.queue/<host>-gpus.json (device index -> the slot holding it), read and
written only under the queue's lock (runs/.queue/<host>.lock) together with taking the slot: a job that
needs n GPUs gets n devices no live slot holds, or waits. An entry whose slot lock is free is stale (its
job ended, however it ended), so devices come back with the slot's lock.
"""

from __future__ import annotations

import contextlib
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
GPU_COUNT_ENV = "MEDCORE_GPU_COUNT"  # GPUs to allocate from instead of nvidia-smi's count (tests, a pinned subset)
POLL_S = 0.25
# A ticket whose supervisor is not recorded yet counts as alive this long (the launcher is starting it).
STARTUP_GRACE_S = 30.0


def queue_dir(ws: Workspace) -> Path:
    path = ws.runs / ".queue"
    path.mkdir(parents=True, exist_ok=True)
    return path


def count_gpus() -> int:
    """GPUs on this machine: $MEDCORE_GPU_COUNT, else nvidia-smi -L's lines (without importing torch)."""
    raw = os.environ.get(GPU_COUNT_ENV, "").strip()
    if raw:
        if not raw.isdigit():
            raise MedcoreError(f"{GPU_COUNT_ENV}={raw!r} is not a whole number: set it to e.g. 0 or 4, or unset it.")
        return int(raw)
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
    """A held slot: the open locked file (pass `fd` to the job so the lock outlives this process), its index and
    the GPUs the ledger gave it (CUDA_VISIBLE_DEVICES of the job)."""

    fd: int
    index: int
    devices: tuple[int, ...] = ()

    def release(self) -> None:
        """Free the slot, and with it its GPUs (their ledger entries are stale once the lock is gone)."""
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


def slot_path(ws: Workspace, index: int) -> Path:
    return queue_dir(ws) / f"{socket.gethostname()}-slot-{index}.lock"


def ledger_path(ws: Workspace) -> Path:
    return queue_dir(ws) / f"{socket.gethostname()}-gpus.json"


@contextlib.contextmanager
def queue_lock(ws: Workspace):
    """The queue's lock: slots and GPUs are taken, and the ledger read and written, only while holding it."""
    with open(queue_dir(ws) / f"{socket.gethostname()}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def slot_held(ws: Workspace, index: int) -> bool:
    """Whether some process holds slot `index`'s lock now (a probe: takes and drops it when free)."""
    fd = os.open(slot_path(ws, index), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def held_gpus(ws: Workspace, except_slot: int | None = None) -> dict[int, int]:
    """Device -> slot for the ledger's entries whose slot is held now (call under queue_lock)."""
    ledger = read_json(ledger_path(ws), default={}) or {}
    live = {int(device): int(slot) for device, slot in ledger.items() if int(slot) != except_slot}
    return {device: slot for device, slot in live.items() if slot_held(ws, slot)}


def _take_slot(ws: Workspace, k: int) -> Slot | None:
    for index in range(k):
        fd = os.open(slot_path(ws, index), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, True)
        return Slot(fd, index)
    return None


def try_slot(ws: Workspace, k: int, gpus: int = 0, device_count: int | None = None) -> Slot | None:
    """Take the first free slot of K and, for a job that needs `gpus` GPUs, that many free devices from the ledger
    (of `device_count`, default count_gpus()); None, holding nothing, when either is not free now."""
    with queue_lock(ws):
        slot = _take_slot(ws, k)
        if slot is None or gpus == 0:
            return slot
        held = held_gpus(ws, except_slot=slot.index)  # the slot was free: its old entries are stale
        free = [d for d in range(count_gpus() if device_count is None else device_count) if d not in held]
        if len(free) < gpus:
            slot.release()
            return None
        slot.devices = tuple(free[:gpus])
        ledger = {**held, **dict.fromkeys(slot.devices, slot.index)}
        write_bytes_atomic(ledger_path(ws), json.dumps({str(d): s for d, s in sorted(ledger.items())}).encode())
        return slot


def wait_for_slot(
    ws: Workspace,
    ticket: Path,
    k: int,
    give_up: Callable[[], bool],
    gpus: int = 0,
    device_count: int | None = None,
) -> Slot | None:
    """Block until this ticket is first in line and a slot (with `gpus` free GPUs) is free; None when `give_up()`
    turns true.

    Raises:
        MedcoreError: the job needs more GPUs than the machine has (it would wait forever).
    """
    total = device_count if device_count is not None else count_gpus() if gpus else 0
    if gpus > total:
        raise MedcoreError(
            f"The job needs {gpus} GPUs but this machine has {total}: {{option:nproc_per_node={total}}} or fewer."
        )
    while not give_up():
        if first_in_line(ws, ticket):
            slot = try_slot(ws, k, gpus, total)
            if slot is not None:
                return slot
        time.sleep(POLL_S)
    return None


def busy_slots(ws: Workspace, k: int) -> int:
    """How many of the K slots are held now (for the console's queue view)."""
    return sum(slot_held(ws, index) for index in range(k))
