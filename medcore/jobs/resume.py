"""Check that a run's newest checkpoint can really be resumed, and say exactly what is wrong when it cannot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcore.errors import MedcoreError
from medcore.rundir import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CHECKPOINT_ADAPTER, TRAINER_STATE, RunDir, read_json
from medcore.train.spec import RunSpec
from medcore.workspace import Workspace


@dataclass
class CheckpointReport:
    """What a checkpoint holds; `problems` empty means it can be resumed with the run's spec."""

    path: Path
    step: int
    world_size: int | None = None
    zero_stage: int | None = None
    problems: list[str] = field(default_factory=list)


def _zero_stage(ds_config: dict | None) -> int:
    return int(((ds_config or {}).get("zero_optimization") or {}).get("stage", 0))


def _deepspeed_meta(step_dir: Path) -> dict[str, Any]:
    """DeepSpeed's per-checkpoint metadata (world size, ZeRO config, scheduler), read without loading weights."""
    import torch

    model_states = sorted(step_dir.glob("*model_states.pt"))
    if not model_states:
        return {}
    # mmap: only the small metadata entries are paged in, however large the model is.
    state = torch.load(model_states[0], map_location="cpu", mmap=True, weights_only=False)
    return {
        "dp_world_size": state.get("dp_world_size"),
        "mp_world_size": state.get("mp_world_size") or 1,
        "ds_config": state.get("ds_config") or {},
        "has_scheduler": state.get("lr_scheduler") is not None,
    }


def deepspeed_dir(ckpt: Path) -> Path | None:
    """The DeepSpeed tag folder inside a checkpoint (medcore.train: `deepspeed/`; HF Trainer: `global_stepN/`)."""
    found = sorted(p for p in ckpt.iterdir() if p.is_dir() and any(p.glob("*model_states.pt")))
    return found[-1] if found else None


def inspect_deepspeed(ckpt: Path, step_dir: Path, report: CheckpointReport) -> None:
    optim = sorted(step_dir.glob("*optim_states.pt"))
    meta = _deepspeed_meta(step_dir)
    report.world_size = int(meta["dp_world_size"] or 1) * int(meta["mp_world_size"])
    report.zero_stage = _zero_stage(meta["ds_config"])
    if not optim:
        report.problems.append(f"Optimizer state is missing: no {step_dir.name}/*optim_states.pt.")
    elif report.zero_stage > 0 and len(optim) != meta["dp_world_size"]:
        report.problems.append(
            f"Optimizer state is incomplete: {len(optim)} of {meta['dp_world_size']} ZeRO shards in {step_dir.name}/."
        )
    if not meta["has_scheduler"] and not (ckpt / "scheduler.pt").exists():
        report.problems.append("Learning-rate scheduler state is missing (neither scheduler.pt nor DeepSpeed's).")


def inspect_plain(ckpt: Path, report: CheckpointReport) -> None:
    """A checkpoint saved without DeepSpeed (torch optimizer and scheduler files)."""
    if not (ckpt / "optimizer.pt").exists():
        report.problems.append("Optimizer state is missing: no optimizer.pt.")
    if not (ckpt / "scheduler.pt").exists():
        report.problems.append("Learning-rate scheduler state is missing: no scheduler.pt.")
    state = read_json(ckpt / TRAINER_STATE, default={}) or {}
    report.world_size = state.get("world_size")


def _base_model(spec: RunSpec, ws: Workspace):
    """The run's base model with the same classification head shape the trainer built (labels from the dataset)."""
    from medcore.data.manifest import read_manifest
    from medcore.models import load_model
    from medcore.train.data import head_labels

    id2label = None
    if spec.task != "causal-lm":
        id2label = dict(enumerate(head_labels(spec.task, read_manifest(ws, spec.dataset).label_set)))
    return load_model(spec.model, spec.task, id2label=id2label, workspace=ws)


def check_adapter(ckpt: Path, spec: RunSpec, ws: Workspace, report: CheckpointReport) -> None:
    """The adapter must load onto the run's base model, not just exist."""
    # medcore.train keeps the adapter in checkpoint-N/adapter/; HF Trainer writes it at the top level.
    ckpt = ckpt / CHECKPOINT_ADAPTER if (ckpt / CHECKPOINT_ADAPTER).is_dir() else ckpt
    if spec.lora == "full":
        if not (ckpt / "config.json").exists():
            report.problems.append(f"The fine-tuned weights are missing: no {ckpt.name}/config.json.")
        return
    if not (ckpt / ADAPTER_CONFIG).exists():
        report.problems.append(f"The LoRA adapter is missing: no {ADAPTER_CONFIG}.")
        return
    if not any((ckpt / name).exists() for name in ADAPTER_WEIGHTS):
        report.problems.append(f"The LoRA adapter weights are missing: no {ADAPTER_WEIGHTS[0]}.")
        return
    config = read_json(ckpt / ADAPTER_CONFIG)
    if not isinstance(config, dict) or "peft_type" not in config:
        report.problems.append(f"{ADAPTER_CONFIG} is not a PEFT adapter config (unreadable or no peft_type).")
        return
    try:
        from peft import PeftModel

        PeftModel.from_pretrained(_base_model(spec, ws), ckpt)
    except (OSError, ValueError, RuntimeError, KeyError, MedcoreError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        report.problems.append(f"The adapter does not load onto {spec.model}: {type(exc).__name__} ({first}).")


def inspect_checkpoint(ckpt: Path, spec: Any, ws: Workspace) -> CheckpointReport:
    report = CheckpointReport(ckpt, int(ckpt.name.split("-")[-1]))
    step_dir = deepspeed_dir(ckpt)
    if step_dir is not None:
        inspect_deepspeed(ckpt, step_dir, report)
    else:
        inspect_plain(ckpt, report)
    check_adapter(ckpt, spec, ws, report)
    return report


def validate_checkpoint(rd: RunDir, spec: RunSpec) -> CheckpointReport:
    """The newest checkpoint, checked against the run's spec; MedcoreError listing every problem otherwise."""
    ckpt = rd.latest_checkpoint()
    if ckpt is None:
        raise MedcoreError(
            f"Run {rd.run_id} has no checkpoint in {rd.checkpoints} to resume from (it stopped before the first "
            "save). Launch the spec again as a new run."
        )
    report = inspect_checkpoint(ckpt, spec, Workspace(rd.path.parent.parent))
    want_ws = spec.world_size
    if report.world_size and report.world_size != want_ws:
        report.problems.append(
            f"World size differs: the checkpoint was saved by {report.world_size} rank(s), the spec runs {want_ws}. "
            f"Resume with nnodes x nproc_per_node = {report.world_size}."
        )
    want_stage = _zero_stage(read_json(rd.ds_config, default={}))
    if report.zero_stage is not None and report.zero_stage != want_stage:
        report.problems.append(
            f"ZeRO stage differs: the checkpoint is stage {report.zero_stage}, ds_config.json asks for {want_stage}. "
            f"Resume with zero_stage={report.zero_stage}."
        )
    if report.problems:
        listing = " ".join(f"({i}) {p}" for i, p in enumerate(report.problems, 1))
        raise MedcoreError(f"Cannot resume run {rd.run_id} from {ckpt.name}: {listing}")
    return report
