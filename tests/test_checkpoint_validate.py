"""Resume validation from the checkpoint's metadata: a real PEFT adapter passes without any model being built; a cut
short or mismatched one is refused with what is wrong (the DeepSpeed layout with real training: test_jobs_train.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import transformers
from train_datasets import import_certified_notes

import medcore.models
from medcore.errors import MedcoreError
from medcore.jobs.resume import read_safetensors_header, validate_checkpoint
from medcore.rundir import ADAPTER_CONFIG, ADAPTER_WEIGHTS, TRAINER_STATE, RunDir
from medcore.train.spec import RunSpec

SPEC = RunSpec(model="minilm", task="classification", dataset="notes", nproc_per_node=2)


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory):
    """A LoRA adapter of the packaged MiniLM with a 3-class head, as the trainer saves it (built once)."""
    from medcore.models import load_model
    from medcore.train.lora import apply_lora
    from medcore.train.presets import load_lora_preset

    model = load_model("minilm", "classification", id2label={0: "a", 1: "b", 2: "c"})
    model = apply_lora(model, load_lora_preset(SPEC.lora), "classification", "minilm")
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def ckpt(workspace, saved_adapter):
    """checkpoints/checkpoint-4 of run r1 in the plain (non-DeepSpeed) layout, on the 3-class dataset 'notes'."""
    import_certified_notes(workspace)
    rd = RunDir(workspace.runs / "r1")
    folder = rd.checkpoints / "checkpoint-4"
    shutil.copytree(saved_adapter, folder / "adapter")
    for name in ("optimizer.pt", "scheduler.pt"):
        (folder / name).write_bytes(b"state")
    (folder / TRAINER_STATE).write_text(json.dumps({"step": 4, "world_size": 2}))
    return folder


@pytest.fixture
def no_model_building(monkeypatch):
    """Any attempt to build or load a model fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("validation built a model")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(medcore.models, "load_model", refuse)


def refusal(ckpt) -> str:
    with pytest.raises(MedcoreError) as err:
        validate_checkpoint(RunDir(ckpt.parent.parent), SPEC)
    return str(err.value)


def test_a_valid_checkpoint_passes_without_building_the_model(ckpt, no_model_building):
    report = validate_checkpoint(RunDir(ckpt.parent.parent), SPEC)
    assert (report.step, report.world_size, report.problems) == (4, 2, [])


def test_a_cut_short_adapter_is_refused_with_the_file_named(ckpt, no_model_building):
    weights = ckpt / "adapter" / ADAPTER_WEIGHTS[0]
    weights.write_bytes(weights.read_bytes()[:-100])  # the save died before its last bytes reached the disk
    message = refusal(ckpt)
    assert message.startswith("Cannot resume run r1 from checkpoint-4: (1) checkpoint-4/adapter/adapter_model")
    assert "is unreadable: it holds" in message and "(cut short)" in message and "earlier checkpoint" in message


def test_a_file_that_is_not_safetensors_is_refused(ckpt):
    (ckpt / "adapter" / ADAPTER_WEIGHTS[0]).write_bytes(b"\x00" * 64)
    assert "no complete safetensors header in its 64 bytes" in refusal(ckpt)


def test_an_adapter_whose_rank_disagrees_with_its_config_and_the_preset_is_refused(ckpt):
    config = json.loads((ckpt / "adapter" / ADAPTER_CONFIG).read_text())
    config["r"] = config["r"] // 2
    (ckpt / "adapter" / ADAPTER_CONFIG).write_text(json.dumps(config))
    message = refusal(ckpt)
    assert f"has rank {2 * config['r']}, the adapter config says r={config['r']}" in message
    assert f"the run's LoRA preset 'default' now says r={2 * config['r']}" in message


def test_a_trainer_state_for_another_step_is_refused(ckpt):
    (ckpt / TRAINER_STATE).write_text(json.dumps({"step": 6, "world_size": 2}))
    assert "trainer_state.json says step 6, the folder says 4" in refusal(ckpt)


def test_the_header_reader_reads_names_and_shapes_only(saved_adapter):
    header = read_safetensors_header(saved_adapter / ADAPTER_WEIGHTS[0])
    lora_a = [info["shape"] for name, info in header.items() if ".lora_A." in name]
    assert lora_a and all(shape[0] == 16 for shape in lora_a)  # the default preset's rank
    assert header["base_model.model.classifier.weight"]["shape"][0] == 3
