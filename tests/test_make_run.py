"""`make run` serves the console: the Makefile's own streamlit command answers on / and /_stcore/health."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess

import pytest
from app_helpers import ROOT, get, make_run_command, wait_for

from medcore.jobs.procs import free_port


@pytest.mark.slow
def test_make_run_serves_console(workspace):
    port = free_port()
    command = make_run_command(port, workspace.root)
    assert f"--server.port {port}" in command and "--server.address 127.0.0.1" in command
    env = {**os.environ, "MEDCORE_HOME": str(workspace.root), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen(
        shlex.split(command), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        status, body = wait_for(f"http://127.0.0.1:{port}/_stcore/health", proc)
        assert (status, body.strip()) == (200, "ok")
        status, body = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<html" in body.lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
