"""ZeRO-3 loading: every rank builds the model inside DeepSpeed's `zero.Init` and reads only its own partition of
each weight straight from the safetensors files, so no rank ever holds the whole model (medcore.models.load_model
with `zero3_config`). A checkpoint this cannot map one to one goes through transformers' own ZeRO-3 load.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@contextmanager
def transformers_zero3(zero3_config: dict) -> Iterator[None]:
    """While open, `from_pretrained` runs in transformers' ZeRO-3 mode: the model is built inside `zero.Init`, rank 0
    reads the whole checkpoint and copies it in module by module. Closed afterwards: a later plain load (a merged
    export on rank 0) would otherwise wait for ranks that never join it."""
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    keep_alive = HfDeepSpeedConfig(zero3_config)  # transformers keeps only a weak reference to it
    try:
        yield
    finally:
        unset_hf_deepspeed_config()
        del keep_alive


# safetensors dtype names -> torch dtypes (the ones model weights use).
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


READ_CHUNK_BYTES = 16 * 1024**2  # converting reads go through chunks this size, never a whole-tensor copy


@dataclass(frozen=True)
class StoredTensor:
    """Where one checkpoint tensor lies in its safetensors file."""

    path: Path
    offset: int  # of its first byte in the file
    dtype: str  # a torch dtype name
    shape: tuple[int, ...]


def read_safetensors_index(folder: Path) -> dict[str, StoredTensor] | None:
    """Checkpoint key -> where its bytes are, from the files' headers alone; None unless the folder holds a
    safetensors checkpoint (one file or an index of shards) in dtypes listed in SAFETENSORS_DTYPES."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted({folder / name for name in json.loads(index.read_text())["weight_map"].values()})
    elif (folder / "model.safetensors").exists():
        files = [folder / "model.safetensors"]
    else:
        return None
    stored = {}
    for path in files:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")  # the format: 8-byte header length, JSON header, data
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        for key, entry in header.items():
            if entry["dtype"] not in SAFETENSORS_DTYPES:
                return None
            offset = 8 + size + entry["data_offsets"][0]
            stored[key] = StoredTensor(path, offset, SAFETENSORS_DTYPES[entry["dtype"]], tuple(entry["shape"]))
    return stored


