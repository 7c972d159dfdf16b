"""Memory estimate before launch: will this spec fit on this machine, and what to change if not.

Per rank, with N parameters, T of them trainable (LoRA + heads), w bytes per weight (2 for bf16/fp16,
4 for fp32) and world size W, the ZeRO arithmetic of the ZeRO paper (Rajbhandari et al. 2020):
  weights     N*w        (/W at stage 3; on CPU with parameter offload)
  gradients   T*w        (/W at stage >= 2)
  optimizer   T*k        (/W at stage >= 1; on CPU with optimizer offload); k = 12 bytes with mixed
                         precision (fp32 master + Adam m, v), 8 bytes in fp32 (Adam m, v)
  activations L*s*b*h*(34 + 5*a*s/h) bytes in 16-bit (Korthikanti et al. 2022), doubled for fp32;
              with gradient checkpointing only each layer's input (s*b*h*w) is kept, plus one layer
  logits      b*s*V*4*2  (fp32 logits and their gradient; causal LM only)
  runtime     the framework's own footprint per process (CUDA context or the CPU interpreter + libraries)

Loading comes first and peaks apart, in host RAM whatever the device: below ZeRO-3 every rank holds the whole
model (counted at fp32, N*4) at the same time; at ZeRO-3 a rank holds its partition (N*w/W, in host RAM on CPU or
with parameter offload, else on the GPU) plus, briefly, one whole weight matrix twice over (zero.Init materialises
each module's weights and receives rank 0's copy before it partitions them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medcore.train.spec import RunSpec, downloads_allowed
from medcore.workspace import Workspace, get_workspace

GB = 1024**3
CPU_RUNTIME_BYTES = int(0.7 * GB)  # measured: a CPU rank with torch + DeepSpeed + transformers imported
CUDA_RUNTIME_BYTES = int(0.8 * GB)  # CUDA context + cuBLAS/NCCL workspaces
HEADROOM = 0.9  # leave 10% for fragmentation and the allocator's caches


@dataclass
class MemoryEstimate:
    device: str  # "cuda" or "cpu"
    per_rank_bytes: dict[str, int] = field(default_factory=dict)
    host_offload_bytes: int = 0
    load_per_rank_bytes: int = 0  # host RAM one rank holds at the peak of loading the model, runtime included
    ranks_on_node: int = 1
    available_bytes: int = 0
    fits: bool = True
    summary: str = ""
    advice: str = ""

    @property
    def per_rank_total(self) -> int:
        return sum(self.per_rank_bytes.values())

    @property
    def node_total(self) -> int:
        """What one node needs from the memory that `available_bytes` measures."""
        if self.device == "cuda":
            return self.per_rank_total
        return max(self.per_rank_total * self.ranks_on_node + self.host_offload_bytes, self.load_host_bytes)

    @property
    def load_host_bytes(self) -> int:
        """Host RAM the node needs while every rank loads the model at once."""
        return self.load_per_rank_bytes * self.ranks_on_node


def count_parameters(spec: RunSpec, ws: Workspace) -> tuple[int, int, object]:
    """(total, trainable, config) of the model as the trainer builds it, on the meta device (no weights read)."""
    from medcore.models import resolve_model_path
    from medcore.train.lora import apply_lora, build_meta_model
    from medcore.train.presets import load_lora_preset

    num_labels = None
    if spec.task != "causal-lm":
        from medcore.data.manifest import read_manifest
        from medcore.train.data import head_labels

        num_labels = max(2, len(head_labels(spec.task, read_manifest(ws, spec.dataset).label_set)))
    model = build_meta_model(resolve_model_path(spec.model, ws), spec.task, num_labels, downloads_allowed(spec))
    model = apply_lora(model, load_lora_preset(spec.lora), spec.task, spec.model)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable, model.config


def _zero_settings(spec: RunSpec) -> tuple[int, bool, bool]:
    from medcore.train.presets import load_zero_preset

    zero = load_zero_preset(spec.zero).get("zero_optimization") or {}
    offload = lambda key: (zero.get(key) or {}).get("device", "none") in ("cpu", "nvme")  # noqa: E731
    return int(zero.get("stage", 0)), offload("offload_optimizer"), offload("offload_param")


def _activation_bytes(spec: RunSpec, config, weight_bytes: int) -> int:
    s, b = spec.max_length, spec.micro_batch
    h = getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0)
    a = getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 1)
    layers = getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 1)
    per_layer = s * b * h * (34 + 5 * a * s / max(h, 1)) * (weight_bytes / 2)
    activations = layers * s * b * h * weight_bytes + per_layer if spec.gradient_checkpointing else layers * per_layer
    logits = b * s * getattr(config, "vocab_size", 0) * 4 * 2 if spec.task == "causal-lm" else 0
    return int(activations + logits)


def _load_bytes(
    total: int, config, stage: int, offload_param: bool, weight_bytes: int, world: int, device: str
) -> int:
    """Host RAM one rank holds at the peak of loading (see the module docstring), CPU runtime included."""
    if stage < 3:
        return total * 4 + CPU_RUNTIME_BYTES
    h = getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0)
    widest = max(getattr(config, "vocab_size", 0), getattr(config, "intermediate_size", 0) or 4 * h, h)
    partition = total * weight_bytes // world if (device == "cpu" or offload_param) else 0
    return partition + 2 * widest * h * weight_bytes + CPU_RUNTIME_BYTES


def _available_host() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _available(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    return _available_host()


def estimate_memory(spec: RunSpec, ws: Workspace | None = None, available_bytes: int | None = None) -> MemoryEstimate:
    """Estimate per-rank and per-node memory for `spec`, compare with this machine, and advise when it won't fit."""
    import torch

    ws = ws or get_workspace()
    device = "cuda" if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()) else "cpu"
    precision = spec.precision if spec.precision != "auto" else ("bf16" if device == "cuda" else "fp32")
    weight_bytes = 4 if precision == "fp32" else 2
    optimizer_bytes_per_param = 8 if precision == "fp32" else 12
    total, trainable, config = count_parameters(spec, ws)
    stage, offload_optimizer, offload_param = _zero_settings(spec)
    world = spec.world_size

    weights = total * weight_bytes / (world if stage >= 3 else 1)
    grads = trainable * weight_bytes / (world if stage >= 2 else 1)
    optimizer = trainable * optimizer_bytes_per_param / (world if stage >= 1 else 1)
    host = 0
    if offload_param and stage >= 3:
        host, weights = host + weights * spec.nproc_per_node, 0
    if offload_optimizer:
        host, optimizer = host + optimizer * spec.nproc_per_node, 0
    per_rank = {
        "weights": int(weights),
        "gradients": int(grads),
        "optimizer": int(optimizer),
        "activations": _activation_bytes(spec, config, weight_bytes),
        "runtime": CUDA_RUNTIME_BYTES if device == "cuda" else CPU_RUNTIME_BYTES,
    }
    estimate = MemoryEstimate(
        device=device,
        per_rank_bytes=per_rank,
        host_offload_bytes=int(host),
        load_per_rank_bytes=_load_bytes(total, config, stage, offload_param, weight_bytes, world, device),
        ranks_on_node=spec.nproc_per_node,
    )
    estimate.available_bytes = _available(device) if available_bytes is None else available_bytes
    estimate.fits = estimate.node_total <= HEADROOM * estimate.available_bytes
    if device == "cuda":  # loading (and offload) use host RAM, not the GPU's
        host_needed = max(estimate.load_host_bytes, estimate.host_offload_bytes)
        host_available = _available_host() if available_bytes is None else available_bytes  # tests pass one figure
        estimate.fits = estimate.fits and host_needed <= HEADROOM * host_available
    estimate.summary = _describe(estimate, total, trainable, stage)
    estimate.advice = "" if estimate.fits else _advise(spec, stage, offload_optimizer)
    return estimate


