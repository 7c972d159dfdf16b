"""A run folder that fills up (to a few MB, or to 0 bytes) or turns read-only mid-run: the job fails with the real
reason and the fix (not a signal torchrun sent afterwards), its end is recorded or, where nothing can be written,
reported to every observer, the last good checkpoint survives intact, and the run resumes once the disk is fixed.
Runs on a small tmpfs and a read-only bind mount (needs root to mount)."""

from __future__ import annotations

import errno
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
from medcore.rundir import FINAL_STATES, RunDir, write_json_atomic
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


def notes_workspace(root, monkeypatch):
    monkeypatch.setenv("MEDCORE_HOME", str(root))
    monkeypatch.setenv("MEDCORE_STEP_DELAY_S", "0.3")  # the trainer's test hook: the fault lands between saves
    ws = get_workspace(root)
    frame = pd.DataFrame(
        {"text": [f"note {i} shows finding {i % 3}" for i in range(48)], "label": ["a", "b", "c"] * 16}
    )
    redacted = RedactionInfo(status="redacted", mode="safe-harbor", method="mask", parent="raw")
    import_dataset(ws, frame, "notes", ColumnMapping(text="text", label="label"), redaction=redacted)
    certify_redacted(ws, "notes")  # synthetic notes: the audit record the training gate checks
    return ws


SPEC = {"dataset": "notes", "nproc_per_node": 2, "max_steps": 12, "save_interval": 3, "micro_batch": 4,
        "max_length": 32, "keep_last_k": 1}  # fmt: skip


def wait_failed(run_id, ws):
    info = wait_for(lambda: (i := run_status(run_id, ws)).state in FINAL_STATES and i.ended_at and i, 90, "failure")
    assert info.state == "failed", info
    # The real cause, not the SIGTERM torchrun sent the surviving rank afterwards, nor an out-of-memory guess.
    assert "SIGTERM" not in info.error and "memory" not in info.hint, (info.error, info.hint)
    return info


@pytest.mark.slow
@pytest.mark.parametrize("leave_bytes", [4 * 1024 * 1024, 0], ids=["nearly-full", "zero-bytes"])
def test_full_disk_fails_clearly_keeps_the_last_checkpoint_and_resumes(small_disk, monkeypatch, leave_bytes):
    ws = notes_workspace(small_disk / "workspace", monkeypatch)
    run_id = launch_run(SPEC, ws)
    rd = RunDir(ws.runs / run_id)
    first = wait_for(rd.latest_checkpoint, 120, "a first checkpoint")
    filler = fill_disk(small_disk, leave_bytes=leave_bytes)

    failed = wait_failed(run_id, ws)
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


@pytest.fixture
def bind_mounts():
    """make_read_only(folder): bind-mount `folder` onto itself read-only (unmounted at the end)."""
    mounted = []

    def make_read_only(folder):
        proc = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot bind-mount here (needs root): {proc.stderr.strip()}")
        mounted.append(folder)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)

    yield make_read_only
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_read_only_run_folder_fails_as_read_only_and_resumes_once_writable(tmp_path, monkeypatch, bind_mounts):
    ws = notes_workspace(tmp_path / "workspace", monkeypatch)
    run_id = launch_run(SPEC, ws)
    rd = RunDir(ws.runs / run_id)
    wait_for(rd.latest_checkpoint, 120, "a first checkpoint")
    bind_mounts(rd.path)  # files already open (train.log, metrics.jsonl) stay writable; nothing new can be created

    failed = wait_failed(run_id, ws)
    assert "read-only" in failed.error and "writable" in failed.hint, (failed.error, failed.hint)
    assert failed.extra.get("write_error") == "EROFS"  # shown, though status.json could not take it

    subprocess.run(["umount", "-l", str(rd.path)], check=True)
    settled = run_status(run_id, ws)  # the first observer with a writable folder records the end
    assert settled.state == "failed" and rd.read_status()["state"] == "failed" and "read-only" in settled.error
    monkeypatch.delenv("MEDCORE_STEP_DELAY_S")
    resume_run(run_id, ws)
    done = wait_for(lambda: (i := run_status(run_id, ws)).state in FINAL_STATES and i.ended_at and i, 180, "done")
    assert done.state == "completed" and done.step == 12


def test_a_failed_atomic_write_raises_only_its_own_error(tmp_path, bind_mounts):
    folder = tmp_path / "read-only"
    folder.mkdir()
    bind_mounts(folder)
    with pytest.raises(OSError) as err:
        write_json_atomic(folder / "status.json", {"state": "failed"})
    # Not the temp file's failed cleanup stacked on top ("During handling of the above exception, ...").
    assert err.value.errno == errno.EROFS and err.value.__context__ is None
