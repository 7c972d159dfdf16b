"""A run folder that fills up mid-run: the job fails with the reason and the fix, the last good checkpoint survives
intact, and the run resumes from it once space is freed. Runs on a small tmpfs (needs root to mount)."""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import pytest
from polling import wait_for
from train_datasets import certify_redacted

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, RedactionInfo
from medcore.jobs import launch_run, resume_run, run_status
from medcore.jobs.resume import validate_checkpoint
from medcore.rundir import FINAL_STATES, RunDir
from medcore.train import load_spec
from medcore.workspace import get_workspace

SIZE_MB = 400  # one minilm checkpoint is ~90 MB (DeepSpeed saves the whole module state); a few fit


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(folder, leave_bytes: int):
    """Take all free space on the filesystem of `folder` but `leave_bytes` (enough for logs and status)."""
    stat = os.statvfs(folder)
    size = stat.f_bavail * stat.f_frsize - leave_bytes
    filler = folder / "filler.bin"
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, size)
    return filler


@pytest.mark.slow
def test_full_disk_fails_clearly_keeps_the_last_checkpoint_and_resumes(small_disk, monkeypatch):
    monkeypatch.setenv("MEDCORE_HOME", str(small_disk / "workspace"))
    monkeypatch.setenv("MEDCORE_STEP_DELAY_S", "0.3")  # the trainer's test hook: the disk fills between saves
    ws = get_workspace(small_disk / "workspace")
    frame = pd.DataFrame(
        {"text": [f"note {i} shows finding {i % 3}" for i in range(48)], "label": ["a", "b", "c"] * 16}
    )
    redacted = RedactionInfo(status="redacted", mode="safe-harbor", method="mask", parent="raw")
    import_dataset(ws, frame, "notes", ColumnMapping(text="text", label="label"), redaction=redacted)
    certify_redacted(ws, "notes")  # synthetic notes: the audit record the training gate checks
    spec = {"dataset": "notes", "nproc_per_node": 2, "max_steps": 12, "save_interval": 3, "micro_batch": 4,
            "max_length": 32, "keep_last_k": 1}  # fmt: skip
    run_id = launch_run(spec, ws)
    rd = RunDir(ws.runs / run_id)
    first = wait_for(rd.latest_checkpoint, 120, "a first checkpoint")
    filler = fill_disk(small_disk, leave_bytes=4 * 1024 * 1024)

    failed = wait_for(lambda: (i := run_status(run_id, ws)).state in FINAL_STATES and i.ended_at and i, 90, "failure")
    assert failed.state == "failed"
    assert "disk" in failed.error.lower() and "free disk space" in failed.hint.lower(), (failed.error, failed.hint)
    # The newest complete checkpoint is whole and resumable; a half-written one never shows as complete.
    last = rd.latest_checkpoint()
    assert last is not None and int(last.name.split("-")[1]) >= int(first.name.split("-")[1])
    assert validate_checkpoint(rd, load_spec(rd.spec)).problems == []

    filler.unlink()
    monkeypatch.delenv("MEDCORE_STEP_DELAY_S")
    resume_run(run_id, ws)
    done = wait_for(lambda: (i := run_status(run_id, ws)).state in FINAL_STATES and i.ended_at and i, 180, "done")
    assert done.state == "completed" and done.step == 12
