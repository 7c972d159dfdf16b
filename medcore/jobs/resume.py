"""Check that a run's newest checkpoint can really be resumed, and say exactly what is wrong when it cannot.

Everything is judged from the files' metadata (safetensors headers, JSON, DeepSpeed's small metadata entries read
with weights_only): the console calls this, and must not build the model to do it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcore.errors import MedcoreError
from medcore.rundir import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CHECKPOINT_ADAPTER,
    DATASET_HASH,
    TRAINER_STATE,
    RunDir,
    read_json,
)
from medcore.train.presets import load_lora_preset
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
    """DeepSpeed's per-checkpoint metadata (world size, ZeRO config, scheduler), read without loading weights.

    Raises:
        ValueError: the file is cut short, not a torch file, or holds more than tensors and plain containers.
    """
    import pickle

    import torch

    model_states = sorted(step_dir.glob("*model_states.pt"))
    # mmap: only the small metadata entries are paged in, however large the model is. weights_only: tensors and
    # plain containers only; a file that would run code is refused.
    try:
        state = torch.load(model_states[0], map_location="cpu", mmap=True, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        why = "it holds more than tensors and plain data" if "weights_only" in str(exc).lower() else "cut short?"
        raise ValueError(f"{step_dir.name}/{model_states[0].name} is unreadable ({why})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{step_dir.name}/{model_states[0].name} is not a DeepSpeed checkpoint")
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
    try:
        meta = _deepspeed_meta(step_dir)
    except ValueError as exc:
        report.problems.append(f"{exc}. Resume from an earlier checkpoint (delete this one) or launch again.")
        return
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


# Bytes per element of the safetensors dtypes a checkpoint holds.
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                           "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Tensor name -> {"dtype", "shape", "data_offsets"} from a safetensors file, reading no weights.

    Raises:
        ValueError: the file is not safetensors, or shorter than its header says (a save cut short).
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        if length <= 0 or 8 + length > size:
            raise ValueError(f"no complete safetensors header in its {size} bytes")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("its safetensors header is not JSON") from None
    header.pop("__metadata__", None)
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if end - begin != math.prod(info["shape"]) * SAFETENSORS_DTYPE_BYTES.get(info["dtype"], 0):
            raise ValueError(f"tensor {name} has {end - begin} bytes, not {info['shape']} x {info['dtype']}")
    needed = 8 + length + max((info["data_offsets"][1] for info in header.values()), default=0)
    if needed != size:
        raise ValueError(f"it holds {size} bytes where its tensors need {needed} (cut short)")
    return header


def lora_shape_problems(tensors: dict[str, dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """LoRA pairs whose shapes disagree with the adapter config's rank, or with each other."""
    ranks = {int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())}
    problems = []
    for name, info in tensors.items():
        if ".lora_A." not in name:
            continue
        partner = tensors.get(name.replace(".lora_A.", ".lora_B."))
        if partner is None:
            problems.append(f"{name} has no lora_B partner.")
        elif info["shape"][0] not in ranks or partner["shape"][-1] != info["shape"][0]:
            problems.append(f"{name} has rank {info['shape'][0]}, the adapter config says r={config.get('r')}.")
    return problems[:3]


def head_problems(
    tensors: dict[str, dict[str, Any]], config: dict[str, Any], spec: RunSpec, ws: Workspace
) -> list[str]:
    """A classifier head whose outputs differ from the dataset's labels (re-imported with other classes)."""
    if spec.task not in ("classification", "token-classification"):
        return []
    from medcore.data.manifest import read_manifest
    from medcore.train.data import head_labels

    want = len(head_labels(spec.task, [str(x) for x in read_manifest(ws, spec.dataset).label_set]))
    heads = [f".{m}.weight" for m in config.get("modules_to_save") or []]
    heads += [f".{m}.out_proj.weight" for m in config.get("modules_to_save") or []]
    found = {n: t["shape"][0] for n, t in tensors.items() if n.endswith(tuple(heads)) and len(t["shape"]) == 2}
    return [
        f"The classifier head {n} has {rows} outputs; dataset '{spec.dataset}' now gives {want}."
        for n, rows in found.items()
        if rows != want
    ]


