"""A foreground `medcore train` killed as an operator would (kill, kill -9, the terminal closing): the run ends
`stopped` with its checkpoint, its end recorded, no process left, and `medcore runs resume` takes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from polling import wait_for
from train_datasets import import_certified_notes

from medcore.jobs import cancel_run, resume_run, run_status
from medcore.jobs.state import read_launch
from medcore.procs import tagged_processes
from medcore.rundir import FINAL_STATES, RunDir


@pytest.fixture
def notes(workspace):
    import_certified_notes(workspace)
    return workspace


def run_folder(ws):
    """The run's folder: runs/ also holds dot-named lock and queue entries."""
    return next((p for p in ws.runs.iterdir() if p.is_dir() and not p.name.startswith(".")), None)


def start_foreground(ws, tmp_path) -> tuple[subprocess.Popen, RunDir]:
    spec = tmp_path / "spec.yaml"
    spec.write_text("dataset: notes\nnproc_per_node: 2\nmax_steps: 200\nmicro_batch: 4\nmax_length: 32\n")
    env = {**os.environ, "MEDCORE_HOME": str(ws.root), "MEDCORE_STEP_DELAY_S": "0.3"}
    # Its own session, as a shell gives a command: the signal goes to its whole process group.
    cli = subprocess.Popen([sys.executable, "-m", "medcore", "train", str(spec)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    rd = RunDir(wait_for(lambda: ws.runs.exists() and run_folder(ws), 60, "the run folder"))
    wait_for(lambda: rd.read_status().get("state") == "running" and rd.read_status().get("step", 0) >= 2, 120, "run")
    return cli, rd


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_a_killed_foreground_run_saves_stops_and_resumes(notes, tmp_path, sig):
    cli, rd = start_foreground(notes, tmp_path)
    tag = read_launch(rd).get("tag")  # the job's processes carry it (medcore.procs.JOB_TAG_ENV)
    os.killpg(cli.pid, sig)
    cli.wait(timeout=90)

    info = wait_for(lambda: (i := run_status(rd.run_id, notes)).state in FINAL_STATES and i.ended_at and i, 90, "end")
    assert info.state == "stopped", info
    assert info.exit_code == 0 and rd.latest_checkpoint() is not None
    # The launcher says why it stopped the ranks; killed outright, the kernel told torchrun (PR_SET_PDEATHSIG).
    why = "`medcore train` was killed" if sig == signal.SIGKILL else f"`medcore train` got {sig.name}"
    assert f"Stopped because {why}" in info.hint, info.hint
    assert tag and tagged_processes(tag) == []
    assert resume_run(rd.run_id, notes) == rd.run_id  # no longer "still active"
    assert cancel_run(rd.run_id, notes, grace_s=5.0).state == "cancelled"
