"""The evaluation job: checked before its process starts, progress while it runs, eval folders when it ends."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest
from polling import wait_for

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, read_manifest
from medcore.demo.notes import generate_notes
from medcore.errors import MedcoreError
from medcore.evaluate.job import evaluation_status, start_evaluation
from medcore.evaluate.results import load_eval
from medcore.job_folder import jobs_dir
from medcore.rundir import read_json


def import_notes(ws, name: str = "notes") -> str:
    frame = pd.DataFrame(generate_notes(seed=0, n=40))[["note_id", "text", "specialty"]]
    import_dataset(ws, frame, name, ColumnMapping(text="text", label="specialty", id="note_id"),
                   task="classification", split=(0.6, 0.1, 0.3))  # fmt: skip
    return name


def finished(ws, job_id: str):
    status = evaluation_status(ws, job_id)
    return status if status["state"] not in ("queued", "running") else None


def test_bad_requests_fail_before_any_process(workspace):
    import_notes(workspace)
    with pytest.raises(MedcoreError, match="no-such-model"):
        start_evaluation(workspace, "no-such-model", "notes")
    with pytest.raises(MedcoreError, match="'split'"):
        start_evaluation(workspace, "minilm", "notes", split="holdout")
    with pytest.raises(MedcoreError, match="batch_size"):
        start_evaluation(workspace, "minilm", "notes", batch_size=0)
    with pytest.raises(MedcoreError, match="not-there"):
        start_evaluation(workspace, "minilm", "notes", compare=["not-there"])
    assert not jobs_dir(workspace).exists() or not any(jobs_dir(workspace).iterdir())


@pytest.mark.slow
def test_a_side_by_side_job_reports_progress_and_leaves_both_evals(workspace):
    import_notes(workspace)
    job_id = start_evaluation(workspace, "minilm", "notes", compare=["minilm"], resamples=200)
    status = wait_for(lambda: finished(workspace, job_id), timeout=240, what="the evaluation job")
    assert status["state"] == "completed", status.get("error")
    test_rows = read_manifest(workspace, "notes").rows["test"]
    assert status["done"] == status["total"] == 2 * test_rows
    reference, other = (load_eval(workspace, eval_id) for eval_id in status["eval_ids"])
    assert reference.comparison is not None and reference.comparison["models"] == status["eval_ids"]
    assert len(reference.predictions) == len(other.predictions) == test_rows
    assert reference.result["n"] == test_rows and reference.config["resamples"] == 200


@pytest.mark.slow
def test_a_killed_job_reads_failed(workspace):
    import_notes(workspace)
    job_id = start_evaluation(workspace, "minilm", "notes")
    folder = jobs_dir(workspace) / job_id
    pid = read_json(folder / "status.json")["pid"]
    os.kill(pid, signal.SIGKILL)
    status = wait_for(lambda: finished(workspace, job_id), timeout=30, what="the killed job to settle")
    assert status["state"] == "failed" and "ended without a result" in status["error"]
    assert not list(workspace.evals.glob("eval-*"))


@pytest.mark.slow
def test_cli_detach_then_status_until_done(workspace, capsys):
    import json

    from medcore.cli import main

    import_notes(workspace)
    args = ["eval", "run", "minilm", "--dataset", "notes", "--resamples", "200", "--detach", "--json"]
    assert main(args) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]

    def status_code():
        code = main(["eval", "status", job_id, "--json"])
        return None if code == 3 else ("ended", code)

    assert wait_for(status_code, timeout=180, what="the detached eval") == ("ended", 0)
    status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status["state"] == "completed" and len(status["eval_ids"]) == 1
    assert (workspace.evals / status["eval_ids"][0] / "result.json").exists()
    assert main(["eval", "status", "eval-nope"]) == 1
    assert "No evaluation job 'eval-nope'" in capsys.readouterr().err
