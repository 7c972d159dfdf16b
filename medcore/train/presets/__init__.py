"""ZeRO and LoRA presets: load them from the files beside this module (zero/, lora/), report unknown or ignored
DeepSpeed keys, compute batch sizes. They ship inside the package, so an installed wheel has them too."""

from __future__ import annotations

import copy
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from medcore.errors import MedcoreError, validated

CONFIGS_ENV = "MEDCORE_CONFIGS"
BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")

# Top-level keys DeepSpeed 0.19 reads (from its config docs). DeepSpeed itself silently ignores any other
# top-level key, which is how `save_interval` in the classic configs never did anything.
TOP_LEVEL_KEYS = {
    *BATCH_KEYS,
    "optimizer",
    "scheduler",
    "fp16",
    "bf16",
    "amp",
    "torch_autocast",
    "gradient_clipping",
    "zero_optimization",
    "zero_allow_untested_optimizer",
    "zero_force_ds_cpu_optimizer",
    "communication_data_type",
    "seq_parallel_communication_data_type",
    "prescale_gradients",
    "gradient_predivide_factor",
    "sparse_gradients",
    "activation_checkpointing",
    "steps_per_print",
    "wall_clock_breakdown",
    "memory_breakdown",
    "dump_state",
    "flops_profiler",
    "comms_logger",
    "tensorboard",
    "wandb",
    "csv_monitor",
    "comet",
    "aio",
    "data_efficiency",
    "curriculum_learning",
    "compression_training",
    "elasticity",
    "autotuning",
    "checkpoint",
    "data_types",
    "pipeline",
    "sparse_attention",
    "disable_allgather",
    "compile",
    "nebula",
    "eigenvalue",
    "progressive_layer_drop",
    "quantize_training",
    "use_data_before_expert_parallelism",
    "graph_harvesting",
}
SECTION_KEYS = {
    "fp16": {
        "enabled",
        "auto_cast",
        "loss_scale",
        "initial_scale_power",
        "loss_scale_window",
        "hysteresis",
        "consecutive_hysteresis",
        "min_loss_scale",
        "fp16_master_weights_and_grads",
    },
    "bf16": {"enabled", "immediate_grad_update", "check_grad_overflow"},
}
# Keys MedCore owns: a preset may leave them out or write "auto"; a number typed here breaks on another world size.
MEDCORE_OWNED = {
    **{k: "the run spec's micro_batch / grad_accum and the world size" for k in BATCH_KEYS},
    "gradient_clipping": "the run spec's max_grad_norm",
}
# Where a misplaced key really belongs, and spec fields people put in DeepSpeed files.
MISPLACED = {"sub_group_size": "zero_optimization.sub_group_size"}
SPEC_FIELDS = {"save_interval": "save_interval", "keep_last_k": "keep_last_k", "seed": "seed", "epochs": "epochs"}


@dataclass(frozen=True)
class Finding:
    """One problem in a DeepSpeed config: the key path and what to do about it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def configs_dir() -> Path:
    """The presets folder (holding zero/ and lora/): $MEDCORE_CONFIGS, else the one shipped in the package."""
    return Path(os.environ.get(CONFIGS_ENV) or Path(__file__).resolve().parent)


def strip_comments(value: Any) -> Any:
    """Drop `_comment` keys at any depth (JSON has no comments; presets document themselves with them)."""
    if isinstance(value, dict):
        return {k: strip_comments(v) for k, v in value.items() if k != "_comment"}
    return value


def import_deepspeed_quietly() -> None:
    """Import DeepSpeed without its "Setting accelerator to CPU" warning on machines with no GPU (it is expected)."""
    if "DS_ACCELERATOR" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"
    import deepspeed  # noqa: F401


def _zero_fields() -> tuple[dict[str, Any], set[str]]:
    """DeepSpeed's own ZeRO config model: name/alias -> field, and the stage-3-only names."""
    import_deepspeed_quietly()
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    fields: dict[str, Any] = {}
    for name, info in DeepSpeedZeroConfig.model_fields.items():
        fields[name] = info
        if info.alias:
            fields[info.alias] = info
    stage3 = {k for k in fields if k.startswith("stage3_")} | {"offload_param", "sub_group_size"}
    return fields, stage3


