"""`make run` serves the console: the Makefile's own streamlit command answers on / and /_stcore/health."""

from __future__ import annotations

import pytest
from app_helpers import get, make_run_command, serve_console

from medcore.procs import free_port


@pytest.mark.slow
def test_make_run_serves_console(workspace):
    port = free_port()
    command = make_run_command(port, workspace.root)
    assert f"--server.port {port}" in command and "--server.address 127.0.0.1" in command
    with serve_console(port, workspace.root, workspace.root / "console.log") as url:  # asserts health == 200 "ok"
        status, body = get(f"{url}/")
        assert status == 200 and "<html" in body.lower()
