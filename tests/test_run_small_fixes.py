"""Issue 18's smaller fixes to run files: status.json updates under a lock, a torn metrics line, the dataset's content
hash, resume_run as one step, weights-only unpickling of run files, and #SBATCH values that cannot inject lines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import pandas as pd
import pydantic
import pytest
import torch
from train_datasets import import_certified_notes

from medcore.errors import MedcoreError
from medcore.jobs import cancel_run, resume_run, run_status
from medcore.jobs.resume import record_dataset_hash, validate_checkpoint
from medcore.jobs.slurm import SlurmConfig, render_sbatch
from medcore.rundir import DATASET_HASH, TRAINER_STATE, RunDir
from medcore.train import load_spec, prepare_run_dir
from medcore.train.spec import RunSpec

WRITER = """
import sys
from pathlib import Path
from medcore.rundir import RunDir
rd, name = RunDir(Path(sys.argv[1])), sys.argv[2]
for i in range(40):
    rd.update_status(**{f"{name}-{i}": i})
"""


def test_concurrent_status_updates_lose_nothing(tmp_path):
    # Rank 0, the launcher and the console's threads all merge fields into status.json at once.
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(rd.path), name]) for name in ("rank0", "launcher", "ui")
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    status = rd.read_status()
    assert {f"{name}-{i}" for name in ("rank0", "launcher", "ui") for i in range(40)} <= set(status)


def test_a_torn_last_metrics_line_does_not_stop_a_resume(tmp_path):
    from medcore.train.runner import trim_metrics

    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3, 4)]
    rd.metrics.write_text("\n".join(lines) + '\n{"step": 5, "lo')  # the kill landed mid-write
    trim_metrics(rd, 3)
    assert rd.metrics.read_text() == "\n".join(lines[:3]) + "\n"


def write_pickle_bomb(path, marker) -> None:
    """A torch file that creates `marker` when unpickled without weights_only (as a tampered checkpoint could)."""

    class Bomb:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dp_world_size": 1, "payload": Bomb()}, path)


def test_checkpoint_metadata_is_read_weights_only(workspace, tmp_path):
    rd = RunDir(workspace.runs / "r1")
    ckpt = rd.checkpoints / "checkpoint-2"
    marker = tmp_path / "code-ran"
    write_pickle_bomb(ckpt / "deepspeed" / "mp_rank_00_model_states.pt", marker)
    (ckpt / TRAINER_STATE).write_text(json.dumps({"step": 2, "world_size": 1}))
    spec = RunSpec(model="minilm", task="classification", dataset="notes")
    with pytest.raises(MedcoreError, match=r"mp_rank_00_model_states.pt is unreadable \(it holds more than tensors"):
        validate_checkpoint(rd, spec)
    assert not marker.exists()


def test_rng_state_is_read_weights_only(tmp_path):
    from medcore.train.checkpoint import load_rng_state, rng_state, set_rng_state

    torch.save(rng_state(), tmp_path / "rng_state_0.pt")
    expected = torch.rand(3)
    set_rng_state(load_rng_state(tmp_path / "rng_state_0.pt"))  # numpy's key array is allowed by name
    assert torch.equal(torch.rand(3), expected)
    marker = tmp_path / "code-ran"
    write_pickle_bomb(tmp_path / "rng_state_1.pt", marker)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_rng_state(tmp_path / "rng_state_1.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "field, value", [("partition", "gpu\n#SBATCH --exclusive"), ("account", "med lab"), ("mem", '64G"')]
)
def test_sbatch_settings_that_would_inject_lines_are_refused(field, value):
    with pytest.raises(pydantic.ValidationError, match="becomes an #SBATCH line"):
        SlurmConfig(**{field: value})


def test_sbatch_paths_with_spaces_are_quoted_and_line_breaks_refused(tmp_path):
    spaced = RunDir(tmp_path / "my workspace" / "runs" / "r1")
    text = render_sbatch(spaced, SlurmConfig(), nnodes=1, nproc_per_node=1, train_args=["-m", "medcore.train"])
    assert f'#SBATCH --output="{spaced.log}"' in text.splitlines()
    broken = RunDir(tmp_path / "two\nlines" / "runs" / "r1")
    with pytest.raises(MedcoreError, match="Cannot write #SBATCH --output: its value holds a quote or a line break"):
        render_sbatch(broken, SlurmConfig(), nnodes=1, nproc_per_node=1, train_args=["-m", "medcore.train"])


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory):
    from medcore.models import load_model
    from medcore.train.lora import apply_lora
    from medcore.train.presets import load_lora_preset

    model = load_model("minilm", "classification", id2label={0: "a", 1: "b", 2: "c"})
    model = apply_lora(model, load_lora_preset("default"), "classification", "minilm")
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def cancelled_run(workspace, saved_adapter):
    """A cancelled run on dataset 'notes' with a valid checkpoint-2 (plain layout), its dataset hash recorded."""
    import_certified_notes(workspace)
    spec = load_spec({"dataset": "notes", "nproc_per_node": 1, "max_steps": 4, "evaluate_after": False})
    rd = prepare_run_dir(spec, workspace, "r1")
    ckpt = rd.checkpoints / "checkpoint-2"
    shutil.copytree(saved_adapter, ckpt / "adapter")
    for name in ("optimizer.pt", "scheduler.pt"):
        (ckpt / name).write_bytes(b"state")
    (ckpt / TRAINER_STATE).write_text(json.dumps({"step": 2, "world_size": 1}))
    record_dataset_hash(rd)
    rd.update_status(state="cancelled", step=2, ended_at=1.0)
    return rd


def test_resume_refuses_a_dataset_that_changed_since_the_run_started(workspace, cancelled_run):
    assert len(cancelled_run.read_status()[DATASET_HASH]) == 64
    split = workspace.datasets / "notes" / "train.parquet"
    pd.read_parquet(split).iloc[1:].to_parquet(split)  # re-imported with a row fewer
    with pytest.raises(MedcoreError, match="Cannot resume run r1: dataset 'notes' changed since the run started"):
        resume_run("r1", workspace)
    assert run_status("r1", workspace).state == "cancelled"  # nothing was queued


@pytest.mark.slow
def test_two_resumes_at_once_queue_the_run_once(workspace, cancelled_run):
    start, results = threading.Barrier(2), []

    def resume():
        start.wait()
        try:
            results.append(resume_run("r1", workspace))
        except MedcoreError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert sorted(results, key=len)[0] == "r1"
        assert sorted(results, key=len)[1].startswith("Run r1 is queued (still active)")
    finally:
        cancel_run("r1", workspace, grace_s=2.0)