def _suggest(key: str, choices: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(key, sorted(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _check_zero(zero: Any, findings: list[Finding]) -> None:
    if not isinstance(zero, dict):
        findings.append(Finding("zero_optimization", 'must be an object such as {"stage": 1}.'))
        return
    fields, stage3 = _zero_fields()
    stage = zero.get("stage", 0)
    for key, value in zero.items():
        path = f"zero_optimization.{key}"
        if key not in fields:
            findings.append(Finding(path, "unknown ZeRO key (DeepSpeed rejects it)." + _suggest(key, fields)))
        elif (fields[key].json_schema_extra or {}).get("deprecated"):
            new = fields[key].json_schema_extra.get("new_param", "its replacement")
            findings.append(Finding(path, f"deprecated; use '{new}'."))
        elif key in stage3 and stage != 3 and value not in (None, False):
            findings.append(
                Finding(path, f"only used by ZeRO stage 3; DeepSpeed ignores it at stage {stage}. Remove it.")
            )
        elif key in ("offload_optimizer", "offload_param") and not isinstance(value, dict | type(None)):
            findings.append(
                Finding(
                    path,
                    f"{json.dumps(value)} is not valid (DeepSpeed expects an object). Remove the key for no "
                    'offload, or write {"device": "cpu"} to offload.',
                )
            )
    if stage not in (0, 1, 2, 3):
        findings.append(Finding("zero_optimization.stage", f"{stage!r} is not a ZeRO stage; use 0, 1, 2 or 3."))


def check_ds_config(config: dict[str, Any]) -> list[Finding]:
    """Every unknown, ignored, misplaced or hand-typed key in a DeepSpeed config (after `_comment` keys are stripped)."""
    config = strip_comments(config)
    findings: list[Finding] = []
    for key, value in config.items():
        if key in MISPLACED:
            findings.append(Finding(key, f"ignored at the top level; move it to {MISPLACED[key]}."))
        elif key in SPEC_FIELDS:
            findings.append(
                Finding(
                    key,
                    f"not a DeepSpeed key (DeepSpeed ignores it); set the run spec's `{SPEC_FIELDS[key]}` instead.",
                )
            )
        elif key not in TOP_LEVEL_KEYS:
            findings.append(
                Finding(key, "unknown DeepSpeed key (DeepSpeed ignores it)." + _suggest(key, TOP_LEVEL_KEYS))
            )
        elif key in MEDCORE_OWNED and value != "auto":
            findings.append(
                Finding(key, f'hard-coded to {value!r}; write "auto": MedCore sets it from {MEDCORE_OWNED[key]}.')
            )
        elif key in SECTION_KEYS and isinstance(value, dict):
            for sub in value:
                if sub not in SECTION_KEYS[key]:
                    findings.append(Finding(f"{key}.{sub}", "unknown key." + _suggest(sub, SECTION_KEYS[key])))
    if "zero_optimization" in config:
        _check_zero(config["zero_optimization"], findings)
    return findings


def _preset_path(name: str, kind: Literal["zero", "lora"]) -> Path:
    suffixes = (".json",) if kind == "zero" else (".yaml", ".yml")
    as_path = Path(name).expanduser()
    if as_path.suffix in suffixes or os.sep in name:
        if not as_path.exists():
            raise MedcoreError(f"{kind.upper()} preset file {as_path} does not exist.")
        return as_path
    folder = configs_dir() / kind
    for suffix in suffixes:
        if (folder / f"{name}{suffix}").exists():
            return folder / f"{name}{suffix}"
    names = sorted(p.stem for s in suffixes for p in folder.glob(f"*{s}"))
    raise MedcoreError(
        f"Unknown {kind} preset '{name}'.{_suggest(name, names)} Presets in {folder}: {', '.join(names) or 'none'}; "
        f"or pass a path to a {suffixes[0]} file."
    )


def load_zero_preset(name: str) -> dict[str, Any]:
    """A ZeRO preset (name in presets/zero or a JSON path), comments stripped, with every finding in one error."""
    path = _preset_path(name, "zero")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MedcoreError(f"ZeRO preset {path} is not valid JSON: {exc}.") from None
    if not isinstance(config, dict):
        raise MedcoreError(f"ZeRO preset {path} must be a JSON object.")
    findings = check_ds_config(config)
    if findings:
        raise MedcoreError(f"ZeRO preset {path.name} has {len(findings)} problem(s): " + "; ".join(map(str, findings)))
    return strip_comments(config)


def resolve_ds_config(
    preset: dict[str, Any], *, micro_batch: int, grad_accum: int, world_size: int, precision: str, max_grad_norm: float
) -> dict[str, Any]:
    """The DeepSpeed config for one launch: batch sizes computed (never typed), precision and clipping filled in."""
    config = copy.deepcopy(preset)
    config["train_micro_batch_size_per_gpu"] = micro_batch
    config["gradient_accumulation_steps"] = grad_accum
    config["train_batch_size"] = micro_batch * grad_accum * world_size
    config["gradient_clipping"] = max_grad_norm
    config["bf16"] = {"enabled": precision == "bf16"}
    config["fp16"] = {"enabled": precision == "fp16"}
    return config


def offloads_optimizer(config: dict[str, Any]) -> bool:
    offload = (config.get("zero_optimization") or {}).get("offload_optimizer") or {}
    return offload.get("device", "none") in ("cpu", "nvme")


class LoraPresetConfig(BaseModel):
    """A LoRA preset from presets/lora/*.yaml."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(gt=0, description="Rank of the low-rank update.")
    alpha: int = Field(gt=0, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "auto", description="auto (per architecture), query-value, all-linear, or a list of module names."
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train.")


def load_lora_preset(name: str) -> LoraPresetConfig | None:
    """The LoRA preset `name` (presets/lora or a YAML path); None for `full` (full fine-tune)."""
    if name == "full":
        return None
    path = _preset_path(name, "lora")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MedcoreError(f"LoRA preset {path} is not valid YAML: {exc}.") from None
    return validated(LoraPresetConfig, data, f"LoRA preset {path.name}")


def describe_presets(kind: Literal["zero", "lora"]) -> dict[str, str]:
    """Preset name -> its one-line explanation (the preset's own comment), for the console and CLI help."""
    folder = configs_dir() / kind
    out: dict[str, str] = {}
    if kind == "lora":
        for path in sorted(folder.glob("*.yaml")):
            comments = [line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")]
            out[path.stem] = " ".join(c for c in comments if c and not c.startswith("Use:"))
        out["full"] = "No LoRA: every weight trains. Most memory; only for small models or many nodes."
    else:
        for path in sorted(folder.glob("*.json")):
            comment = str(json.loads(path.read_text()).get("_comment", ""))
            out[path.stem] = comment.split(" Launch:")[0]
    return out
