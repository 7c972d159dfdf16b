"""SLURM backend: an sbatch script generated from the run spec, submitted with sbatch, watched with squeue/sacct."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from medcore.errors import MedcoreError
from medcore.jobs.diagnose import HINT_OOM, HINT_RESUME
from medcore.jobs.state import torchrun_shutdown_env
from medcore.rundir import FINAL_STATES, RunDir

# What a value of an #SBATCH line may hold: SLURM names, sizes and times. Anything else (a newline, a quote, a
# space) would end the directive early or start another one.
SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:+=@%/-]+")

# sacct/squeue state -> (MedCore state, reason, hint). Unlisted states read as still running.
SLURM_STATES: dict[str, tuple[str, str | None, str | None]] = {
    "PENDING": ("queued", None, None),
    "CONFIGURING": ("queued", None, None),
    "REQUEUED": ("queued", None, None),
    "RUNNING": ("running", None, None),
    "COMPLETING": ("running", None, None),
    "COMPLETED": ("completed", None, None),
    "CANCELLED": ("cancelled", "Cancelled in SLURM (scancel or an administrator).", HINT_RESUME),
    "FAILED": ("failed", "The SLURM job failed.", "Read the end of train.log (`medcore runs logs RUN_ID`)."),
    "OUT_OF_MEMORY": ("failed", "SLURM killed the job for exceeding its memory.", HINT_OOM),
    "TIMEOUT": ("failed", "The job hit its SLURM time limit.", "Raise time_limit, then " + HINT_RESUME.lower()),
    "NODE_FAIL": ("failed", "A node of the allocation failed.", HINT_RESUME),
    "BOOT_FAIL": ("failed", "A node of the allocation failed to boot.", HINT_RESUME),
    "PREEMPTED": ("failed", "The job was preempted by a higher-priority job.", HINT_RESUME),
    "DEADLINE": ("failed", "The job missed its SLURM deadline.", HINT_RESUME),
}


class SlurmConfig(BaseModel):
    """Cluster resources for one run; nodes and GPUs per node come from the spec unless set here."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="SLURM partition (queue) to submit to; cluster default if empty.")
    account: str | None = Field(None, description="SLURM account to charge; cluster default if empty.")
    time_limit: str = Field("04:00:00", description="Wall-clock limit, HH:MM:SS (sbatch --time).")
    nodes: int | None = Field(None, ge=1, description="Nodes to allocate; default: the spec's nnodes.")
    gpus_per_node: int | None = Field(None, ge=0, description="GPUs per node; default: the spec's nproc_per_node.")
    cpus_per_task: int = Field(8, ge=1, description="CPU cores per node (one torchrun task per node).")
    mem: str | None = Field(None, description="Memory per node, e.g. '128G' (sbatch --mem); cluster default if empty.")
    rdzv_port: int = Field(29500, ge=1024, le=65535, description="Rendezvous port on the first node.")
    python: str = Field(sys.executable, description="Python of the MedCore environment on the compute nodes.")
    setup: list[str] = Field(default_factory=list, description="Shell lines run first (module load, venv activate).")

    @field_validator("partition", "account", "time_limit", "mem")
    @classmethod
    def _one_sbatch_word(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not SBATCH_VALUE.fullmatch(value):
            name = info.field_name.replace("_", " ")
            raise ValueError(
                f"slurm {name}: use letters, digits and . , : + = @ % / _ - only (it becomes an #SBATCH line)"
            )
        return value


def sbatch_line(option: str, value: object) -> str:
    """One `#SBATCH --option=value` line; a value with spaces (a folder path) is double-quoted, as sbatch reads it."""
    text = str(value)
    if any(c in text for c in '"\n\r'):
        raise MedcoreError(
            f"Cannot write #SBATCH --{option}: its value holds a quote or a line break. Rename the workspace folder "
            "or pick a value without them."
        )
    return f"#SBATCH --{option}={text}" if SBATCH_VALUE.fullmatch(text) else f'#SBATCH --{option}="{text}"'


def trainer_args(command: list[str]) -> list[str]:
    """The trainer's part of a torchrun command: everything from `-m medcore.train` on."""
    if "medcore.train" in command:
        i = command.index("medcore.train")
        return command[i - 1 :] if i > 0 and command[i - 1] == "-m" else command[i:]
    raise MedcoreError("The torchrun command does not run medcore.train; cannot build an sbatch script from it.")


def render_sbatch(rd: RunDir, cfg: SlurmConfig, *, nnodes: int, nproc_per_node: int, train_args: list[str]) -> str:
    """The sbatch script text: one torchrun per node under srun, rendezvous on the allocation's first node."""
    nodes = cfg.nodes or nnodes
    gpus = nproc_per_node if cfg.gpus_per_node is None else cfg.gpus_per_node
    header = [
        "#!/bin/bash",
        f"# MedCore run {rd.run_id}: generated from spec.json by medcore.jobs.slurm. Submit with: sbatch {rd.path}/job.sbatch",
        sbatch_line("job-name", f"medcore-{rd.run_id}"),
        sbatch_line("nodes", nodes),
        sbatch_line("ntasks-per-node", 1),
        sbatch_line("cpus-per-task", cfg.cpus_per_task),
        sbatch_line("time", cfg.time_limit),
        sbatch_line("output", rd.log),
        sbatch_line("open-mode", "append"),
    ]
    header += [sbatch_line("gpus-per-node", gpus)] if gpus else []
    header += [sbatch_line("partition", cfg.partition)] if cfg.partition else []
    header += [sbatch_line("account", cfg.account)] if cfg.account else []
    header += [sbatch_line("mem", cfg.mem)] if cfg.mem else []
    shutdown = " ".join(f"{k}={v}" for k, v in torchrun_shutdown_env(rd).items())  # torchrun's wait covers a save
    body = [
        "set -euo pipefail",
        f"export MEDCORE_HOME={shlex.quote(str(rd.path.parent.parent))}",
        f"export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1 {shutdown}",
        *cfg.setup,
        "# Every node runs one torchrun (ntasks-per-node=1); they meet at the first node of the allocation.",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"rdzv_port={cfg.rdzv_port}",
        f"srun --kill-on-bad-exit=1 {shlex.quote(cfg.python)} -m torch.distributed.run \\",
        f'  --nnodes="$SLURM_JOB_NUM_NODES" --nproc-per-node={max(1, gpus or nproc_per_node)} \\',
        '  --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$head_node:$rdzv_port" \\',
        "  " + " ".join(shlex.quote(a) for a in train_args),
    ]
    return "\n".join(header + body) + "\n"


def write_sbatch(rd: RunDir, text: str) -> Path:
    path = rd.path / "job.sbatch"
    path.write_text(text)
    path.chmod(0o755)
    return path


def require_sbatch() -> str:
    found = shutil.which("sbatch")
    if not found:
        raise MedcoreError(
            "sbatch is not on PATH: launch SLURM runs from a cluster login node, or use the local backend. "
            "launchers/slurm.sbatch shows the script MedCore generates."
        )
    return found


def submit_sbatch(script: Path) -> str:
    """Submit and return the SLURM job id."""
    done = subprocess.run([require_sbatch(), "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise MedcoreError(f"sbatch rejected {script}: {done.stderr.strip()[:300]}. Fix the SLURM settings and retry.")
    return done.stdout.strip().split(";")[0]


def query_slurm_state(job_id: str) -> str | None:
    """The job's SLURM state (squeue while it is known there, then sacct); None when neither can tell."""
    if shutil.which("squeue"):
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
        if out.strip():
            return out.split()[0].strip()
    if shutil.which("sacct"):
        out = subprocess.run(
            ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"], capture_output=True, text=True
        ).stdout
        if out.strip():
            return out.split()[0].strip()  # "CANCELLED by 1234" -> "CANCELLED"
    return None


def observe_slurm(rd: RunDir, launch: dict[str, Any]) -> dict[str, Any] | None:
    """Merge SLURM's view into status.json when the trainer cannot speak for itself (pending, or ended badly)."""
    job_id = launch.get("slurm_job_id")
    slurm_state = query_slurm_state(str(job_id)) if job_id else None
    if slurm_state is None:
        return None
    state, reason, hint = SLURM_STATES.get(slurm_state, ("running", None, None))
    status = rd.read_status()
    if status.get("state") in FINAL_STATES:
        return status
    if state in FINAL_STATES:
        return rd.update_status(state=state, error=reason, hint=hint, ended_at=time.time(), slurm_state=slurm_state)
    return {**status, "state": status.get("state") if state == "running" and status.get("state") else state}


def cancel_slurm(launch: dict[str, Any]) -> None:
    job_id = launch.get("slurm_job_id")
    if not job_id or not shutil.which("scancel"):
        raise MedcoreError("Cannot cancel: scancel is not on PATH here. Run `medcore runs cancel` on the login node.")
    subprocess.run(["scancel", str(job_id)], check=False)
