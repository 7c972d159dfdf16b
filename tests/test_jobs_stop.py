"""Stopping a job: save-and-stop gets a grace period that covers a save, cancel stops now without saving, torchrun
waits as long, and a start clears the temp folders an interrupted save left."""

from __future__ import annotations

import sys

import pytest
from polling import wait_for
from train_datasets import import_certified_notes

from medcore.jobs import cancel_run, checkpoint_now, launch_run, read_logs, run_status, stop_run, submit_command
from medcore.jobs.slurm import SlurmConfig, render_sbatch
from medcore.jobs.state import CANCEL_GRACE_S, STOP_GRACE_MIN_S, read_request, stop_grace_s, write_request
from medcore.rundir import CHECKPOINT_TMP_PREFIX, FINAL_STATES, LAST_SAVE_S, RunDir, write_json_atomic

# Writes status.json like medcore.train; on SIGINT it "saves" for save-s seconds then ends stopped, or, with
# --hang-on-stop, never gets there (a save stuck on a dead filesystem).
STANDIN = """
import os, signal, sys, time
from pathlib import Path
from medcore.rundir import RunDir

rd, steps = RunDir(Path(sys.argv[1])), int(sys.argv[2])
flags = dict(arg.lstrip("-").partition("=")[::2] for arg in sys.argv[3:])

def save_and_stop(signum, frame):
    if "hang-on-stop" in flags:
        return
    time.sleep(float(flags.get("save-s", 0)))
    rd.update_status(state="stopped", last_checkpoint="checkpoint-x")
    sys.exit(0)

signal.signal(signal.SIGINT, save_and_stop)
rd.update_status(state="running", step=0, max_steps=steps, shutdown_timeout=os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT"))
for step in range(1, steps + 1):
    time.sleep(0.1)
    rd.update_status(state="running", step=step)
rd.update_status(state="completed", step=steps)
"""


@pytest.fixture
def standin(tmp_path):
    path = tmp_path / "standin.py"
    path.write_text(STANDIN)
    return path


def new_run(ws, run_id: str, last_save_s: float | None = None) -> RunDir:
    rd = RunDir(ws.runs / run_id)
    rd.path.mkdir(parents=True)
    if last_save_s is not None:
        rd.update_status(**{LAST_SAVE_S: last_save_s})
    return rd


def settled(run_id, ws, timeout=30.0):
    """The run's final state once its launcher recorded the end."""
    return wait_for(
        lambda: (i := run_status(run_id, ws)).state in FINAL_STATES and i.ended_at and i, timeout, f"{run_id} ends"
    )


def test_the_stop_grace_is_twice_the_last_save_and_at_least_a_minute(workspace):
    assert stop_grace_s(new_run(workspace, "never-saved")) == STOP_GRACE_MIN_S == 60
    assert stop_grace_s(new_run(workspace, "quick-saves", last_save_s=12.5)) == 60
    slow = new_run(workspace, "slow-saves", last_save_s=95.0)
    assert stop_grace_s(slow) == 190
    write_request(slow, "stop")
    assert read_request(slow)["grace_s"] == 190
    write_request(slow, "stop", grace_s=600)  # configurable
    assert read_request(slow)["grace_s"] == 600
    write_request(slow, "cancel")  # cancel saves nothing: a short SIGTERM -> SIGKILL grace
    assert read_request(slow)["grace_s"] == CANCEL_GRACE_S


def test_temp_checkpoints_are_removed_and_complete_ones_kept(workspace):
    rd = new_run(workspace, "interrupted")
    for name in ("checkpoint-4", f"{CHECKPOINT_TMP_PREFIX}6", f"{CHECKPOINT_TMP_PREFIX}8"):
        (rd.checkpoints / name / "deepspeed").mkdir(parents=True)
    assert rd.remove_temp_checkpoints() == [f"{CHECKPOINT_TMP_PREFIX}6", f"{CHECKPOINT_TMP_PREFIX}8"]
    assert sorted(p.name for p in rd.checkpoints.iterdir()) == ["checkpoint-4"]
    assert RunDir(workspace.runs / "no-such-run").remove_temp_checkpoints() == []


def test_the_sbatch_script_gives_torchrun_the_stop_grace(workspace):
    rd = new_run(workspace, "on-slurm", last_save_s=200.0)
    text = render_sbatch(rd, SlurmConfig(), nnodes=1, nproc_per_node=2, train_args=["-m", "medcore.train", "X"])
    assert "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=400" in text


