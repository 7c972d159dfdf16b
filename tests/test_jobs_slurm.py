"""SLURM backend: the generated sbatch script, submission and state mapping.

SLURM cannot run here, so sbatch/squeue/sacct are small shell stand-ins on PATH that answer the way
the real tools do (`sbatch --parsable` prints `JOBID[;CLUSTER]`; `sacct -P -o State` prints one state).
"""

from __future__ import annotations

import subprocess

import pytest

from medcore.errors import MedcoreError
from medcore.jobs.slurm import (
    SlurmConfig,
    observe_slurm,
    query_slurm_state,
    render_sbatch,
    submit_sbatch,
    trainer_args,
    write_sbatch,
)
from medcore.rundir import RunDir


@pytest.fixture
def run_dir(workspace):
    rd = RunDir(workspace.runs / "r-slurm")
    rd.path.mkdir(parents=True)
    return rd


def _render(rd, **cfg):
    command = ["torchrun", "--nproc-per-node=4", "-m", "medcore.train", str(rd.path), "--resume"]
    return render_sbatch(rd, SlurmConfig(**cfg), nnodes=2, nproc_per_node=4, train_args=trainer_args(command))


def test_script_allocates_nodes_and_gpus_and_meets_on_the_first_node(run_dir):
    text = _render(run_dir, partition="gpu", account="med", mem="64G", setup=["module load cuda/12.4"])
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in (
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=4",
        "--partition=gpu",
        "--account=med",
        "--mem=64G",
        f"--output={run_dir.log}",
        "--time=04:00:00",
    ):
        assert f"#SBATCH {directive}" in lines
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in text
    assert '--rdzv-endpoint="$head_node:$rdzv_port"' in text and "--rdzv-backend=c10d" in text
    assert "srun --kill-on-bad-exit=1" in text and "--nproc-per-node=4" in text
    assert text.rstrip().endswith(f"-m medcore.train {run_dir.path} --resume")
    assert f"export MEDCORE_HOME={run_dir.path.parent.parent}" in text
    assert text.index("module load cuda/12.4") < text.index("srun")
    script = write_sbatch(run_dir, text)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_overrides_and_cpu_only_allocation(run_dir):
    text = _render(run_dir, nodes=3, gpus_per_node=0, time_limit="00:30:00")
    assert "#SBATCH --nodes=3" in text and "#SBATCH --time=00:30:00" in text
    assert "--gpus-per-node" not in text  # a CPU partition gets no GPU request
    assert "--partition" not in text  # the cluster default partition


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="gpus"):
        SlurmConfig(gpus=4)


def test_trainer_args_need_the_trainer_module():
    with pytest.raises(MedcoreError, match=r"medcore\.train"):
        trainer_args(["torchrun", "script.py"])


def _fake_tool(bin_dir, name, body):
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def test_submit_and_observe_map_slurm_states(run_dir, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "sbatch", 'echo "$@" > "$(dirname "$0")/sbatch.args"; echo "4242;cluster1"')
    _fake_tool(bin_dir, "squeue", 'cat "$(dirname "$0")/squeue.out" 2>/dev/null || true')
    _fake_tool(bin_dir, "sacct", 'cat "$(dirname "$0")/sacct.out"')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    script = write_sbatch(run_dir, _render(run_dir))
    assert submit_sbatch(script) == "4242"
    assert (bin_dir / "sbatch.args").read_text().split() == ["--parsable", str(script)]

    launch = {"slurm_job_id": "4242"}
    (bin_dir / "squeue.out").write_text("PENDING\n")
    assert query_slurm_state("4242") == "PENDING"
    assert observe_slurm(run_dir, launch)["state"] == "queued"
    run_dir.update_status(state="running", step=5)
    (bin_dir / "squeue.out").write_text("RUNNING\n")
    assert observe_slurm(run_dir, launch)["state"] == "running"
    # The job left squeue; sacct says SLURM killed it for memory: failed, with the OOM hint.
    (bin_dir / "squeue.out").unlink()
    (bin_dir / "sacct.out").write_text("OUT_OF_MEMORY\n")
    status = observe_slurm(run_dir, launch)
    assert status["state"] == "failed" and "memory" in status["error"] and "ZeRO-3" in status["hint"]
    assert run_dir.read_status()["state"] == "failed"
    # A final state the trainer wrote is never overwritten by a later poll.
    (bin_dir / "sacct.out").write_text("CANCELLED by 1000\n")
    assert observe_slurm(run_dir, launch)["state"] == "failed"


def test_sbatch_failure_is_reported(run_dir, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "sbatch", 'echo "sbatch: error: invalid partition specified: gpux" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(MedcoreError, match="invalid partition"):
        submit_sbatch(write_sbatch(run_dir, _render(run_dir)))


def test_missing_sbatch_is_a_clear_error(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MedcoreError, match="sbatch is not on PATH"):
        submit_sbatch(run_dir.path / "job.sbatch")
