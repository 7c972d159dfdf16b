"""Plan a run (LaunchPlan: validated spec, device, topology, run folder, command), create its folder (resolved spec +
DeepSpeed config) and build the torchrun / deepspeed commands that run it. medcore.jobs takes a LaunchPlan and
queues it; it never reads a spec itself.

Several nodes share one run: every node is started with the same run_id, the first to arrive creates runs/RUN_ID/
(under a lock in the workspace) and the others join it once their spec is found to be the same job (open_run_dir).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import secrets
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.rundir import FINAL_STATES, REDACTION_OVERRIDE, RunDir, read_json, write_json_atomic
from medcore.train.presets import load_zero_preset, resolve_ds_config
from medcore.train.spec import RunSpec
from medcore.train.validate import resolve_device
from medcore.workspace import Workspace

RDZV_JOIN_TIMEOUT_S = 120  # nodes that have not joined by then fail the job instead of waiting torchrun's 600 s
# Fields each node or each launch sets for itself; every other field describes the job and must match on all nodes.
PER_NODE_FIELDS = ("node_rank", "run_id", "resume")


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
        """Create the run folder, or join it when another node of the job created it first (open_run_dir)."""
        return open_run_dir(self.spec, self.workspace, self.run_dir.run_id)


def plan_run(source, ws: Workspace, overrides: dict | list | None = None, port: int | None = None) -> LaunchPlan:
    """Load and validate a spec (a RunSpec, dict or spec file) and plan its run; nothing is written yet.

    Raises:
        MedcoreError: every problem with the spec, the dataset, the model or the presets, in one message; a
            multi-node spec without a run_id (the message gives every node's command).
    """
    from medcore.train.spec import load_spec
    from medcore.train.validate import validate_spec

    spec = load_spec(source, overrides or {})
    given = [f"{k}={v}" for k, v in overrides.items()] if isinstance(overrides, dict) else list(overrides or [])
    require_run_id(spec, ["medcore", "train", str(source) if isinstance(source, str | Path) else "SPEC.yaml", *given])
    validate_spec(spec, ws)
    return _plan(spec, ws, RunDir(ws.runs / (spec.run_id or new_run_id(spec))), port, resume=False)


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


def node_log(rd: RunDir, node_rank: int) -> Path:
    """Node 0 logs to train.log (with the launcher's lines); node N to train.nodeN.log, so nodes never interleave."""
    return rd.log if node_rank == 0 else rd.path / f"train.node{node_rank}.log"


def node_commands(argv: list[str], nnodes: int, run_id: str) -> list[str]:
    """Every node's command line: `argv` (e.g. medcore train SPEC key=value ...) with its node_rank and the run id."""
    kept = [arg for arg in argv if not arg.startswith(("node_rank=", "run_id="))]
    return [shlex.join([*kept, f"node_rank={rank}", f"run_id={run_id}"]) for rank in range(nnodes)]


def join_commands(ws: Workspace, run_id: str, nnodes: int) -> list[str]:
    """The command for each of nodes 1..nnodes-1 once node 0 created runs/RUN_ID: its spec.json is the job's spec
    (run id, rendezvous and all), so a node adds only its node_rank, in the same workspace."""
    home = f"MEDCORE_HOME={shlex.quote(str(ws.root))} "
    spec = str(RunDir(ws.runs / run_id).spec)
    return [home + shlex.join(["medcore", "train", spec, f"node_rank={rank}"]) for rank in range(1, nnodes)]


def require_run_id(spec: RunSpec, argv: list[str]) -> None:
    """Refuse a multi-node spec without run_id: each node would make its own run and wait for the others forever.

    Raises:
        MedcoreError: with the command for every node (`argv` completed with a freshly chosen run id).
    """
    if spec.nnodes == 1 or spec.run_id:
        return
    commands = node_commands(argv, spec.nnodes, new_run_id(spec))
    lines = "\n".join(f"  node {rank}: {command}" for rank, command in enumerate(commands))
    raise MedcoreError(
        f"A job on {spec.nnodes} nodes needs one run id shared by every node ({{option:run_id=ID}}): it names the "
        f"run folder they all train into and the rendezvous they meet at. Start each node with:\n{lines}"
    )


def job_spec(spec: RunSpec, device: str | None = None, precision: str | None = None) -> dict:
    """The spec as the run folder records it (spec.json): device and precision resolved, node_rank 0 (each node
    sets its own; spec.json describes the job)."""
    if device is None:
        device, precision = resolve_device(spec)
    return spec.model_copy(update={"device": device, "precision": precision, "node_rank": 0}).model_dump(mode="json")


def spec_hash(data: dict) -> str:
    """A short hash of the job a spec describes (PER_NODE_FIELDS left out): equal on every node of one job."""
    job = {key: value for key, value in data.items() if key not in PER_NODE_FIELDS}
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:12]


def check_same_job(spec: RunSpec, rd: RunDir) -> None:
    """Refuse to join `rd` with a spec that describes another job (a differing field would train a different model).

    Raises:
        MedcoreError: naming each differing field with this node's value and the run folder's.
    """
    mine, recorded = job_spec(spec), read_json(rd.spec, default={})
    if spec_hash(mine) == spec_hash(recorded):
        return
    fields = sorted((set(mine) | set(recorded)) - set(PER_NODE_FIELDS))
    diffs = [f"{key}: {mine.get(key)!r} here, {recorded.get(key)!r} in the run" for key in fields
             if mine.get(key) != recorded.get(key)]  # fmt: skip
    raise MedcoreError(
        f"This node's spec (hash {spec_hash(mine)}) is not the one run {rd.run_id} was created with (hash "
        f"{spec_hash(recorded)}): {'; '.join(diffs)}. Start every node with the same spec and overrides (only "
        "node_rank differs), or give a different job its own run id ({option:run_id=ID})."
    )


def check_joinable(spec: RunSpec, rd: RunDir) -> None:
    """A node may join an existing run folder when it holds the same job and, unless resuming, is not finished.

    Raises:
        MedcoreError: a different job (check_same_job), a run that already ended, or a one-node run id reused.
    """
    check_same_job(spec, rd)
    if spec.resume:
        return
    state = rd.read_status().get("state")
    if state in FINAL_STATES or spec.nnodes == 1:
        raise MedcoreError(
            f"Run {rd.run_id} exists already ({state}). Give this job another run id ({{option:run_id=ID}}), or "
            "continue that run from its newest checkpoint ({option:resume=true})."
        )


@contextlib.contextmanager
def run_folder_lock(ws: Workspace, run_id: str):
    """Hold runs/.RUN_ID.lock (flock) so that of several nodes starting at once exactly one creates the folder."""
    ws.runs.mkdir(parents=True, exist_ok=True)
    with open(ws.runs / f".{run_id}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def open_run_dir(spec: RunSpec, ws: Workspace, run_id: str) -> RunDir:
    """The run folder runs/RUN_ID for this node: created by the first node to arrive, joined by the others.

    Call validate_spec first. Raises:
        MedcoreError: this node cannot join the existing folder (check_joinable).
    """
    with run_folder_lock(ws, run_id):
        rd = RunDir(ws.runs / run_id)
        if rd.spec.exists():
            check_joinable(spec, rd)
            return rd
        return prepare_run_dir(spec, ws, run_id)


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
    write_json_atomic(ws.runs / run_id / REDACTION_OVERRIDE, {"audit_hash": record["hash"], "seq": record["seq"]})


def prepare_run_dir(spec: RunSpec, ws: Workspace, run_id: str | None = None) -> RunDir:
    """Create runs/<run_id>/ with spec.json (device/precision resolved) and ds_config.json (batch sizes computed).

    Call validate_spec first; this does no checking of its own beyond loading the presets.
    """
    device, precision = resolve_device(spec)
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
    write_json_atomic(rd.spec, job_spec(spec, device, precision))
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
