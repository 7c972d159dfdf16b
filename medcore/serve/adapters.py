"""Checks of a LoRA adapter folder before it is loaded: a PEFT LoRA adapter, trained on the served base, of a kind
the server can serve (generation or classification), its head's labels. No model is touched here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medcore.errors import MedcoreError
from medcore.rundir import ADAPTER_CONFIG, ADAPTER_WEIGHTS, RunDir, read_json
from medcore.serve.protocol import ApiError
from medcore.workspace import Workspace

# Config keys that fix a model's architecture: equal on both sides when an adapter's base is the served base.
SHAPE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)
HEAD_SUFFIXES = ("classifier.weight", "score.weight", "classifier.out_proj.weight")  # BERT, Llama, RoBERTa heads
KINDS = {None: "generate", "CAUSAL_LM": "generate", "SEQ_CLS": "classify"}


@dataclass(frozen=True)
class AdapterInfo:
    """What the server knows about one loaded adapter."""

    name: str
    path: Path
    kind: Literal["generate", "classify"]
    rank: int
    labels: tuple[str, ...] = ()  # classification: the head's classes in output order


def bad_path(message: str) -> ApiError:
    return ApiError(400, message, param="lora_path", code="invalid_adapter")


def resolve_adapter_folder(given: str | Path, ws: Workspace) -> Path:
    """An adapter folder, a run folder (its adapter/), or a run id of the workspace -> the adapter folder."""
    path = Path(given).expanduser()
    if not path.exists() and "/" not in str(given) and (ws.runs / str(given)).is_dir():
        path = ws.runs / str(given)
    if RunDir(path).spec.exists() and (RunDir(path).adapter / ADAPTER_CONFIG).exists():
        path = RunDir(path).adapter
    if not path.is_dir():
        raise bad_path(f"Adapter folder {path} does not exist: give a run's adapter folder (runs/RUN_ID/adapter).")
    return path.resolve()


def read_adapter_config(folder: Path) -> dict:
    """adapter_config.json of a PEFT LoRA adapter with its weights next to it."""
    config = read_json(folder / ADAPTER_CONFIG)
    if not isinstance(config, dict) or "peft_type" not in config:
        raise bad_path(
            f"{folder} is not a PEFT adapter ({ADAPTER_CONFIG} is missing or unreadable): give the adapter folder a "
            "MedCore run wrote (runs/RUN_ID/adapter) or any peft `save_pretrained` folder."
        )
    if config["peft_type"] != "LORA":
        raise bad_path(f"Adapter {folder} is a {config['peft_type']} adapter; this server serves LoRA adapters only.")
    if not any((folder / name).exists() for name in ADAPTER_WEIGHTS):
        raise bad_path(f"Adapter {folder} has no weights ({' or '.join(ADAPTER_WEIGHTS)}): copy the whole folder.")
    return config


def shape_of(source: str | Path) -> dict | None:
    """The architecture keys of a local model folder's config.json, or None when it is not a local folder."""
    config = read_json(Path(source) / "config.json") if Path(source).is_dir() else None
    return {k: config.get(k) for k in SHAPE_KEYS} if isinstance(config, dict) else None


def check_same_base(folder: Path, recorded: str | None, served: str | Path, served_name: str) -> None:
    """Refuse an adapter trained on another base: other folder name, or another architecture when both are local."""
    if not recorded:
        return  # peft did not record it; a shape mismatch still fails the load with a clear message
    same_name = Path(str(recorded).rstrip("/")).name == Path(str(served).rstrip("/")).name
    recorded_shape, served_shape = shape_of(recorded), shape_of(served)
    same_shape = recorded_shape is None or served_shape is None or recorded_shape == served_shape
    if not (same_name and same_shape):
        raise bad_path(
            f"Adapter {folder} was trained on base '{recorded}', but this server serves '{served_name}' ({served}). "
            f"Serve it on its own base: `medcore serve --model {recorded} --adapter NAME={folder}`."
        )


def head_size(folder: Path) -> int | None:
    """Classes of a classification adapter's head, read from the weights file's header (no tensors loaded)."""
    weights = folder / ADAPTER_WEIGHTS[0]
    if weights.exists():
        with open(weights, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        shapes = {key: meta["shape"] for key, meta in header.items() if key != "__metadata__"}
    else:
        import torch

        state = torch.load(folder / ADAPTER_WEIGHTS[1], map_location="cpu", weights_only=True)
        shapes = {key: list(tensor.shape) for key, tensor in state.items()}
    sizes = [shape[0] for key, shape in shapes.items() if key.endswith(HEAD_SUFFIXES)]
    return sizes[0] if sizes else None


def head_labels(folder: Path, size: int, ws: Workspace) -> tuple[str, ...]:
    """A run's classes (its dataset's label set, in training order) when the adapter is a run's; else LABEL_i."""
    spec = read_json(RunDir(folder.parent).spec) if folder.name == "adapter" else None
    if isinstance(spec, dict) and spec.get("dataset"):
        from medcore.data.manifest import read_manifest

        try:
            labels = [str(label) for label in read_manifest(ws, spec["dataset"]).label_set]
        except MedcoreError:
            labels = []
        if len(labels) == size:
            return tuple(labels)
    return tuple(f"LABEL_{i}" for i in range(size))


def inspect_adapter(
    name: str, given: str | Path, served: str | Path, served_name: str, max_rank: int, ws: Workspace
) -> AdapterInfo:
    """Every check an adapter must pass before loading; raises ApiError (400, param lora_path) naming the problem."""
    folder = resolve_adapter_folder(given, ws)
    config = read_adapter_config(folder)
    kind = KINDS.get(config.get("task_type"))
    if kind is None:
        raise bad_path(
            f"Adapter {folder} is a {config.get('task_type')} adapter; this server serves text generation "
            "(CAUSAL_LM) and classification (SEQ_CLS) adapters."
        )
    check_same_base(folder, config.get("base_model_name_or_path"), served, served_name)
    rank = int(config.get("r") or 0)
    if rank > max_rank:
        raise bad_path(f"Adapter {folder} has LoRA rank {rank}, above max_lora_rank {max_rank}: raise max_lora_rank.")
    labels: tuple[str, ...] = ()
    if kind == "classify":
        size = head_size(folder)
        if not size:
            raise bad_path(
                f"Classification adapter {folder} holds no classifier head weights: retrain it with MedCore."
            )
        labels = head_labels(folder, size, ws)
    return AdapterInfo(name=name, path=folder, kind=kind, rank=rank, labels=labels)
