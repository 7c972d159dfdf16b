"""The run spec: one typed, validated description of a fine-tuning job (YAML, JSON or dict + key=value overrides)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medcore.errors import MedcoreError, validated

# A run id is a folder name, a Kubernetes label value and a torchrun --rdzv-id: 1-63 characters, alphanumeric ends.
RUN_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


def check_run_id(value: str) -> str:
    """Raise ValueError (for pydantic) when `value` cannot be a run id."""
    if not RUN_ID.match(value):
        raise ValueError("must be 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit")
    return value


class RunSpec(BaseModel):
    """Everything a run needs. The console, CLI and notebooks all build this; spec.json in the run folder holds it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Short label for the run; the run id starts with it.")
    model: str = Field("minilm", description="Registry name (minilm, tiny-llama), a local model folder, or a hub id.")
    task: Literal["classification", "causal-lm", "token-classification"] = Field(
        "classification",
        description="classification (text -> label), causal-lm (prompt -> response) or token-classification "
        "(text -> typed character spans, BIO-tagged word pieces: clinical NER / PHI tagging).",
    )
    dataset: str = Field(description="Workspace dataset name (see `medcore data list`).")
    lora: str = Field(
        "default", description="LoRA preset name (medcore/train/presets/lora), a YAML path, or `full` (no LoRA)."
    )
    zero: str = Field(
        "single_node", description="DeepSpeed ZeRO preset name (medcore/train/presets/zero) or a JSON path."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (or fp16) on CUDA, fp32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu.")
    micro_batch: int = Field(8, description="Sequences per rank per forward pass (train_micro_batch_size_per_gpu).")
    grad_accum: int = Field(1, description="Micro-batches accumulated per optimizer step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate (after warmup).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(
        0.05, ge=0, lt=1, description="Fraction of steps with linear warmup before cosine decay."
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the training split (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps to run; overrides epochs.")
    max_length: int = Field(
        256,
        description="Longest sequence in tokens; longer texts are truncated (token-classification: cut into "
        "windows overlapping by a quarter).",
    )
    pack: bool = Field(True, description="causal-lm: pack several examples into each row (no padding waste).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    log_interval: int = Field(1, gt=0, description="Append a metrics.jsonl line every N steps.")
    eval_interval: int = Field(
        0, ge=0, description="Evaluate on the validation split every N steps (0: at the end only)."
    )
    save_interval: int = Field(0, ge=0, description="Checkpoint every N steps (0: no periodic checkpoints).")
    keep_last_k: int = Field(2, gt=0, description="Checkpoints kept; older ones are deleted.")
    early_stopping_metric: str | None = Field(
        None, description="Validation metric that stops training when it stops improving (eval_loss, eval_f1...)."
    )
    early_stopping_patience: int = Field(3, gt=0, description="Evaluations without improvement before stopping.")
    seed: int = Field(42, description="Seed for weights of new heads, LoRA init, dropout and data order.")
    nproc_per_node: int = Field(1, gt=0, description="Processes (ranks) per node.")
    nnodes: int = Field(1, gt=0, description="Nodes in the job.")
    node_rank: int = Field(0, ge=0, description="This node's rank (0 .. nnodes-1).")
    rdzv_endpoint: str | None = Field(
        None, description="HOST:PORT of the rendezvous (node 0); required when nnodes > 1."
    )
    run_id: str | None = Field(
        None,
        description="The run's id (its folder runs/RUN_ID and torchrun's --rdzv-id), the same on every node; "
        "required when nnodes > 1. Unset on one node: a new id from the time and the name.",
    )
    dist_timeout_s: int = Field(60, gt=0, description="Seconds before a missing peer or collective fails the job.")
    resume: bool = Field(False, description="Continue from the newest checkpoint in the run folder.")
    export_merged: bool = Field(False, description="Also write the base model with the adapter merged into merged/.")
    class_weighting: Literal["none", "balanced"] = Field(
        "none",
        description="classification: 'balanced' weighs each class's loss by rows / (classes x the class's rows) in "
        "the train split (scikit-learn's 'balanced'), so a rare class counts as much as a common one. For labels "
        "that are heavily imbalanced (the Data and Train pages warn).",
    )
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description="Also send the metrics (numbers by step) and the run's settings to these trackers, written inside "
        "the run folder (trackers/): TensorBoard event files, an MLflow file store, W&B offline files. Never note "
        "text, never sent anywhere. Needs the package (`pip install medcore[trackers]`).",
    )
    evaluate_after: bool = Field(
        True,
        description="When the run completes, score it on its dataset's test split with 95% CIs (as `medcore eval "
        "run`) and write its model card; the Runs page shows the headline (accuracy, entity F1 or answer token F1). "
        "Needs a test split, and for a language model prompt and response columns.",
    )
    allow_unredacted: bool = Field(
        False, description="Train on a dataset not marked redacted. Audited; only for data already de-identified."
    )
    allow_downloads: bool = Field(
        False,
        description="Let this run download a hub model it does not find locally (also: MEDCORE_ALLOW_DOWNLOADS=1). "
        "Off: MedCore never contacts the model hub; fetch a model once with `hf download ID`.",
    )

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, value: str | None) -> str | None:
        return None if value is None else check_run_id(value)

    @model_validator(mode="after")
    def _check_class_weighting(self) -> RunSpec:
        if self.class_weighting != "none" and self.task != "classification":
            raise ValueError(f"class_weighting applies to classification; this is a {self.task} run: leave it none")
        return self

    @model_validator(mode="after")
    def _check_topology(self) -> RunSpec:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("nnodes > 1 needs rdzv_endpoint=HOST:PORT (node 0's address)")
        return self

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


ALLOW_DOWNLOADS_ENV = "MEDCORE_ALLOW_DOWNLOADS"


def downloads_allowed(spec: RunSpec | dict) -> bool:
    """Whether this run may contact the model hub: only when the spec or the environment says so explicitly."""
    asked = spec.get("allow_downloads") if isinstance(spec, dict) else spec.allow_downloads
    return bool(asked) or os.environ.get(ALLOW_DOWNLOADS_ENV, "").lower() in ("1", "true", "yes")


def set_offline_mode(spec: RunSpec | dict) -> None:
    """Make this process load models from local files only (HF_HUB_OFFLINE), unless downloads are allowed.

    Call before transformers/huggingface_hub are imported: they read the variable once, at import.
    """
    if not downloads_allowed(spec):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"


def parse_overrides(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """`key=value` strings -> dict; values are parsed as YAML scalars (`lr=1e-4`, `pack=false`)."""
    if not items:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedcoreError(f"Override '{item}' is not key=value, e.g. lr=1e-4 or max_steps=100.")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def _read_spec_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise MedcoreError(f"Spec file {path} does not exist. Pass a YAML or JSON run spec.")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise MedcoreError(f"Spec file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise MedcoreError(f"Spec file {path} must hold a mapping of fields (model:, dataset:, ...).")
    return data


def load_spec(source: str | os.PathLike | dict | RunSpec, overrides: list[str] | dict | None = None) -> RunSpec:
    """A RunSpec from a YAML/JSON file, a dict or a RunSpec, with `overrides` (`key=value` list or dict) applied.

    Raises:
        MedcoreError: one line listing every invalid or unknown field.
    """
    if isinstance(source, RunSpec):
        data, where = source.model_dump(), "spec object"
    elif isinstance(source, dict):
        data, where = dict(source), "spec dict"
    else:
        path = Path(source)
        data, where = _read_spec_file(path), path.name
    data.update(parse_overrides(overrides))
    return validated(RunSpec, data, f"run spec ({where})", "see `medcore train --help` for fields")
