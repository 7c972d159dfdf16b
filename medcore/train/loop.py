"""The distributed training loop: DeepSpeed engine over planned batches, metrics, eval, checkpoints, save-and-stop."""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass, field
from typing import Any

import torch

from medcore.errors import MedcoreError
from medcore.rundir import RunDir, read_json
from medcore.train.data import IGNORE, BatchPlan, Unit, balanced_class_weights, eval_batches, head_labels, load_units
from medcore.train.distributed import DistContext, all_reduce_sum, barrier
from medcore.train.metrics import (
    MetricsWriter,
    classification_counts,
    score_classification,
    score_token_phi,
    token_phi_counts,
    warmup_cosine,
)
from medcore.train.spec import RunSpec
from medcore.workspace import Workspace

# Tests set this to slow each step down so a kill or signal lands mid-run deterministically; never set in production.
STEP_DELAY_ENV = "MEDCORE_STEP_DELAY_S"
STATUS_EVERY_S = 1.0  # status.json is rewritten (fsync) at most once a second


class RunCancelled(MedcoreError):
    """`medcore runs cancel`: every rank leaves at the same step, without saving."""


@dataclass
class Job:
    """Everything one rank holds for a run."""

    spec: RunSpec
    rd: RunDir
    ws: Workspace
    ctx: DistContext
    tokenizer: Any
    label_set: list[str]  # the head's outputs: classes, or BIO tags (token classification); empty for causal LM
    plan: BatchPlan
    eval_units: list[Unit]
    total_steps: int
    engine: Any = None
    class_weights: torch.Tensor | None = None  # spec.class_weighting == "balanced": per-class loss weights
    metrics: MetricsWriter | None = None
    state: dict = field(default_factory=lambda: {"best": None, "bad_evals": 0, "early_stopped": False})
    stop_requested: bool = False


def install_signal_handlers(job: Job) -> None:
    """SIGINT/SIGTERM/SIGHUP mean "save and stop": the flag is all-reduced each step, so every rank stops at the same
    step. SIGHUP is what torchrun forwards when the terminal of a foreground run closes. A cancel (SIGTERM after a
    cancel request in control.json) is told apart in train_step."""

    def handler(signum, frame):
        job.stop_requested = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def engine_config(job: Job) -> dict:
    """The run's DeepSpeed config, its batch arithmetic following the world size actually launched."""
    config = read_json(job.rd.ds_config)
    config["train_batch_size"] = job.spec.micro_batch * job.spec.grad_accum * job.ctx.world_size
    return config


def zero3_load_options(ds_config: dict | None) -> dict:
    """At ZeRO stage 3 the model loads partitioned over the ranks, in the run's dtype; other stages load it whole."""
    if ds_config is None or (ds_config.get("zero_optimization") or {}).get("stage") != 3:
        return {}
    enabled = lambda key: (ds_config.get(key) or {}).get("enabled", False)  # noqa: E731
    dtype = torch.bfloat16 if enabled("bf16") else torch.float16 if enabled("fp16") else torch.float32
    return {"zero3_config": ds_config, "torch_dtype": dtype}


def build_model(spec: RunSpec, ws: Workspace, label_set: list[str], ds_config: dict | None = None):
    from medcore.cls_only import use_cls_only_last_layer
    from medcore.models import load_model
    from medcore.train.fast_dropout import use_fast_dropout
    from medcore.train.lora import apply_lora
    from medcore.train.presets import load_lora_preset
    from medcore.train.spec import downloads_allowed

    torch.manual_seed(spec.seed)  # the new classifier head and LoRA weights start identical on every rank
    id2label = dict(enumerate(label_set)) if label_set else None
    options = zero3_load_options(ds_config)
    model = load_model(
        spec.model, spec.task, id2label=id2label, workspace=ws, allow_downloads=downloads_allowed(spec), **options
    )
    model.config.use_cache = False  # a KV cache would also switch off packed-sequence attention masking
    if spec.task == "classification":
        use_cls_only_last_layer(model)  # the head reads [CLS] only: the last layer skips every other position
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = apply_lora(model, load_lora_preset(spec.lora), spec.task, spec.model)
    use_fast_dropout(model)  # on CPU, masks from random integers instead of bernoulli_: the same dropout, cheaper
    return model


def build_engine(job: Job, model) -> None:
    import deepspeed

    from medcore.train.presets import offloads_optimizer

    config = engine_config(job)
    spec = job.spec
    params = [p for p in model.parameters() if p.requires_grad]
    if offloads_optimizer(config):
        from deepspeed.ops.adam import DeepSpeedCPUAdam  # DeepSpeed requires its CPU Adam for optimizer offload

        optimizer = DeepSpeedCPUAdam(params, lr=spec.lr, weight_decay=spec.weight_decay, adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    warmup = round(spec.warmup_ratio * job.total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, job.total_steps))
    job.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)


def forward_loss(job: Job, batch: dict) -> tuple[torch.Tensor, Any]:
    """Summed cross-entropy of a micro-batch (the caller normalises by the step's global target count)."""
    device = job.ctx.device
    keys = ("input_ids", "attention_mask", "position_ids", "token_type_ids")
    inputs = {k: batch[k].to(device) for k in keys if k in batch}
    labels = batch["labels"].to(device)
    if job.spec.task == "classification":
        logits = job.engine(**inputs).logits.float()
        weight = None if job.class_weights is None else job.class_weights.to(device)
        return torch.nn.functional.cross_entropy(logits, labels, weight=weight, reduction="sum"), logits
    if job.spec.task == "token-classification":
        logits = job.engine(**inputs).logits.float()  # (batch, tokens, tags)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
        ), logits
    # Position t predicts token t+1. Only positions with a target get logits: the vocabulary projection is the
    # costliest layer of a small model, and prompt/padding positions would be thrown away by the loss anyway.
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)
    keep = targets != IGNORE
    logits = job.engine(**inputs, use_cache=False, logits_to_keep=keep).logits.float()  # (targets, vocab)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets[keep], reduction="sum"
    ), logits


