"""A training job as a launch file sees it: the run spec for the whole job, the run id, the workspace and the commands.

The run id is chosen once, here, and written into every node's command: it names the run folder and is torchrun's
--rdzv-id, so every node joins the same rendezvous and trains into the same folder.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from medcore.cluster.checks import SAFE_PATH, kubernetes_name
from medcore.cluster.config import K8S_WORKSPACE, LaunchConfig
from medcore.errors import MedcoreError
from medcore.rundir import RunDir
from medcore.train import RunSpec, load_spec, torchrun_command
from medcore.train.launch import new_run_id
from medcore.train.spec import parse_overrides
from medcore.workspace import get_workspace

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
QUIET_ENV = {"HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
# Lets a multi-node spec pass validation at generation time; the target then sets the real address (plan_job).
STAND_IN_ENDPOINT = "first-node:1"


@dataclass(frozen=True)
class JobLaunch:
    """One job on one target: the spec every node trains with, and where it runs."""

    spec: RunSpec
    run_id: str
    workspace: str
    python: str
    rdzv_port: int
    source: str  # the spec file's name, for the generated file's header

    @property
    def run_dir(self) -> RunDir:
        return RunDir(Path(self.workspace) / "runs" / self.run_id)

    @property
    def gpus_per_node(self) -> int:
        """GPUs each node asks its scheduler for: one per process, unless the spec pins the CPU."""
        return 0 if self.spec.device == "cpu" else self.spec.nproc_per_node

    def env(self) -> dict[str, str]:
        """The environment of every process of the job (offline unless the spec allows downloads)."""
        offline = {} if self.spec.allow_downloads else OFFLINE_ENV
        return {"MEDCORE_HOME": self.workspace, **offline, **QUIET_ENV}

    def spec_json(self) -> str:
        """The fields the user set (file + overrides) as compact JSON: what `prepare` rebuilds spec.json from."""
        data = self.spec.model_dump(mode="json", exclude_unset=True)
        if data.get("rdzv_endpoint") is None:
            data.pop("rdzv_endpoint", None)  # slurm: the first node passes it at run time
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    def prepare_argv(self) -> list[str]:
        """`python -m medcore.cluster.prepare RUN_ID --spec JSON`, run on the first node before torchrun."""
        return [self.python, "-m", "medcore.cluster.prepare", self.run_id, "--spec", self.spec_json()]

    def torchrun_argv(self) -> list[str]:
        """medcore.train.torchrun_command for this job with the target's Python. Always --resume: a requeued or
        restarted job continues from its newest checkpoint (a fresh run starts at step 0)."""
        port = None if self.spec.nnodes > 1 else self.rdzv_port
        command = torchrun_command(self.spec, self.run_dir, resume=True, master_port=port)
        return [self.python, *command[1:]]  # [0] is this interpreter


def plan_job(source: str | Path, overrides: list[str] | None, cfg: LaunchConfig) -> JobLaunch:
    """Load and check the spec for `cfg.target` and settle the run id, workspace and Python.

    local keeps the spec's topology (node_rank, rdzv_endpoint: each node runs its own file). slurm and k8s describe
    the whole job: node_rank 0 and the rendezvous on the first node (k8s: the master pod; slurm: known only once the
    allocation exists, so the first node passes it to `prepare`). The dataset and model are checked where the job
    runs (medcore.cluster.prepare), not here.

    Raises:
        MedcoreError: the spec's problems, in one message.
    """
    data = parse_overrides(overrides)
    if cfg.target != "local":
        data.update(node_rank=0, rdzv_endpoint=STAND_IN_ENDPOINT)
    spec = load_spec(source, data)
    run_id = cfg.run_id or new_run_id(spec)
    if cfg.target != "local":
        endpoint = f"{master_host(run_id)}:{cfg.rdzv_port}" if cfg.target == "k8s" and spec.nnodes > 1 else None
        spec = spec.model_copy(update={"rdzv_endpoint": endpoint})
    workspace = cfg.workspace or (K8S_WORKSPACE if cfg.target == "k8s" else local_workspace())
    python = cfg.python or (sys.executable if cfg.target == "local" else "python")
    return JobLaunch(spec, run_id, workspace, python, cfg.rdzv_port, source_label(source))


def job_name(run_id: str) -> str:
    """The PyTorchJob's name: a DNS-1035 label short enough for its pods' names (JOB-worker-N) to stay labels."""
    return kubernetes_name(run_id, 50)


def master_host(run_id: str) -> str:
    """The master pod's host name: the training operator names it JOB-master-0 and gives it a headless Service."""
    return f"{job_name(run_id)}-master-0"


def local_workspace() -> str:
    root = str(get_workspace(create=False).root.resolve())
    if not SAFE_PATH.match(root):
        raise MedcoreError(
            f"The workspace path {root!r} holds blanks or quotes, which launch files cannot carry: pass --workspace "
            "with the path the job should use."
        )
    return root


def source_label(source: str | Path) -> str:
    """The spec file's name as it may appear in a comment line (no control characters, no quotes)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(source)).name) or "spec"