def check_adapter(ckpt: Path, spec: RunSpec, ws: Workspace, report: CheckpointReport) -> None:
    """The adapter must fit the run, judged from its files' metadata (config, tensor names and shapes): no model is
    built, so checking a 7B run from the console costs kilobytes of reading, not the model's memory."""
    # medcore.train keeps the adapter in checkpoint-N/adapter/; HF Trainer writes it at the top level.
    ckpt = ckpt / CHECKPOINT_ADAPTER if (ckpt / CHECKPOINT_ADAPTER).is_dir() else ckpt
    where = f"{ckpt.parent.name}/{ckpt.name}" if ckpt.name == CHECKPOINT_ADAPTER else ckpt.name
    if spec.lora == "full":
        if not (ckpt / "config.json").exists():
            report.problems.append(f"The fine-tuned weights are missing: no {ckpt.name}/config.json.")
        for weights in sorted(ckpt.glob("*.safetensors")):
            tensor_header(weights, where, report)
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
    if not (ckpt / ADAPTER_WEIGHTS[0]).exists():
        return  # a legacy .bin adapter: a pickle, read by nobody here
    tensors = tensor_header(ckpt / ADAPTER_WEIGHTS[0], where, report)
    if tensors is None:
        return
    if config.get("peft_type") == "LORA":
        if not any(".lora_A." in name for name in tensors):
            report.problems.append(f"{where}/{ADAPTER_WEIGHTS[0]} holds no LoRA weights.")
        report.problems.extend(lora_shape_problems(tensors, config))
        preset = load_lora_preset(spec.lora)
        if preset is not None and config.get("r") != preset.r:
            report.problems.append(
                f"The adapter has rank r={config.get('r')}; the run's LoRA preset '{spec.lora}' now says r={preset.r}."
            )
    report.problems.extend(head_problems(tensors, config, spec, ws))


def tensor_header(path: Path, where: str, report: CheckpointReport) -> dict[str, dict[str, Any]] | None:
    """The file's tensor header; None (with the problem reported) when it is truncated or not safetensors."""
    try:
        return read_safetensors_header(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.problems.append(f"{where}/{path.name} is unreadable: {exc}. Resume from an earlier checkpoint "
                               "(delete this one) or launch again.")  # fmt: skip
        return None


def inspect_checkpoint(ckpt: Path, spec: Any, ws: Workspace) -> CheckpointReport:
    report = CheckpointReport(ckpt, int(ckpt.name.split("-")[-1]))
    step_dir = deepspeed_dir(ckpt)
    if step_dir is not None:
        inspect_deepspeed(ckpt, step_dir, report)
    else:
        inspect_plain(ckpt, report)
    check_adapter(ckpt, spec, ws, report)
    check_trainer_state(ckpt, report)
    return report


def check_trainer_state(ckpt: Path, report: CheckpointReport) -> None:
    """trainer_state.json names the step the folder is named for (the trainer resumes its data position from it)."""
    state = read_json(ckpt / TRAINER_STATE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        report.problems.append(f"{TRAINER_STATE} is missing or unreadable (no step in it).")
    elif state["step"] != report.step:
        report.problems.append(f"{TRAINER_STATE} says step {state['step']}, the folder says {report.step}.")


def dataset_hash(ws: Workspace, dataset: str) -> str:
    """The content hash of a dataset's files (the Parquet splits), as import and redaction compute it."""
    from medcore.data.manifest import dataset_dir
    from medcore.phi.verify import dataset_content_hash

    try:
        return dataset_content_hash(dataset_dir(ws, dataset))
    except FileNotFoundError:
        raise MedcoreError(
            f"Dataset '{dataset}' of this run is gone from {ws.datasets}: import it again under that name."
        ) from None


def record_dataset_hash(rd: RunDir) -> None:
    """Note which data the run trains on (once, as it is launched), so a resume can tell when the dataset was
    re-imported meanwhile."""
    dataset = (read_json(rd.spec, default={}) or {}).get("dataset")
    if dataset and rd.read_status().get(DATASET_HASH) is None:
        rd.update_status(**{DATASET_HASH: dataset_hash(Workspace(rd.path.parent.parent), dataset)})


def check_dataset_unchanged(rd: RunDir, spec: RunSpec, ws: Workspace) -> None:
    """Refuse to resume on data other than the run started with (runs from before the hash was kept pass)."""
    recorded = rd.read_status().get(DATASET_HASH)
    if not recorded or not spec.dataset:
        return
    now = dataset_hash(ws, spec.dataset)
    if now != recorded:
        raise MedcoreError(
            f"Cannot resume run {rd.run_id}: dataset '{spec.dataset}' changed since the run started (content hash "
            f"{recorded[:12]} then, {now[:12]} now), so the remaining steps would train on other rows. Launch the "
            "spec again as a new run, or import the original data again under that name."
        )


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
