"""ZeRO and LoRA presets: every shipped preset validates; the classic guide's broken configs are caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcore.errors import MedcoreError
from medcore.train.presets import (
    MEDCORE_OWNED,
    check_ds_config,
    configs_dir,
    load_lora_preset,
    load_zero_preset,
    resolve_ds_config,
)

REPO = Path(__file__).resolve().parents[1]
CLASSIC = REPO / "tests" / "data" / "classic_zero"
PACKAGED = REPO / "medcore" / "train" / "presets"
ZERO_PRESETS = sorted((PACKAGED / "zero").glob("*.json"))
LORA_PRESETS = sorted((PACKAGED / "lora").glob("*.yaml"))


def test_presets_ship_inside_the_package():
    assert configs_dir() == PACKAGED
    assert len(ZERO_PRESETS) == 3 and len(LORA_PRESETS) == 3


@pytest.mark.parametrize("path", ZERO_PRESETS, ids=lambda p: p.name)
def test_zero_preset_loads_and_is_documented(path):
    raw = json.loads(path.read_text())
    assert raw.get("_comment"), "every preset says what it is for"
    config = load_zero_preset(path.stem)
    assert "_comment" not in json.dumps(config)
    assert check_ds_config(raw) == []
    assert all(config[k] == "auto" for k in ("train_batch_size", "train_micro_batch_size_per_gpu"))


def test_zero_presets_have_the_documented_stages():
    stages = {p.stem: load_zero_preset(p.stem)["zero_optimization"] for p in ZERO_PRESETS}
    assert stages["single_node"]["stage"] == 1 and "offload_optimizer" not in stages["single_node"]
    assert stages["multi_node"]["stage"] == 2 and stages["multi_node"]["offload_optimizer"]["device"] == "cpu"
    big = stages["large_model_stage3"]
    assert (
        big["stage"] == 3 and big["offload_param"]["device"] == "cpu" and big["offload_optimizer"]["device"] == "cpu"
    )
    assert big["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("path", LORA_PRESETS, ids=lambda p: p.name)
def test_lora_preset_loads_and_is_documented(path):
    assert path.read_text().startswith("#"), "every preset opens with a comment saying what it suits"
    preset = load_lora_preset(path.stem)
    assert preset.r > 0 and preset.alpha > 0


def test_lora_default_is_r16_a32_d01_and_sizes_are_ordered():
    small, default, large = (load_lora_preset(n) for n in ("small", "default", "large"))
    assert (default.r, default.alpha, default.dropout) == (16, 32, 0.1)
    assert small.r < default.r < large.r
    assert load_lora_preset("full") is None


def _findings(name: str) -> dict[str, str]:
    return {f.path: f.message for f in check_ds_config(json.loads((CLASSIC / name).read_text()))}


def test_classic_single_node_findings():
    found = _findings("single_node.json")
    assert "offload_optimizer: false" not in found  # reported under its full key path
    assert "Remove the key" in found["zero_optimization.offload_optimizer"]
    assert "spec's `save_interval`" in found["save_interval"]
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert "hard-coded" in found[key]
    assert "steps_per_print" not in found and "fp16" not in found  # valid keys are not reported


def test_classic_multi_node_findings():
    found = _findings("multi_node.json")
    for key in (
        "stage3_max_live_parameters",
        "stage3_prefetch_bucket_size",
        "stage3_param_persistence_threshold",
        "offload_param",
    ):
        assert "only used by ZeRO stage 3" in found[f"zero_optimization.{key}"]
    assert "zero_optimization.sub_group_size" in found["sub_group_size"]
    assert "hard-coded to 64" in found["train_batch_size"]
    assert "zero_optimization.offload_optimizer" not in found  # a proper offload object is fine at stage 2
    assert "zero_optimization.contiguous_gradients" not in found


def test_classic_stage3_findings():
    found = _findings("large_model_stage3.json")
    assert "Remove the key" in found["zero_optimization.offload_optimizer"]
    assert "move it to zero_optimization.sub_group_size" in found["sub_group_size"]
    assert "save_interval" in found and "train_batch_size" in found
    assert "zero_optimization.offload_param" not in found  # valid at stage 3


def test_classic_config_as_preset_fails_with_every_problem_in_one_line():
    with pytest.raises(MedcoreError) as err:
        load_zero_preset(str(CLASSIC / "multi_node.json"))
    message = str(err.value)
    assert "\n" not in message
    assert "sub_group_size" in message and "stage3_max_live_parameters" in message and "save_interval" in message


def test_unknown_keys_get_a_suggestion():
    found = {
        f.path: f.message
        for f in check_ds_config(
            {"gradient_clipin": 1.0, "zero_optimization": {"stage": 2, "overlap_com": True}, "bf16": {"enabeld": True}}
        )
    }
    assert "Did you mean 'gradient_clipping'" in found["gradient_clipin"]
    assert "Did you mean 'overlap_comm'" in found["zero_optimization.overlap_com"]
    assert "Did you mean 'enabled'" in found["bf16.enabeld"]


def test_deprecated_zero_key_names_its_replacement():
    found = {f.path: f.message for f in check_ds_config({"zero_optimization": {"stage": 2, "cpu_offload": True}})}
    assert "offload_optimizer" in found["zero_optimization.cpu_offload"]


@pytest.mark.parametrize("micro,accum,world", [(4, 2, 2), (1, 1, 1), (8, 4, 16)])
def test_batch_arithmetic_is_computed(micro, accum, world):
    config = resolve_ds_config(
        load_zero_preset("single_node"),
        micro_batch=micro,
        grad_accum=accum,
        world_size=world,
        precision="fp32",
        max_grad_norm=0.5,
    )
    assert config["train_batch_size"] == micro * accum * world
    assert config["train_micro_batch_size_per_gpu"] == micro and config["gradient_accumulation_steps"] == accum
    assert config["gradient_clipping"] == 0.5
    assert config["bf16"] == {"enabled": False} and config["fp16"] == {"enabled": False}
    # Only the keys MedCore fills in are "hard-coded" in the resolved file; nothing else is flagged.
    assert {f.path for f in check_ds_config(config)} == set(MEDCORE_OWNED)


def test_unknown_preset_name_lists_presets():
    with pytest.raises(MedcoreError, match="Did you mean 'multi_node'.*large_model_stage3"):
        load_zero_preset("multinode")
    with pytest.raises(MedcoreError, match="default, large, small"):
        load_lora_preset("medium")


def test_every_preset_has_a_one_line_explanation():
    from medcore.train.presets import describe_presets

    for kind, expected in (("zero", {"single_node", "multi_node", "large_model_stage3"}),
                           ("lora", {"small", "default", "large", "full"})):
        described = describe_presets(kind)
        assert set(described) == expected
        assert all(text and "\n" not in text for text in described.values()), described