def train_step(job: Job, step: int) -> dict[str, float]:
    """One optimizer step over this rank's grad_accum micro-batches; returns the step's all-reduced figures."""
    engine, spec = job.engine, job.spec
    batches, global_targets = job.plan.rank_batches(step, job.ctx.rank, job.tokenizer.pad_token_id, spec.task)
    # DeepSpeed divides by grad_accum and averages over ranks; scaling by both makes the update the exact mean
    # over every target token of the step, however tokens fall across ranks and micro-batches.
    scale = job.plan.per_step / max(global_targets, 1)
    loss_sum = tokens = samples = 0.0
    for batch in batches:
        summed, _ = forward_loss(job, batch)
        engine.backward(summed * scale)
        engine.step()
        loss_sum += summed.item()
        tokens += batch["tokens"]
        samples += batch["samples"]
    trigger = job.ctx.is_main and job.rd.checkpoint_trigger.exists()
    cancel = job.ctx.is_main and job.rd.requested_action() == "cancel"  # rank 0 speaks for every node
    flags = [float(job.stop_requested), float(trigger), float(cancel)]
    totals = all_reduce_sum([loss_sum, tokens, samples, *flags], job.ctx)
    if totals[5] > 0:
        raise RunCancelled(f"Cancelled on request at step {step + 1}; nothing was saved after the last checkpoint.")
    grad_norm = engine.get_global_grad_norm()
    return {
        "loss": totals[0] / max(global_targets, 1),
        "tokens": totals[1],
        "samples": totals[2],
        "stop": totals[3] > 0,
        "checkpoint_now": totals[4] > 0,
        "grad_norm": float(grad_norm) if grad_norm is not None else None,
    }


def evaluate(job: Job) -> dict[str, float]:
    """Validation loss (and accuracy / macro F1 for classification, token PHI-vs-O precision / recall / F1 for
    token classification), exact over all ranks: counts are summed over ranks before scoring."""
    engine, spec = job.engine, job.spec
    n = len(job.label_set)
    extra_counts = {"classification": 3 * n, "token-classification": 3}.get(spec.task, 0)
    sums = [0.0, 0.0, 0.0] + [0.0] * extra_counts
    engine.eval()
    with torch.no_grad():
        for batch, counted in eval_batches(
            job.eval_units, spec.micro_batch, job.ctx.world_size, job.ctx.rank, job.tokenizer.pad_token_id, spec.task
        ):
            summed, logits = forward_loss(job, batch)  # every rank runs the same number of forwards (ZeRO-3)
            if not counted:
                continue
            sums[0] += summed.item()
            sums[1] += batch["targets"]
            sums[2] += batch["samples"]
            if extra_counts:
                labels = batch["labels"].to(logits.device)
                if spec.task == "classification":
                    extra = classification_counts(logits, labels, n)
                else:
                    extra = token_phi_counts(logits, labels)
                sums[3:] = [a + b for a, b in zip(sums[3:], extra, strict=True)]
    engine.train()
    totals = all_reduce_sum(sums, job.ctx)
    result = {"eval_loss": totals[0] / max(totals[1], 1)}
    if spec.task == "classification":
        result.update(score_classification(totals[3:], n, totals[2]))
    elif spec.task == "token-classification":
        result.update(score_token_phi(totals[3:]))
    else:
        result["eval_perplexity"] = math.exp(min(result["eval_loss"], 50.0))
    return result


def prepare_job(rd: RunDir, ctx: DistContext) -> Job:
    from medcore.data.manifest import read_manifest
    from medcore.models import load_tokenizer, resolve_model_path

    spec = RunSpec.model_validate(read_json(rd.spec))
    ws = Workspace(rd.path.parent.parent)
    if ctx.is_main:
        resolve_model_path(spec.model, ws)  # builds tiny-llama once; ranks racing to build it read half-written files
    barrier()
    tokenizer = load_tokenizer(spec.model, ws)
    label_set = head_labels(spec.task, [str(x) for x in read_manifest(ws, spec.dataset).label_set])
    units = load_units(spec, ws, tokenizer, "train", label_set)
    plan = BatchPlan(units, spec.micro_batch, spec.grad_accum, ctx.world_size, spec.seed)
    if plan.steps_per_epoch == 0:
        raise MedcoreError(
            f"The train split gives {len(units)} rows, fewer than one step needs (micro_batch {spec.micro_batch} x "
            f"grad_accum {spec.grad_accum} x {ctx.world_size} ranks). Lower micro_batch/grad_accum or add data."
        )
    total = spec.max_steps or math.ceil(spec.epochs * plan.steps_per_epoch)
    eval_units = load_units(spec, ws, tokenizer, "validation", label_set)
    job = Job(spec, rd, ws, ctx, tokenizer, label_set, plan, eval_units, total)
    if spec.task == "classification" and spec.class_weighting == "balanced":
        job.class_weights = balanced_class_weights(
            units, len(label_set)
        )  # from every train row: the same on all ranks
    return job
