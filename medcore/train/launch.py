"""Plan a run (LaunchPlan: validated spec, device, topology, run folder, command), create its folder (resolved spec +
DeepSpeed config) and build the torchrun / deepspeed commands that run it. medcore.jobs takes a LaunchPlan and
queues it; it never reads a spec itself."""

from __future__ import annotations

import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medcore.rundir import RunDir, write_json_atomic
from medcore.train.presets import load_zero_preset, resolve_ds_config
from medcore.train.spec import RunSpec
from medcore.train.validate import resolve_device
from medcore.workspace import Workspace

RDZV_JOIN_TIMEOUT_S = 120  # nodes that have not joined by then fail the job instead of waiting torchrun's 600 s


@dataclass(frozen=True)
class LaunchPlan:
    """What a job runs, decided once: the validated spec, this node's place in the job, the run folder, the command.

    `port` is the rendezvous port the spec or the caller fixed (None: the launcher picks a free one, and may swap
    it at start if it got taken while queued). The run folder exists once `create_run_dir` was called.
    """

    spec: RunSpec
    workspace: Workspace
    run_dir: RunDir
    device: str
    host: str
    port: int | None
    resume: bool = False

    nnodes = property(lambda self: self.spec.nnodes)
    node_rank = property(lambda self: self.spec.node_rank)
    nproc_per_node = property(lambda self: self.spec.nproc_per_node)

    @property
    def gpus_per_job(self) -> int:
        """GPUs this node's job takes from the machine's pool (the queue's slot accounting)."""
        return self.spec.nproc_per_node if self.device.startswith("cuda") else 0

    def command(self, master_port: int) -> list[str]:
        return torchrun_command(self.spec, self.run_dir, resume=self.resume, master_port=master_port)

    def create_run_dir(self) -> RunDir:
        return prepare_run_dir(self.spec, self.workspace, self.run_dir.run_id)


def plan_run(source, ws: Workspace, overrides: dict | list | None = None, port: int | None = None) -> LaunchPlan:
    """Load and validate a spec (a RunSpec, dict or spec file) and plan its run; nothing is written yet.

    Raises:
        MedcoreError: every problem with the spec, the dataset, the model or the presets, in one message.
    """
    from medcore.train.spec import load_spec
    from medcore.train.validate import validate_spec

    spec = load_spec(source, overrides or {})
    validate_spec(spec, ws)
    return _plan(spec, ws, RunDir(ws.runs / new_run_id(spec)), port, resume=False)


def plan_resume(run_dir: RunDir, ws: Workspace, port: int | None = None) -> LaunchPlan:
    """The plan that continues `run_dir` from its newest checkpoint, with the spec it was launched with."""
    from medcore.train.spec import load_spec

    return _plan(load_spec(run_dir.spec, {}), ws, run_dir, port, resume=True)


def _plan(spec: RunSpec, ws: Workspace, run_dir: RunDir, port: int | None, resume: bool) -> LaunchPlan:
    host, _, fixed = (spec.rdzv_endpoint or "").rpartition(":") if spec.rdzv_endpoint else ("", "", "")
    device = resolve_device(spec)[0]
    return LaunchPlan(spec, ws, run_dir, device, host or "127.0.0.1", port or (int(fixed) if fixed else None), resume)


def new_run_id(spec: RunSpec) -> str:
    label = spec.name or f"{Path(str(spec.model)).name}-{spec.task}"
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"


def _record_override(spec: RunSpec, ws: Workspace, run_id: str) -> None:
    """Training on a dataset without a proven redaction is allowed only when asked for, and always leaves an audit
    record (a manifest merely marked "redacted" is not proof: medcore.phi.verify)."""
    from medcore.data.manifest import dataset_dir, read_manifest
    from medcore.phi.verify import dataset_content_hash, verify_redaction

    manifest = read_manifest(ws, spec.dataset)
    check = verify_redaction(ws, spec.dataset, manifest)
    if check.ok:
        return
    from medcore.phi.audit import append_audit_record

    record = append_audit_record(
        ws,
        "redaction_override",
        dataset=spec.dataset,
        content_hash=dataset_content_hash(dataset_dir(ws, spec.dataset)),  # the files trained on, not the manifest
        run_id=run_id,
        reason="allow_unredacted",
        unverified=check.problem,
    )
    write_json_atomic(
        ws.runs / run_id / "redaction_override.json", {"audit_hash": record["hash"], "seq": record["seq"]}
    )


def prepare_run_dir(spec: RunSpec, ws: Workspace, run_id: str | None = None) -> RunDir:
    """Create runs/<run_id>/ with spec.json (device/precision resolved) and ds_config.json (batch sizes computed).

    Call validate_spec first; this does no checking of its own beyond loading the presets.
    """
    device, precision = resolve_device(spec)
    resolved = spec.model_copy(update={"device": device, "precision": precision})
    ds_config = resolve_ds_config(
        load_zero_preset(spec.zero),
        micro_batch=spec.micro_batch,
        grad_accum=spec.grad_accum,
        world_size=spec.world_size,
        precision=precision,
        max_grad_norm=spec.max_grad_norm,
    )
    rd = RunDir(ws.runs / (run_id or new_run_id(spec)))
    rd.path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(rd.spec, resolved.model_dump(mode="json"))
    write_json_atomic(rd.ds_config, ds_config)
    if spec.allow_unredacted:
        _record_override(spec, ws, rd.run_id)
    if not rd.status.exists():
        rd.update_status(state="queued", step=0, max_steps=spec.max_steps, created_at=time.time())
    return rd


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def torchrun_command(
    spec: RunSpec, run_dir: RunDir, resume: bool = False, master_port: int | None = None
) -> list[str]:
    """`python -m torch.distributed.run ... -m medcore.train RUN_DIR` for this node of the job.

    One node: a fixed master address/port (free port when none given). Several nodes: c10d rendezvous at
    spec.rdzv_endpoint (master_port, when given, replaces its port).
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={spec.nnodes}",
        f"--nproc-per-node={spec.nproc_per_node}",
        f"--node-rank={spec.node_rank}",
        "--max-restarts=0",
    ]
    if spec.nnodes > 1:
        host, _, port = (spec.rdzv_endpoint or "").rpartition(":")
        port = str(master_port or port)
        command += [
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={host}:{port}",
            f"--rdzv-id={run_dir.run_id}",
            f"--rdzv-conf=join_timeout={RDZV_JOIN_TIMEOUT_S}",
        ]
    else:
        command += ["--master-addr=127.0.0.1", f"--master-port={master_port or free_port()}"]
    command += ["-m", "medcore.train", str(run_dir.path)]
    return command + (["--resume"] if resume or spec.resume else [])


def deepspeed_command(
    spec: RunSpec, run_dir: RunDir, resume: bool = False, master_port: int | None = None
) -> list[str]:
    """The same job under the `deepspeed` launcher (single node), for users who launch that way."""
    command = [
        sys.executable,
        "-m",
        "deepspeed.launcher.runner",
        f"--num_gpus={spec.nproc_per_node}",
        f"--master_port={master_port or free_port()}",
        "--module",
        "medcore.train",
        str(run_dir.path),
    ]
    return command + (["--resume"] if resume or spec.resume else [])
