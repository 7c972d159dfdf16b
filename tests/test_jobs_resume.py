"""Resume validation says exactly what is wrong with a checkpoint (a real checkpoint: tests/test_jobs_train.py)."""

from __future__ import annotations

import pytest

from medcore.errors import MedcoreError
from medcore.jobs.resume import validate_checkpoint
from medcore.rundir import RunDir
from medcore.train.spec import RunSpec

SPEC = RunSpec(model="minilm", task="classification", dataset="notes", nproc_per_node=2)


@pytest.fixture
def rd(workspace):
    run = RunDir(workspace.runs / "r1")
    run.path.mkdir(parents=True)
    return run


def test_no_checkpoint_says_to_launch_again(rd):
    with pytest.raises(MedcoreError, match=r"Run r1 has no checkpoint in .*checkpoints.*Launch the spec again"):
        validate_checkpoint(rd, SPEC)


def test_every_missing_piece_is_listed_together(rd):
    (rd.checkpoints / "checkpoint-4").mkdir(parents=True)
    (rd.checkpoints / ".checkpoint-6.tmp").mkdir()  # an interrupted save is never picked
    with pytest.raises(MedcoreError) as err:
        validate_checkpoint(rd, SPEC)
    message = str(err.value)
    assert message.startswith("Cannot resume run r1 from checkpoint-4:")
    assert "(1) Optimizer state is missing: no optimizer.pt." in message
    assert "(2) Learning-rate scheduler state is missing: no scheduler.pt." in message
    assert "(3) The LoRA adapter is missing: no adapter_config.json." in message


def test_a_broken_adapter_is_reported(rd):
    ckpt = rd.checkpoints / "checkpoint-2"
    ckpt.mkdir(parents=True)
    for name in ("optimizer.pt", "scheduler.pt"):
        (ckpt / name).write_bytes(b"x")
    (ckpt / "adapter_config.json").write_text("{not json")
    (ckpt / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(MedcoreError, match=r"\(1\) adapter_config.json is not a PEFT adapter config"):
        validate_checkpoint(rd, SPEC)
