"""Atomic checkpoints (DeepSpeed state + RNG + trainer state + PEFT adapter), keep-last-K, resume, adapter export."""

from __future__ import annotations

import contextlib
import errno
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcore.errors import MedcoreError
from medcore.rundir import (
    ADAPTER_CONFIG,
    CHECKPOINT_ADAPTER,
    CHECKPOINT_DEEPSPEED,
    CHECKPOINT_PREFIX,
    CHECKPOINT_TMP_PREFIX,
    LAST_SAVE_S,
    TRAINER_STATE,
    RunDir,
    read_json,
    write_json_atomic,
)
from medcore.token_windows import TAG_FILE
from medcore.train.distributed import DistContext, barrier


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable_state_dict(engine, ctx: DistContext) -> dict[str, torch.Tensor] | None:
    """Full values of the trainable parameters on rank 0 (gathered from all ranks under ZeRO-3), else None."""
    named = [(n, p) for n, p in engine.module.named_parameters() if p.requires_grad]
    if engine.zero_optimization_stage() == 3:
        import deepspeed

        # Collective: every rank enters, rank 0 copies the gathered tensors out before they are re-partitioned.
        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {n: p.detach().cpu().clone() for n, p in named} if ctx.is_main else None
    return {n: p.detach().cpu().clone() for n, p in named} if ctx.is_main else None


def save_adapter(
    engine, ctx: DistContext, target: Path, tokenizer=None, extra_json: dict[str, Any] | None = None
) -> None:
    """The trained weights in Hugging Face format: a PEFT adapter (LoRA) or the whole model (full fine-tune).

    Collective (call on every rank); rank 0 writes into a temp folder and renames it over `target`.
    `extra_json` ({file name: data}) is written alongside, e.g. the tag names of a token classifier.
    """
    state = _trainable_state_dict(engine, ctx)
    if not ctx.is_main:
        return
    model = engine.module
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(tmp, state_dict=state)
    else:
        full = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        model.save_pretrained(tmp, state_dict={**full, **state})
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    for name, data in (extra_json or {}).items():
        write_json_atomic(tmp / name, data)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def save_checkpoint(engine, ctx: DistContext, rd: RunDir, step: int, trainer_state: dict, keep_last_k: int) -> Path:
    """Write checkpoints/checkpoint-<step> atomically: every rank writes into a temp folder, rank 0 renames it.

    A failed save (full disk, I/O error) removes its temp folder and leaves every complete checkpoint as it was.
    Rank 0 records how long the save took (status.json LAST_SAVE_S): a stop's grace period is sized from it.
    """
    tmp = rd.checkpoints / f"{CHECKPOINT_TMP_PREFIX}{step}"
    began = time.perf_counter()
    try:
        final = _save_checkpoint(engine, ctx, rd, step, trainer_state, keep_last_k, tmp)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # frees the space the partial save took
        free_mb = shutil.disk_usage(rd.path).free / 2**20
        disk_full = getattr(exc, "errno", None) == errno.ENOSPC or "write failed" in str(exc) or free_mb < 64
        if not disk_full:
            raise
        last = rd.latest_checkpoint()
        kept = f"{last.name} is intact" if last else "no earlier checkpoint exists"
        raise MedcoreError(
            f"Saving checkpoint-{step} failed on rank {ctx.rank}: No space left on device for {rd.checkpoints} "
            f"({free_mb:.0f} MB free); {kept}. Free disk space or lower keep_last_k, then resume."
        ) from None
    if ctx.is_main:
        with contextlib.suppress(OSError):  # the checkpoint is complete; only the measurement is lost
            rd.update_status(**{LAST_SAVE_S: round(time.perf_counter() - began, 3)})
    return final


def _save_checkpoint(engine, ctx, rd: RunDir, step: int, trainer_state: dict, keep_last_k: int, tmp: Path) -> Path:
    final = rd.checkpoints / f"{CHECKPOINT_PREFIX}{step}"
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    engine.save_checkpoint(str(tmp), tag=CHECKPOINT_DEEPSPEED, client_state={"medcore_step": step})
    torch.save(rng_state(), tmp / f"rng_state_{ctx.rank}.pt")
    save_adapter(engine, ctx, tmp / CHECKPOINT_ADAPTER)
    if ctx.is_main:
        write_json_atomic(tmp / TRAINER_STATE, {**trainer_state, "step": step, "world_size": ctx.world_size})
    barrier()  # all ranks' shards are on disk before the folder becomes visible as complete
    if ctx.is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in rd.checkpoint_dirs()[:-keep_last_k]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(engine, ctx: DistContext, path: Path) -> dict[str, Any]:
    """Restore model, optimizer, LR scheduler and this rank's RNG from `path`; returns the trainer state."""
    state = read_json(path / TRAINER_STATE)
    if state is None:
        raise FileNotFoundError(f"{path / TRAINER_STATE} is missing: the checkpoint is incomplete.")
    loaded, _ = engine.load_checkpoint(
        str(path), tag=CHECKPOINT_DEEPSPEED, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if loaded is None:
        raise FileNotFoundError(f"DeepSpeed found no state under {path / CHECKPOINT_DEEPSPEED}.")
    rng_file = path / f"rng_state_{ctx.rank}.pt"
    if rng_file.exists():
        set_rng_state(load_rng_state(rng_file))
    return state


def load_rng_state(path: Path) -> dict[str, Any]:
    """A rank's saved RNG state, unpickled with weights_only: tensors, tuples and numpy's uint32 key array, never
    code (numpy's array rebuild is allowed by name; numpy>=2 keeps it in numpy._core)."""
    allowed = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("uint32"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, weights_only=True)


def export_merged(adapter_dir: Path, base_source, task: str, target: Path, model_kwargs: dict | None = None) -> Path:
    """Base model + adapter merged into plain weights (for servers without LoRA support). Rank 0 only."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from medcore.models import auto_model_class

    auto = auto_model_class(task)
    kwargs = model_kwargs or {}
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    base = auto.from_pretrained(config.get("base_model_name_or_path") or base_source, **kwargs)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(
        adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base_source
    ).save_pretrained(tmp)
    if (adapter_dir / TAG_FILE).exists():  # a token classifier's tags and windows go with its weights
        shutil.copyfile(adapter_dir / TAG_FILE, tmp / TAG_FILE)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
