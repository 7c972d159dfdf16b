"""Whole-dataset redaction as a detached process: started, polled, completed or failed truthfully."""

from __future__ import annotations

import os
import signal
import time

import pandas as pd
import pytest

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, read_manifest
from medcore.errors import MedcoreError
from medcore.job_folder import jobs_dir
from medcore.phi.job import redaction_status, start_redaction

CANARY = "Zebulon Quartermaine"


@pytest.fixture
def notes(workspace):
    frame = pd.DataFrame({"text": [f"Seen by Dr. {CANARY} on 03/14/2023 (bed {i})." for i in range(30)],
                          "label": ["a", "b", "c"] * 10})  # fmt: skip
    import_dataset(workspace, frame, "notes", ColumnMapping(text="text", label="label"))
    return workspace


def wait_final(ws, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = redaction_status(ws, job_id)
        if status["state"] in ("completed", "failed"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"redaction job {job_id} did not finish in {timeout}s")


@pytest.mark.slow
def test_redaction_job_completes_in_its_own_process(notes):
    job_id = start_redaction(notes, "notes", "safe-harbor", "mask")
    status = wait_final(notes, job_id)
    assert status["state"] == "completed" and status["output"] == "notes-redacted" and status["rows"] == 30
    assert status["pid"] != os.getpid()
    assert read_manifest(notes, "notes-redacted").redaction.status == "redacted"
    folder = jobs_dir(notes) / job_id
    for name in ("status.json", "request.json", "job.log"):
        assert CANARY not in (folder / name).read_text()  # counts and names only, never note text


def test_bad_requests_fail_before_any_process_starts(notes, tmp_path):
    with pytest.raises(MedcoreError, match="Dataset 'missing' not found"):
        start_redaction(notes, "missing", "safe-harbor", "mask")
    with pytest.raises(MedcoreError, match="already exists"):
        start_redaction(notes, "notes", "safe-harbor", "mask", out_name="notes")
    with pytest.raises(MedcoreError, match="No PHI tagger at .*no-tagger"):
        start_redaction(notes, "notes", "safe-harbor", "mask", tagger=tmp_path / "no-tagger")
    assert not jobs_dir(notes).exists() or not any(jobs_dir(notes).iterdir())


@pytest.mark.slow
def test_a_killed_redaction_reads_as_failed_and_leaves_no_dataset(notes):
    job_id = start_redaction(notes, "notes", "safe-harbor", "mask")
    os.kill(redaction_status(notes, job_id)["pid"], signal.SIGKILL)
    status = wait_final(notes, job_id, timeout=30)
    assert status["state"] == "failed" and "ended without a result" in status["error"]
    assert not (notes.datasets / "notes-redacted").exists()
