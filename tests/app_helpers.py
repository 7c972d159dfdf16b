"""Helpers shared by the console tests: open a page of the app under AppTest; start and poll `make run`'s server."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "app" / "main.py")


def open_page(page: str, timeout: float = 60, state: dict | None = None) -> AppTest:
    """The console opened on app/views/<page>.py, after one run of the entry (as a browser would)."""
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    return at.switch_page(f"views/{page}.py").run()


def widget(widgets, label: str):
    """The widget with this label (fails listing the labels present)."""
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget '{label}'; labels: {[w.label for w in widgets]}"
    return found[0]


def texts(at: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(at, kind)]


def make_run_command(port: int, home: Path) -> str:
    """The `streamlit run` line that `make run` would execute, read from `make -n` (install and demo skipped)."""
    out = subprocess.run(
        ["make", "-n", "run", f"PORT={port}", f"MEDCORE_HOME={home}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if "streamlit run app/main.py" in line]
    assert len(lines) == 1, out
    return lines[0]


def get(url: str) -> tuple[int, str]:
    # Loopback only; a proxy from the environment must not be consulted.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.status, response.read().decode("utf-8", errors="replace")


def wait_for(url: str, proc: subprocess.Popen, deadline_s: float = 60) -> tuple[int, str]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the console exited with {proc.returncode}")
        try:
            return get(url)
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"no answer from {url} within {deadline_s} s")


@contextlib.contextmanager
def serve_console(port: int, home: Path, log_path: Path, extra_args: tuple[str, ...] = ()):
    """Run the Makefile's own `streamlit run` line on `port` over workspace `home` until the block ends.

    Yields the base URL once /_stcore/health answers; the whole process group is stopped afterwards.
    extra_args: more Streamlit options (e.g. --secrets.files FILE).
    """
    env = {**os.environ, "MEDCORE_HOME": str(home), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*shlex.split(make_run_command(port, home)), *extra_args], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            status, body = wait_for(f"http://127.0.0.1:{port}/_stcore/health", proc)
            assert (status, body.strip()) == (200, "ok")
            yield f"http://127.0.0.1:{port}"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def log_in(name: str, password: str) -> AppTest:
    """The console's front page, with `name` logged in through the password form."""
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    widget(at.text_input, "User name").input(name)
    widget(at.text_input, "Password").input(password)
    return widget(at.button, "Log in").click().run()