@pytest.mark.slow
def test_a_start_clears_interrupted_saves_and_raises_torchrun_shutdown_timeout(workspace, standin):
    rd = new_run(workspace, "restarted", last_save_s=50.0)
    (rd.checkpoints / "checkpoint-5").mkdir(parents=True)
    (rd.checkpoints / f"{CHECKPOINT_TMP_PREFIX}7" / "deepspeed").mkdir(parents=True)  # a save killed midway
    submit_command(rd, [sys.executable, str(standin), str(rd.path), "2"])
    assert settled("restarted", workspace).state == "completed"
    assert sorted(p.name for p in rd.checkpoints.iterdir()) == ["checkpoint-5"]
    assert f"removed {CHECKPOINT_TMP_PREFIX}7" in read_logs("restarted", 50, workspace)
    assert rd.read_status()["shutdown_timeout"] == "100"  # torchrun waits 2 x the last save before SIGKILL


@pytest.mark.slow
def test_a_save_within_the_grace_period_completes_the_stop(workspace, standin):
    rd = new_run(workspace, "slow-save")
    submit_command(rd, [sys.executable, str(standin), str(rd.path), "600", "--save-s=2"])
    wait_for(lambda: run_status("slow-save", workspace).state == "running", what="running")
    stop_run("slow-save", workspace, grace_s=8.0)
    info = settled("slow-save", workspace)
    assert info.state == "stopped" and info.exit_code == 0


@pytest.mark.slow
def test_a_stop_that_outlives_its_grace_period_is_terminated(workspace, standin):
    rd = new_run(workspace, "stuck-save")
    submit_command(rd, [sys.executable, str(standin), str(rd.path), "600", "--hang-on-stop"])
    wait_for(lambda: run_status("stuck-save", workspace).state == "running", what="running")
    stop_run("stuck-save", workspace, grace_s=1.0)
    info = settled("stuck-save", workspace, timeout=20)
    assert info.state == "failed" and info.exit_code not in (0, None)
    assert info.error.startswith("Save-and-stop was requested but the trainer did not confirm a checkpoint.")
    assert "did not end the job within its grace period (1s); terminating it" in read_logs("stuck-save", 50, workspace)


@pytest.mark.slow
def test_cancel_stops_the_real_trainer_without_saving(workspace, monkeypatch):
    import_certified_notes(workspace)
    monkeypatch.setenv("MEDCORE_STEP_DELAY_S", "0.3")
    spec = {"dataset": "notes", "nproc_per_node": 1, "max_steps": 500, "micro_batch": 4, "max_length": 32,
            "evaluate_after": False}  # fmt: skip
    run_id = launch_run(spec, workspace)
    rd = RunDir(workspace.runs / run_id)
    wait_for(lambda: run_status(run_id, workspace).state == "running", 180, "running")
    checkpoint_now(run_id, workspace)
    saved = wait_for(rd.latest_checkpoint, 60, "the requested checkpoint")
    assert rd.read_status()[LAST_SAVE_S] > 0  # the save's duration, which sizes the next stop's grace

    info = cancel_run(run_id, workspace)
    assert info.state == "cancelled" and info.ended_at is not None
    assert rd.latest_checkpoint() == saved  # nothing saved on the way out
    assert not list(rd.checkpoints.glob(f"{CHECKPOINT_TMP_PREFIX}*"))
    assert "Cancelled on request at step" in read_logs(run_id, 200, workspace)


@pytest.mark.slow
def test_the_runs_page_saves_and_stops_or_checkpoints_a_running_job(workspace, standin):
    from app_helpers import open_page, widget

    rd = new_run(workspace, "live")
    write_json_atomic(rd.spec, {"model": "minilm", "task": "classification"})
    submit_command(rd, [sys.executable, str(standin), str(rd.path), "600"])
    wait_for(lambda: run_status("live", workspace).state == "running", what="running")
    at = open_page("runs")
    assert [b.label for b in at.button] == ["Save and stop", "Checkpoint now", "Cancel"]
    at = widget(at.button, "Checkpoint now").click().run(timeout=60)
    assert not at.exception and not at.error
    assert rd.checkpoint_trigger.exists()  # the trainer saves at its next step and deletes it
    at = widget(at.button, "Save and stop").click().run(timeout=60)
    assert not at.exception and not at.error
    assert read_request(rd)["action"] == "stop"
    info = settled("live", workspace)
    assert info.state == "stopped" and info.exit_code == 0
