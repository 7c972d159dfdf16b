"""medcore.jobs with the real trainer: launch checks, a SIGKILLed rank, resume from the last checkpoint."""

from __future__ import annotations

import json
import socket
import time

import psutil
import pytest
from polling import wait_for
from train_datasets import import_certified_notes

from medcore.errors import MedcoreError
from medcore.jobs import checkpoint_now, launch_run, read_logs, resume_run, run_status, stop_run
from medcore.jobs.resume import validate_checkpoint
from medcore.jobs.state import read_launch
from medcore.procs import tagged_processes
from medcore.rundir import FINAL_STATES, RunDir
from medcore.train import load_spec


@pytest.fixture
def notes(workspace):
    import_certified_notes(workspace)
    return workspace


def run_folders(ws) -> list[str]:
    return sorted(p.name for p in ws.runs.iterdir() if not p.name.startswith("."))


def test_invalid_spec_is_rejected_before_anything_is_created(notes):
    with pytest.raises(MedcoreError, match="Invalid run spec.*unknown field 'learning_rate'"):
        launch_run({"dataset": "notes", "learning_rate": 1e-3}, notes)
    with pytest.raises(MedcoreError, match="no-such-data"):
        launch_run({"dataset": "no-such-data"}, notes)
    assert run_folders(notes) == []


def test_busy_port_is_rejected_before_anything_is_created(notes):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(MedcoreError, match=f"Port {port} on 127.0.0.1 is already in use"):
            launch_run({"dataset": "notes", "max_steps": 2}, notes, port=port)
        endpoint = {"nnodes": 2, "rdzv_endpoint": f"127.0.0.1:{port}", "run_id": "busy-port"}
        with pytest.raises(MedcoreError, match=f"Port {port} on 127.0.0.1 is already in use"):
            launch_run({"dataset": "notes", "max_steps": 2, **endpoint}, notes)
    assert run_folders(notes) == []


def test_slurm_without_sbatch_is_rejected_before_anything_is_created(notes, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MedcoreError, match="sbatch is not on PATH"):
        launch_run({"dataset": "notes", "max_steps": 2}, notes, backend="slurm")
    with pytest.raises(MedcoreError, match="Unknown backend 'k8s'"):
        launch_run({"dataset": "notes"}, notes, backend="k8s")
    assert run_folders(notes) == []


def metric_steps(rd: RunDir) -> list[int]:
    return [json.loads(line)["step"] for line in rd.metrics.read_text().splitlines() if '"loss"' in line]


@pytest.mark.slow
def test_killed_rank_fails_fast_with_a_reason_then_resumes_to_completion(notes, monkeypatch):
    monkeypatch.setenv("MEDCORE_STEP_DELAY_S", "0.3")  # the trainer's test hook: a kill lands mid-run
    spec = {"dataset": "notes", "nproc_per_node": 2, "max_steps": 16, "save_interval": 3, "micro_batch": 4,
            "max_length": 32, "log_interval": 1}  # fmt: skip
    run_id = launch_run(spec, notes)
    rd = RunDir(notes.runs / run_id)
    wait_for(lambda: (c := rd.latest_checkpoint()) and int(c.name.split("-")[1]) >= 3, 120, "a first checkpoint")
    assert run_status(run_id, notes).state == "running"
    saved_step = int(rd.latest_checkpoint().name.split("-")[1])

    ranks = psutil.Process(read_launch(rd)["torchrun"]["pid"]).children()
    assert len(ranks) == 2
    ranks[1].kill()
    killed_at = time.monotonic()
    failed = wait_for(
        lambda: (i := run_status(run_id, notes)).state in FINAL_STATES and i.ended_at and i, 10, "failed"
    )
    assert time.monotonic() - killed_at < 10
    assert failed.state == "failed"
    assert "killed by signal SIGKILL" in failed.error and "resume" in failed.hint
    assert failed.exit_code not in (0, None)

    # The checkpoint is checked against the spec before anything is relaunched.
    report = validate_checkpoint(rd, load_spec(rd.spec))
    assert (report.world_size, report.zero_stage, report.problems) == (2, 1, [])
    with pytest.raises(MedcoreError, match="World size differs: the checkpoint was saved by 2 rank"):
        validate_checkpoint(rd, load_spec(rd.spec, {"nproc_per_node": 1}))

    last = rd.latest_checkpoint()
    resumed_from = int(last.name.split("-")[1])
    assert resumed_from >= saved_step
    monkeypatch.delenv("MEDCORE_STEP_DELAY_S")
    assert resume_run(run_id, notes) == run_id
    done = wait_for(lambda: (i := run_status(run_id, notes)).state in FINAL_STATES and i.ended_at and i, 120, "done")
    assert done.state == "completed" and done.exit_code == 0 and done.step == 16
    assert f"resumed from checkpoint-{resumed_from} at step {resumed_from}" in read_logs(run_id, 400, notes)
    steps = metric_steps(rd)
    # Steps after the checkpoint were logged twice (before the kill and after the resume); none is missing.
    assert set(steps) == set(range(1, 17))
    assert steps[-1] == 16 and (rd.adapter / "adapter_config.json").exists()
    with pytest.raises(MedcoreError, match="completed .finished; nothing to resume."):
        resume_run(run_id, notes)

    # evaluate_after (on by default): the supervisor scores the completed run on its test split.
    tested = wait_for(
        lambda: (t := run_status(run_id, notes).test_eval) and t["state"] != "running" and t, 120, "eval"
    )
    assert tested["state"] == "completed", tested
    result = json.loads((notes.evals / tested["eval_id"] / "result.json").read_text())
    assert tested["value"] == result["metrics"]["accuracy"]["value"] and tested["n"] == result["n"]


@pytest.mark.slow
def test_checkpoint_now_then_save_and_stop(notes, monkeypatch):
    monkeypatch.setenv("MEDCORE_STEP_DELAY_S", "0.3")
    spec = {"dataset": "notes", "nproc_per_node": 2, "max_steps": 200, "micro_batch": 4, "max_length": 32}
    run_id = launch_run(spec, notes)  # save_interval 0: no periodic checkpoints, only requested ones
    rd = RunDir(notes.runs / run_id)
    wait_for(lambda: run_status(run_id, notes).state == "running", 120, "running")
    checkpoint_now(run_id, notes)
    first = wait_for(rd.latest_checkpoint, 30, "the requested checkpoint")
    assert not rd.checkpoint_trigger.exists()  # the trainer took the request
    stop_run(run_id, notes)
    stopped = wait_for(lambda: (i := run_status(run_id, notes)).state in FINAL_STATES and i.ended_at and i, 60, "stop")
    assert stopped.state == "stopped" and stopped.step < 200
    assert rd.latest_checkpoint() != first  # saved again on the way out
    assert tagged_processes(read_launch(rd)["tag"]) == []
    with pytest.raises(MedcoreError, match="is stopped, not running"):
        stop_run(run_id, notes)
