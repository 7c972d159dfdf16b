"""Several nodes, one run: a shared run id, one folder created by whichever node arrives first (under a lock), other
nodes joining it only with the same job's spec, and two real `medcore train` nodes meeting at one rendezvous."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest
from train_datasets import import_certified_notes

from medcore.cli import main as cli
from medcore.errors import MedcoreError
from medcore.rundir import RunDir, read_json
from medcore.train import load_spec
from medcore.train.launch import free_port, job_spec, open_run_dir, run_folder_lock, spec_hash

JOB = {"dataset": "notes", "nnodes": 2, "rdzv_endpoint": "127.0.0.1:29400", "run_id": "shared-run", "max_steps": 3}


def test_first_node_creates_the_folder_and_the_others_join_it(workspace):
    node1 = load_spec({**JOB, "node_rank": 1})
    rd = open_run_dir(node1, workspace, "shared-run")  # node 1 happens to arrive first
    recorded = read_json(rd.spec)
    assert recorded["node_rank"] == 0 and recorded["run_id"] == "shared-run"  # spec.json describes the job
    assert open_run_dir(load_spec(JOB), workspace, "shared-run") == rd
    assert read_json(rd.spec) == recorded and [p.name for p in workspace.runs.iterdir() if p.is_dir()] == [rd.run_id]
    assert spec_hash(job_spec(node1)) == spec_hash(recorded) != spec_hash(job_spec(load_spec({**JOB, "seed": 7})))


def test_a_node_with_a_different_spec_is_refused_naming_the_fields(workspace):
    rd = open_run_dir(load_spec(JOB), workspace, "shared-run")
    before = rd.spec.read_text()
    with pytest.raises(MedcoreError) as caught:
        open_run_dir(load_spec({**JOB, "node_rank": 1, "lr": 1e-3, "max_steps": 4}), workspace, "shared-run")
    message = str(caught.value)
    assert "not the one run shared-run was created with" in message
    assert "lr: 0.001 here, 0.0002 in the run" in message and "max_steps: 4 here, 3 in the run" in message
    assert "node_rank" not in message.split(":", 1)[1].split(". Start")[0]  # a per-node field is no difference
    assert rd.spec.read_text() == before


def test_a_finished_run_is_not_joined_unless_resuming(workspace):
    rd = open_run_dir(load_spec(JOB), workspace, "shared-run")
    rd.update_status(state="completed")
    with pytest.raises(MedcoreError, match=r"exists already \(completed\).*resume=[tT]rue"):
        open_run_dir(load_spec({**JOB, "node_rank": 1}), workspace, "shared-run")
    assert open_run_dir(load_spec({**JOB, "node_rank": 1, "resume": True}), workspace, "shared-run") == rd


def test_a_node_waits_for_the_one_creating_the_folder(workspace):
    opened = []
    with run_folder_lock(workspace, "shared-run"):
        joiner = threading.Thread(target=lambda: opened.append(open_run_dir(load_spec(JOB), workspace, "shared-run")))
        joiner.start()
        joiner.join(timeout=1.0)
        assert joiner.is_alive() and not (workspace.runs / "shared-run").exists()  # blocked on the lock
    joiner.join(timeout=30)
    assert opened and opened[0].spec.exists()


def test_a_bad_run_id_is_a_spec_error():
    with pytest.raises(MedcoreError, match="'run_id': must be 1-63 letters"):
        load_spec({**JOB, "run_id": "../elsewhere"})


def test_cli_without_run_id_prints_every_nodes_command(workspace, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("dataset: notes\nmax_steps: 3\n")
    code = cli(["train", str(spec), "nnodes=3", "rdzv_endpoint=10.0.0.1:29400", "--nproc", "2"])
    err = capsys.readouterr().err
    assert code == 1
    commands = re.findall(r"node (\d): (medcore train .*)", err)
    assert [rank for rank, _ in commands] == ["0", "1", "2"], err
    run_ids = {re.search(r"run_id=(\S+)$", command).group(1) for _, command in commands}
    assert len(run_ids) == 1 and load_spec({**JOB, "run_id": run_ids.pop()})  # one fresh, valid id for all nodes
    for rank, command in commands:
        assert command.startswith(f"medcore train {spec} nnodes=3 rdzv_endpoint=10.0.0.1:29400 --nproc 2")
        assert f"node_rank={rank} run_id=" in command
    assert not workspace.runs.exists() or not any(workspace.runs.iterdir())  # nothing created


def test_cli_detaches_node_0_only(workspace, tmp_path, capsys):
    import_certified_notes(workspace)
    spec = tmp_path / "spec.yaml"
    spec.write_text("dataset: notes\nmax_steps: 3\n")
    overrides = ["nnodes=2", "rdzv_endpoint=10.0.0.1:29400", "run_id=shared-run", "node_rank=1"]
    assert cli(["train", str(spec), *overrides, "--detach"]) == 1
    assert "start node 1 in the foreground" in capsys.readouterr().err
    assert not (workspace.runs / "shared-run").exists()


def test_python_without_run_id_is_refused(workspace):
    from medcore.train import plan_run

    with pytest.raises(MedcoreError, match=r"(?s)set run_id=ID.*node 1: medcore train SPEC.yaml lr=0.001 node_rank=1"):
        plan_run({k: v for k, v in JOB.items() if k != "run_id"}, workspace, {"lr": 0.001})


# ---- two real nodes ------------------------------------------------------------------------------------------


SPEC = "dataset: notes\nmax_steps: 4\nmicro_batch: 4\nmax_length: 32\nseed: 5\nlr: 5.0e-3\nevaluate_after: false\n"


def medcore_train(ws, spec, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "MEDCORE_HOME": str(ws.root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "medcore", "train", str(spec), *overrides]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, out[-4000:]
    return out


def losses(rd: RunDir) -> list[float]:
    return [m["loss"] for m in map(json.loads, rd.metrics.read_text().splitlines()) if "loss" in m]


@pytest.mark.slow
def test_two_cli_nodes_meet_and_train_like_one_node_with_two_ranks(workspace, tmp_path):
    import_certified_notes(workspace)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    topology = ["nnodes=2", f"rdzv_endpoint=127.0.0.1:{free_port()}", "run_id=two-nodes"]
    nodes = [medcore_train(workspace, spec, *topology, f"node_rank={rank}") for rank in (0, 1)]
    outputs = [finished(node) for node in nodes]
    assert "node 1 of run two-nodes finished" in outputs[1]
    rd = RunDir(workspace.runs / "two-nodes")
    status = rd.read_status()
    assert (status["state"], status["world_size"], status["step"]) == ("completed", 2, 4), status
    assert (rd.path / "train.node1.log").stat().st_size > 0  # node 1's output kept apart from node 0's train.log

    finished(medcore_train(workspace, spec, "--nproc", "2", "run_id=one-node"))
    reference = RunDir(workspace.runs / "one-node")
    assert len(losses(rd)) == 4
    assert losses(rd) == pytest.approx(losses(reference), abs=1e-4)  # the same job, laid out on two nodes
