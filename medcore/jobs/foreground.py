"""A job run in the foreground (`medcore train` without --detach): this process is its supervisor.

torchrun runs in its own session with its output in train.log, which is echoed to the terminal. The launcher is
recorded in launch.json like a detached supervisor, so `medcore runs` sees, cancels, stops and resumes the run, and
an observer settles it if this process is killed. Ctrl-C, SIGTERM and SIGHUP (the terminal closing) ask the ranks to
save and stop; the final state is written once torchrun exits. If this process dies, torchrun is sent SIGTERM by the
kernel (PR_SET_PDEATHSIG), which it forwards to the ranks: they save and stop too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import BinaryIO

from medcore.jobs.diagnose import ATTEMPT_MARK
from medcore.jobs.resume import record_dataset_hash
from medcore.jobs.state import record_run_end, settle_final_state, torchrun_shutdown_env, update_launch, write_request
from medcore.procs import JOB_TAG_ENV, proc_ref, signal_group, signal_ranks
from medcore.rundir import RunDir

POLL_S = 0.2
RELAYED = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP (the terminal closed)"}
# Runs torchrun with PR_SET_PDEATHSIG=SIGTERM (kept across exec), unless its launcher is already gone. A shim
# rather than preexec_fn: a fork of a threaded process (pytest, the console) may only exec.
PDEATHSIG_SHIM = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def echo_log(path, offset: int, out: BinaryIO | None) -> int:
    """Copy train.log from byte `offset` to `out`; returns the new offset. A closed terminal stops the echo only."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return offset
    if chunk and out is not None:
        with contextlib.suppress(OSError, ValueError):
            out.write(chunk)
            out.flush()
    return offset + len(chunk)


def run_foreground(rd: RunDir, command: list[str], out: BinaryIO | None = None) -> int:
    """Run `command` (torchrun for `rd`) with this process as its supervisor; returns torchrun's exit code."""
    out = out if out is not None else sys.stdout.buffer
    tag = f"{rd.run_id}:fg:{os.getpid()}"
    update_launch(rd, backend="local", foreground=True, command=[str(c) for c in command], tag=tag,
                  hostname=socket.gethostname(), queued_at=time.time(), supervisor=proc_ref(os.getpid()),
                  torchrun=None, started_at=None)  # fmt: skip
    rd.clear_exits()
    rd.remove_temp_checkpoints()  # left by a save that was interrupted; no rank of this attempt is saving yet
    record_dataset_hash(rd)  # a resume refuses data re-imported since
    rd.update_status(state="starting", error=None, hint=None, exit_code=None, ended_at=None)
    offset = rd.log.stat().st_size if rd.log.exists() else 0
    with open(rd.log, "ab") as log:
        log.write(f"[medcore.train {time.strftime('%H:%M:%S')}] {ATTEMPT_MARK}{' '.join(command)}\n".encode())
        log.flush()
        shim = [sys.executable, "-c", PDEATHSIG_SHIM, str(os.getpid()), command[0], *command[1:]]
        env = {**torchrun_shutdown_env(rd), **os.environ, JOB_TAG_ENV: tag, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(shim, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    update_launch(rd, torchrun={**proc_ref(proc.pid), "pgid": proc.pid}, started_at=time.time())
    with relay_signals(rd, proc):
        while proc.poll() is None:
            offset = echo_log(rd.log, offset, out)
            time.sleep(POLL_S)
    code = proc.wait()
    echo_log(rd.log, offset, out)
    if "write_error" not in settle_final_state(rd, code):  # else the next observer settles it, once it can
        record_run_end(rd, log=lambda message: None)
    return code


@contextlib.contextmanager
def relay_signals(rd: RunDir, proc: subprocess.Popen):
    """While the job runs, Ctrl-C, SIGTERM and SIGHUP become "save and stop" for the ranks (they reach only this
    process: torchrun has its own session)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def relay(signum, frame):
        with contextlib.suppress(OSError):
            write_request(rd, "stop", why=f"`medcore train` got {RELAYED[signum]}")
        ref = proc_ref(proc.pid)
        if not signal_ranks(ref, signal.SIGINT):
            signal_group(proc.pid, signal.SIGTERM)  # no rank yet: nothing to save, torchrun ends the job

    previous = {sig: signal.signal(sig, relay) for sig in RELAYED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
