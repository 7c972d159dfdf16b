"""Memory estimate before launch: exact trainable counts, ZeRO arithmetic, a clear warning when it won't fit."""

from __future__ import annotations

import pytest
from train_datasets import write_dataset

from medcore.train import load_spec
from medcore.train.memory import GB, count_parameters, estimate_memory


@pytest.fixture
def notes(workspace):
    write_dataset(workspace, "notes", "classification", n=40)
    return workspace


def test_trainable_count_matches_the_real_peft_model(notes):
    from medcore.models import load_model
    from medcore.train.lora import apply_lora
    from medcore.train.presets import load_lora_preset

    spec = load_spec({"model": "minilm", "task": "classification", "dataset": "notes", "lora": "default"})
    total, trainable, _ = count_parameters(spec, notes)
    real = apply_lora(load_model("minilm", "classification", num_labels=3), load_lora_preset("default"),
                      "classification", "minilm")
    assert total == sum(p.numel() for p in real.parameters())
    assert trainable == sum(p.numel() for p in real.parameters() if p.requires_grad)
    assert 0 < trainable < total / 10


def test_zero_stages_shard_what_the_paper_says(notes):
    base = {"model": "minilm", "task": "classification", "dataset": "notes", "lora": "full", "nproc_per_node": 2}
    by_preset = {z: estimate_memory(load_spec({**base, "zero": z}), notes, available_bytes=64 * GB)
                 for z in ("single_node", "multi_node", "large_model_stage3")}
    one, two, three = (by_preset[z].per_rank_bytes for z in ("single_node", "multi_node", "large_model_stage3"))
    assert two["gradients"] == pytest.approx(one["gradients"] / 2, rel=1e-6)  # ZeRO-2 shards gradients
    assert two["optimizer"] == 0 and by_preset["multi_node"].host_offload_bytes > 0  # optimizer offloaded
    assert three["weights"] < one["weights"]  # ZeRO-3 shards (here: offloads) the weights


def test_a_run_that_cannot_fit_says_so_and_what_to_change(notes):
    spec = load_spec({"model": "minilm", "task": "classification", "dataset": "notes", "micro_batch": 64,
                      "max_length": 512})
    small = estimate_memory(spec, notes, available_bytes=2 * GB)
    assert not small.fits
    assert "gradient checkpointing" in small.advice and "micro_batch (now 64)" in small.advice
    big = estimate_memory(spec, notes, available_bytes=512 * GB)
    assert big.fits and big.advice == "" and "GB" in big.summary
    checkpointed = estimate_memory(spec.model_copy(update={"gradient_checkpointing": True}), notes,
                                   available_bytes=512 * GB)
    assert checkpointed.per_rank_bytes["activations"] < big.per_rank_bytes["activations"] / 4
