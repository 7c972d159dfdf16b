"""launchers/: the hand-launch scripts parse, read the run folder, and fail clearly without one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCHERS = Path(__file__).resolve().parents[1] / "launchers"
SCRIPTS = ["torchrun_single.sh", "torchrun_multinode.sh", "slurm.sbatch"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_is_valid_bash_and_documents_its_usage(name):
    script = LAUNCHERS / name
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert text.startswith("#!") and "-m medcore.train" in text
    assert ("sbatch [options]" if name.endswith(".sbatch") else "usage: $0 RUN_DIR") in text
    assert "set -euo pipefail" in text


@pytest.mark.parametrize(
    ("spec", "key", "expected"),
    [
        ({"nproc_per_node": 2}, "nproc_per_node", "2"),
        ({"distributed": {"nnodes": 3}}, "nnodes", "3"),
        ({"model": "minilm"}, "nnodes", "1"),
    ],
)
def test_spec_field_reads_flat_and_nested_keys(tmp_path, spec, key, expected):
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = subprocess.run(
        [sys.executable, str(LAUNCHERS / "_spec_field.py"), str(tmp_path / "spec.json"), key, "1"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == expected


@pytest.mark.parametrize(("name", "args"), [("torchrun_single.sh", []), ("torchrun_multinode.sh", ["0", "127.0.0.1"])])
def test_scripts_refuse_a_folder_without_spec(tmp_path, name, args):
    done = subprocess.run(
        ["bash", str(LAUNCHERS / name), str(tmp_path), *args],
        capture_output=True, text=True, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 1
    assert "spec.json not found" in done.stderr and str(tmp_path) in done.stderr