def _describe(est: MemoryEstimate, total: int, trainable: int, stage: int) -> str:
    parts = ", ".join(f"{name} {value / GB:.2f}" for name, value in est.per_rank_bytes.items())
    where = "GPU memory per rank" if est.device == "cuda" else f"RAM for {est.ranks_on_node} rank(s)"
    offload = f" + {est.host_offload_bytes / GB:.2f} GB offloaded to CPU" if est.host_offload_bytes else ""
    load = (
        f"; loading peaks at {est.load_per_rank_bytes / GB:.2f} GB host RAM per rank, "
        f"{est.load_host_bytes / GB:.2f} GB for the node's {est.ranks_on_node} rank(s)"
    )
    return (
        f"~{est.node_total / GB:.2f} GB {where} of {est.available_bytes / GB:.1f} GB available{offload} "
        f"({total / 1e6:.1f}M parameters, {trainable / 1e6:.2f}M trainable, ZeRO-{stage}; per rank GB: {parts}{load})."
    )


def _advise(spec: RunSpec, stage: int, offload_optimizer: bool) -> str:
    steps = [f"lower micro_batch (now {spec.micro_batch}) and raise grad_accum to keep the batch"]
    if not spec.gradient_checkpointing:
        steps.append("turn on gradient checkpointing")
    if stage < 3:
        steps.append("use the ZeRO-3 preset (large_model_stage3) to shard the weights, also while loading")
    if spec.nproc_per_node > 1:
        steps.append(f"run fewer ranks per node (now {spec.nproc_per_node}): each loads the model at the same time")
    if not offload_optimizer:
        steps.append("offload the optimizer to CPU (multi_node or large_model_stage3 preset)")
    steps.append(f"shorten max_length (now {spec.max_length})")
    return "This run will probably not fit in memory. Try: " + "; ".join(steps) + "."
