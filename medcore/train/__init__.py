"""Fine-tuning engine: run spec, presets, launch commands and the distributed trainer (`python -m medcore.train RUN_DIR`).

The pure pieces below are what the CLI, medcore.jobs and the console use; importing them does not import
torch or DeepSpeed (the trainer itself lives in medcore.train.loop and runs only inside a launched job).
"""

from __future__ import annotations

from medcore.train.launch import (
    LaunchPlan,
    deepspeed_command,
    plan_resume,
    plan_run,
    prepare_run_dir,
    torchrun_command,
)
from medcore.train.memory import MemoryEstimate, estimate_memory
from medcore.train.spec import RunSpec, load_spec
from medcore.train.validate import validate_spec

__all__ = [
    "LaunchPlan",
    "MemoryEstimate",
    "RunSpec",
    "estimate_memory",
    "deepspeed_command",
    "load_spec",
    "plan_resume",
    "plan_run",
    "prepare_run_dir",
    "torchrun_command",
    "validate_spec",
]
