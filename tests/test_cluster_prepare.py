"""Generated launch files run for real: the run folder is made on the first node, then torchrun trains into it.

`python -m medcore.cluster.prepare` is checked in-process against a real workspace; the slow tests run a generated
two-node local launch (two torchrun processes meeting over c10d on 127.0.0.1 with the run id both files carry) and
a generated sbatch script under stand-ins for srun and scontrol (SLURM itself cannot run here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_datasets import write_dataset

from medcore.cluster import LaunchConfig, generate_launch, write_launch_file
from medcore.cluster.prepare import main as prepare_main
from medcore.procs import free_port
from medcore.rundir import RunDir, read_json

SPEC = {"dataset": "notes", "max_steps": 2, "nproc_per_node": 1, "micro_batch": 4, "max_length": 32,
        "evaluate_after": False}  # fmt: skip


@pytest.fixture
def notes(workspace):
    write_dataset(workspace, "notes", "classification", n=48)
    return workspace


def test_prepare_makes_the_run_folder_once_with_the_device_of_this_machine(notes, capsys):
    assert prepare_main(["r-1", "--spec", json.dumps(SPEC)]) == 0
    rd = RunDir(notes.runs / "r-1")
    spec = read_json(rd.spec)
    assert (spec["device"], spec["precision"], spec["dataset"]) == ("cpu", "fp32", "notes")  # resolved here
    assert read_json(rd.ds_config)["train_batch_size"] == 4
    assert rd.read_status()["state"] == "queued"
    assert "created" in capsys.readouterr().out
    before = rd.spec.stat().st_mtime_ns
    assert prepare_main(["r-1", "--spec", json.dumps({**SPEC, "max_steps": 99})]) == 0  # a requeued job: kept
    assert rd.spec.stat().st_mtime_ns == before and "kept (continuing)" in capsys.readouterr().out


def test_prepare_refuses_what_this_workspace_cannot_run(notes, capsys):
    assert prepare_main(["r-2", "--spec", json.dumps({**SPEC, "dataset": "no-such-data"})]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: run r-2:") and "no-such-data" in err
    assert not (notes.runs / "r-2").exists()
    assert prepare_main(["r-2", "--spec", "[1, 2]"]) == 2
    assert "not a JSON object" in capsys.readouterr().err


def run_script(path: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", str(path)], env={**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_two_generated_node_scripts_train_one_run_together(notes, tmp_path):
    topology = {**SPEC, "nnodes": 2, "rdzv_endpoint": f"127.0.0.1:{free_port()}"}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(topology))
    cfg = LaunchConfig(target="local", workspace=str(notes.root))  # a fresh run id, chosen once
    node0 = generate_launch(spec_file, cfg.model_copy(update={"run_id": "two-nodes"}), ["node_rank=0"])
    node1 = generate_launch(spec_file, cfg.model_copy(update={"run_id": "two-nodes"}), ["node_rank=1"])
    paths = [write_launch_file(item, tmp_path / f"node{i}") for i, item in enumerate((node0, node1))]
    later = run_script(paths[1])  # node 1 first: it waits in the rendezvous for node 0, which prepares the folder
    first = run_script(paths[0])
    outputs = [first.communicate(timeout=300)[0], later.communicate(timeout=60)[0]]
    rd = RunDir(notes.runs / "two-nodes")
    log = rd.log.read_text() if rd.log.exists() else ""
    assert (first.returncode, later.returncode) == (0, 0), (outputs, log[-3000:])
    status = rd.read_status()
    assert (status["state"], status["step"]) == ("completed", 2), log[-3000:]
    assert read_json(rd.ds_config)["train_batch_size"] == 8  # 2 nodes x 1 rank x 4
    assert (rd.path / "train.node1.log").exists() and (rd.adapter / "adapter_config.json").exists()


@pytest.mark.slow
def test_generated_sbatch_trains_under_a_stand_in_srun(notes, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {"scontrol": "echo 127.0.0.1", "srun": 'while [[ "$1" == --* ]]; do shift; done; exec "$@"'}
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**SPEC, "device": "cpu"}))
    port = free_port()
    cfg = LaunchConfig(
        target="slurm", run_id="on-slurm", workspace=str(notes.root), python=sys.executable, rdzv_port=port
    )
    path = write_launch_file(generate_launch(spec_file, cfg), tmp_path)
    env = {"SLURM_JOB_NODELIST": "node1", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_ID": "4242"}
    process = run_script(path, **env, PATH=f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    output = process.communicate(timeout=300)[0]
    rd = RunDir(notes.runs / "on-slurm")
    assert process.returncode == 0, output[-3000:]
    assert "[medcore.cluster.prepare] run folder" in output and "created" in output
    status = rd.read_status()
    assert (status["state"], status["step"]) == ("completed", 2), output[-3000:]
