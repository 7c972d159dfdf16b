"""Process plumbing for detached jobs, the one mechanism every job uses (training, redaction, and what comes next):
starting a job in its own session, identity that survives pid reuse, noticing a job that died without a
result, finding every process of a job, ports."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from medcore.errors import MedcoreError

# Every process of a job inherits this variable. torchrun starts each rank in its own session, so
# neither the process group nor the parent link (lost when the agent dies) finds all ranks; the
# tag does, which is how cancel leaves no orphans.
JOB_TAG_ENV = "MEDCORE_JOB_TAG"


def proc_ref(pid: int) -> dict[str, Any]:
    """pid + create time: a pid alone may be reused by an unrelated process after the job ends."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        created = None
    return {"pid": pid, "create_time": created}


def find_process(ref: dict[str, Any] | None) -> psutil.Process | None:
    """The live process `ref` points at, or None when it ended (zombies count as ended)."""
    if not ref or not ref.get("pid"):
        return None
    try:
        proc = psutil.Process(int(ref["pid"]))
        if ref.get("create_time") is not None and abs(proc.create_time() - float(ref["create_time"])) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(ref: dict[str, Any] | None) -> bool:
    return find_process(ref) is not None


def spawn_detached(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start `command` in a new session, its output appended to `log_path`; returns its proc_ref at once.

    A new session: the job outlives the console or CLI that started it and never gets their Ctrl-C.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
    return proc_ref(proc.pid)


def python_module(module: str, *args: str) -> list[str]:
    """`python -m module args...` with this interpreter (a job runs in the same environment as its starter)."""
    return [sys.executable, "-m", module, *args]


def settle_if_vanished(
    read_status: Callable[[], dict[str, Any]],
    processes: list[dict[str, Any] | None],
    is_final: Callable[[dict[str, Any]], bool],
    settle: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """A job's status; when it is not final but every one of its `processes` is gone, `settle` writes the end.

    The status is read again after the processes are seen dead: a job writes its result just before it exits.
    """
    status = read_status()
    if is_final(status) or any(is_alive(ref) for ref in processes):
        return status
    status = read_status()
    return status if is_final(status) else settle(status)


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Every live process whose environment carries JOB_TAG_ENV=tag (other users' processes are skipped)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(JOB_TAG_ENV) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def signal_group(pgid: int | None, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is already gone."""
    if not pgid:
        return False
    try:
        os.killpg(int(pgid), sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        raise MedcoreError(
            f"Not allowed to signal process group {pgid}: run this as the user who launched the job."
        ) from None


def signal_ranks(launcher: dict[str, Any] | None, sig: int) -> int:
    """Send `sig` to the ranks torchrun started (its children), not to torchrun: a rank that handles it (save and
    stop) then exits 0 and torchrun with it, where a signalled torchrun exits 1 after forwarding. Returns how many."""
    proc = find_process(launcher)
    ranks = proc.children() if proc else []
    signal_processes(ranks, sig)
    return len(ranks)


def signal_processes(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass


def terminate_job(pgid: int | None, tag: str | None, grace_s: float = 10.0) -> int:
    """SIGTERM the launcher's group and every tagged process; SIGKILL what is left after `grace_s`.

    Returns how many processes needed SIGKILL.
    """
    signal_group(pgid, signal.SIGTERM)
    procs = tagged_processes(tag) if tag else []
    signal_processes(procs, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        procs = tagged_processes(tag) if tag else []
        if not procs and not group_alive(pgid):
            return 0
        time.sleep(0.2)
    signal_group(pgid, signal.SIGKILL)
    procs = tagged_processes(tag) if tag else []
    signal_processes(procs, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)
    return len(procs)


def group_alive(pgid: int | None) -> bool:
    """Whether any non-zombie process is still in group `pgid`."""
    if not pgid:
        return False
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.ZombieProcess, PermissionError):
            continue
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (bind to port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind `host:port` now (the same check torchrun's store does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Fail before launch, with the fix, when an explicitly chosen port is taken."""
    if not 0 < port < 65536:
        raise MedcoreError(f"Port {port} is out of range: use 1024-65535, or leave it empty for a free one.")
    if not port_is_free(port, host):
        raise MedcoreError(
            f"Port {port} on {host} is already in use (another job or service listens there). "
            "Pick another port, or leave it empty so MedCore chooses a free one."
        )
