"""The run folder contract shared by the trainer (writer) and jobs/store/console (readers).

runs/<run_id>/
  spec.json            the validated run spec (RunSpec.model_dump)
  ds_config.json       the resolved DeepSpeed config (re-launch by hand with plain torchrun)
  launch.json          how the job was launched: command, env overrides, pgid, nnodes, ...
  train.log            stdout+stderr of the launcher and all ranks
  metrics.jsonl        rank 0 appends one JSON object per logging/eval step (flushed)
  status.json          state, step, max_steps, last_checkpoint, last_save_s, error, hint, updated_at
  control.json         a pending request from the console/CLI: {"action": "cancel" | "stop", "grace_s", "at", "why"?}
  checkpoints/checkpoint-<step>/   atomic (written as .tmp then renamed); newest K kept
  adapter/             the final PEFT adapter (PeftModel.from_pretrained / vLLM --lora-modules)
  CHECKPOINT_NOW       trigger file: the trainer saves a checkpoint at the next step and deletes it
  exits/rank-<N>.json  each rank's exit record ({"rank", "code", "at"}), cleared as an attempt starts: the evidence
                       of how the job ended when the launcher that saw torchrun's exit code was itself killed
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcore.fileio import file_lock, write_bytes_atomic

# Lifecycle: queued -> starting -> running -> completed | failed | cancelled | stopped
# ("stopped" = saved and stopped on request; resumable like failed/cancelled).
STATES = ("queued", "starting", "running", "completed", "failed", "cancelled", "stopped")
FINAL_STATES = ("completed", "failed", "cancelled", "stopped")
# status.json key of the evaluation a completed run gets on its test split (spec.evaluate_after): {"state" (running,
# completed, skipped, failed), "eval_id", "metric", "value", "ci_low", "ci_high", "reason" or "error"}
TEST_EVAL = "test_eval"
# status.json key: seconds the newest checkpoint took to save (all ranks), which sizes the grace period of a stop.
LAST_SAVE_S = "last_save_s"
# status.json key: the content hash of the dataset the run trains on (resume refuses data that changed since).
DATASET_HASH = "dataset_hash"
# In the run folder when allow_unredacted let data without a proven redaction in: {"audit_hash", "seq"}.
REDACTION_OVERRIDE = "redaction_override.json"

# Inside checkpoints/checkpoint-<step>/: written by medcore.train.checkpoint, checked by medcore.jobs.resume.
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_TMP_PREFIX = ".tmp-checkpoint-"  # an interrupted save leaves only this, never a half checkpoint
CHECKPOINT_ADAPTER = "adapter"  # the PEFT adapter of that step
CHECKPOINT_DEEPSPEED = "deepspeed"  # DeepSpeed's own layout: model and optimizer shards per rank
TRAINER_STATE = "trainer_state.json"  # step, world size, data position, best metric
# PEFT's file names (peft.utils.CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME), without importing peft.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    spec = property(lambda self: self.path / "spec.json")
    ds_config = property(lambda self: self.path / "ds_config.json")
    launch = property(lambda self: self.path / "launch.json")
    log = property(lambda self: self.path / "train.log")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    status = property(lambda self: self.path / "status.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    adapter = property(lambda self: self.path / "adapter")
    checkpoint_trigger = property(lambda self: self.path / "CHECKPOINT_NOW")
    exits = property(lambda self: self.path / "exits")
    control = property(lambda self: self.path / "control.json")

    def read_status(self) -> dict[str, Any]:
        return read_json(self.status, default={})

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json atomically (readers never see half a file).

        Read-modify-write under a lock: rank 0, the launcher and the console's threads all write it, and without the
        lock one of two concurrent updates is lost.
        """
        with file_lock(self.path / ".status.lock"):
            current = self.read_status()
            current.update(fields)
            current["updated_at"] = time.time()
            write_json_atomic(self.status, current)
            return current

    def requested_action(self) -> str | None:
        """The pending request of control.json ("cancel" or "stop"), if any."""
        request = read_json(self.control, default={})
        return request.get("action") if isinstance(request, dict) else None

    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints, oldest first (temp folders of an interrupted save are ignored)."""
        if not self.checkpoints.exists():
            return []
        found = [
            p for p in self.checkpoints.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name.split("-")[-1].isdigit()
        ]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))

    def remove_temp_checkpoints(self) -> list[str]:
        """Delete the temp folders of interrupted saves (a save killed midway leaves one); returns their names.

        Only while no save can be in progress: as an attempt starts.
        """
        found = sorted(self.checkpoints.glob(f"{CHECKPOINT_TMP_PREFIX}*")) if self.checkpoints.is_dir() else []
        for path in found:
            shutil.rmtree(path, ignore_errors=True)
        return [p.name for p in found]

    def latest_checkpoint(self) -> Path | None:
        dirs = self.checkpoint_dirs()
        return dirs[-1] if dirs else None

    def record_exit(self, rank: int, code: int) -> None:
        """Rank `rank` is exiting with `code` (best effort: on a full or read-only disk there is no record)."""
        with contextlib.suppress(OSError):
            self.exits.mkdir(exist_ok=True)
            write_json_atomic(self.exits / f"rank-{rank}.json", {"rank": rank, "code": code, "at": time.time()})

    def read_exits(self) -> dict[int, dict[str, Any]]:
        """The exit records of this attempt's ranks, by global rank."""
        records = [read_json(p) for p in self.exits.glob("rank-*.json")] if self.exits.is_dir() else []
        return {int(r["rank"]): r for r in records if isinstance(r, dict) and "rank" in r}

    def clear_exits(self) -> None:
        shutil.rmtree(self.exits, ignore_errors=True)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON crash-safely (temp file, fsync, rename): readers never see half a file."""
    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())