def copy_stored(stored: StoredTensor, start: int, count: int, target) -> None:
    """Copy elements start..start+count of a stored tensor (flattened) into the 1-D tensor `target`, straight from
    the file: into `target` itself when the dtypes agree, else through READ_CHUNK_BYTES at a time (no mapping of the
    whole file, whose touched pages would count against the rank)."""
    import torch

    dtype = getattr(torch, stored.dtype)
    size = dtype.itemsize
    same = dtype == target.dtype and target.device.type == "cpu" and target.is_contiguous()
    step = count if same else max(1, READ_CHUNK_BYTES // size)
    with stored.path.open("rb", buffering=0) as f, torch.no_grad():
        for done in range(0, count, step):
            n = min(step, count - done)
            chunk = target.narrow(0, done, n) if same else torch.empty(n, dtype=dtype)
            f.seek(stored.offset + (start + done) * size)
            f.readinto(chunk.view(torch.uint8).numpy())
            if not same:
                target.narrow(0, done, n).copy_(chunk)


def match_checkpoint(model, stored: dict[str, StoredTensor]) -> dict[str, str] | None:
    """Model parameter or persistent buffer -> its checkpoint key. None when a weight of the model's body is missing
    or a shape differs: renamed, fused or resized weights, which transformers' own loading converts. Weights of a
    new task head (outside the body) may be missing: they are initialised afterwards."""
    prefix = getattr(model, "base_model_prefix", "")
    has_head = model.base_model is not model
    persistent = set(model.state_dict())
    tensors = [*model.named_parameters(), *((n, b) for n, b in model.named_buffers() if n in persistent)]
    matched = {}
    for name, tensor in tensors:
        key = name if name in stored else name.removeprefix(f"{prefix}.")
        shape = tuple(getattr(tensor, "ds_shape", tensor.shape))
        if key in stored and stored[key].shape == shape:
            matched[name] = key
        elif key in stored or not has_head or name.startswith(f"{prefix}."):
            return None
    return matched


def copy_partition(param, stored: StoredTensor) -> None:
    """Fill this rank's ZeRO-3 partition of `param`: DeepSpeed gives rank r elements r*P..(r+1)*P of the flattened
    weight (P = partition size; the last partition is padded)."""
    import torch.distributed as dist

    partition = param.ds_tensor
    start = dist.get_rank(group=param.ds_process_group) * partition.ds_numel
    count = max(0, min(partition.ds_numel, param.ds_numel - start))
    copy_stored(stored, start, count, partition)


@contextmanager
def freed_memory_returned() -> Iterator[None]:
    """While open, glibc hands blocks over 1 MB straight back to the system when they are freed.

    zero.Init materialises each module's whole weights (received from rank 0 on the other ranks), partitions them and
    frees the whole copy. glibc's mmap threshold rises to the size of such freed blocks (up to 32 MB), so later ones
    land in its heap, which kept growing: ~200 MB more on rank 1 than on rank 0 for a 211M-parameter model (measured).
    Afterwards the threshold stays at 32 MB, where glibc's own adjustment would end up. Elsewhere than glibc: no-op.
    """
    import ctypes

    M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        yield
        return
    mallopt(M_MMAP_THRESHOLD, 1024**2)
    try:
        yield
    finally:
        mallopt(M_MMAP_THRESHOLD, 32 * 1024**2)


def load_partitioned(auto, source: Path | str, kwargs: dict, zero3_config: dict):
    """ZeRO-3 load: the model is built inside DeepSpeed's `zero.Init` (each weight partitioned as it is created)
    and every rank reads only its own slice of each weight from the safetensors files, so no rank holds the whole
    model, even for a moment. New task heads are initialised as `from_pretrained` does. A checkpoint this cannot
    map one to one (pickled weights, a hub id, renamed or fused keys, options DeepSpeed keeps elsewhere) goes
    through transformers' ZeRO-3 load instead, where rank 0 reads the whole checkpoint."""
    import deepspeed
    import torch
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights
    from transformers.integrations.deepspeed import prevent_arange_dtype_change

    from medcore.deepspeed_ops import prefer_this_environments_tools

    prefer_this_environments_tools()  # an op DeepSpeed builds here is the one the trainer's ranks load
    zero = zero3_config.get("zero_optimization") or {}
    stored = read_safetensors_index(Path(source)) if Path(str(source)).is_dir() else None
    elsewhere = (zero.get("offload_param") or {}).get("device") == "nvme" or zero.get("zero_hpz_partition_size", 1) > 1
    if stored is None or elsewhere:
        with transformers_zero3(zero3_config):
            return auto.from_pretrained(source, **kwargs)
    config = AutoConfig.from_pretrained(source, **{k: v for k, v in kwargs.items() if k != "dtype"})
    dtype = kwargs.get("dtype") or getattr(config, "dtype", None) or torch.float32
    with freed_memory_returned(), no_init_weights(), prevent_arange_dtype_change():
        # The partition dtype comes from the config's bf16/fp16 flags (an explicit dtype is ignored on CPU).
        with deepspeed.zero.Init(config_dict_or_path=zero3_config):
            model = auto.from_config(config, dtype=dtype)
    model.tie_weights()  # before matching: a tied output layer is the embedding, not a missing weight to initialise
    matched = match_checkpoint(model, stored)
    if matched is None:
        del model
        with transformers_zero3(zero3_config):
            return auto.from_pretrained(source, **kwargs)
    fill_partitions(model, stored, matched)
    return model.eval()  # as from_pretrained returns it (dropout off until the trainer says otherwise)


def fill_partitions(model, stored: dict[str, StoredTensor], matched: dict[str, str]) -> None:
    """Copy the checkpoint into the partitioned model, then initialise what it lacks (a new head) as
    `from_pretrained` does: the same init functions, in the same order, from the same random state, on every rank
    (rank 0's values are kept)."""
    import deepspeed
    import torch
    from transformers.initialization import guard_torch_init_functions

    for name, buffer in model.named_buffers():
        if name in matched:  # persistent buffers only (see match_checkpoint): whole on every rank
            copy_stored(stored[matched[name]], 0, buffer.numel(), buffer.view(-1))
            buffer._is_hf_initialized = True
    missing = []
    for name, param in model.named_parameters():
        if name in matched:
            copy_partition(param, stored[matched[name]])
            param._is_hf_initialized = True
        else:
            missing.append(param)
    with deepspeed.zero.GatheredParameters(missing, modifier_rank=0), torch.no_grad(), guard_torch_init_functions():
        model.initialize_weights()
