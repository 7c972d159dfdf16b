"""DeepSpeed's C++ ops: found in the build cache without building anything, and built with one ninja everywhere."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from medcore import deepspeed_ops


def test_missing_ops_reads_both_cache_layouts_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(deepspeed_ops, "wanted_ops", lambda: deepspeed_ops.CPU_OPS)  # as on a CPU host, on any host
    assert deepspeed_ops.missing_ops(tmp_path / "none") == ["deepspeed_shm_comm", "cpu_adam"]
    assert not (tmp_path / "none").exists()
    by_version = tmp_path / "cache" / "py311_cpu" / "cpu_adam"  # the default root adds a version folder
    by_version.mkdir(parents=True)
    (by_version / "cpu_adam.so").touch()
    assert deepspeed_ops.missing_ops(tmp_path / "cache") == ["deepspeed_shm_comm"]
    (tmp_path / "cache" / "deepspeed_shm_comm").mkdir()  # TORCH_EXTENSIONS_DIR's layout: no version folder
    (tmp_path / "cache" / "deepspeed_shm_comm" / "deepspeed_shm_comm.so").touch()
    assert deepspeed_ops.missing_ops(tmp_path / "cache") == []


def test_a_process_started_outside_the_venv_builds_with_the_venvs_ninja(monkeypatch):
    # The console is started as .venv/bin/streamlit with the system's PATH; a CLI user has the venv activated. Both
    # must run the same ninja, or each takes the other's build for stale and compiles the ops again.
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", bin_dir, "/bin"]))
    deepspeed_ops.prefer_this_environments_tools()
    assert os.environ["PATH"].split(os.pathsep) == [bin_dir, "/usr/bin", "/bin"]
    deepspeed_ops.prefer_this_environments_tools()  # idempotent: the trainer and zero3_load may both call it
    assert os.environ["PATH"].split(os.pathsep) == [bin_dir, "/usr/bin", "/bin"]
    if (Path(bin_dir) / "ninja").exists():  # deepspeed installs pip's ninja into the venv
        assert shutil.which("ninja") == str(Path(bin_dir) / "ninja")
