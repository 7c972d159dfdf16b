"""LaunchConfig: where and how a generated launch file runs a job (target, run id, workspace, cluster resources)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medcore import __version__
from medcore.cluster.checks import (
    CONTROL,
    CPU_QUANTITY,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    IMAGE,
    MEMORY_QUANTITY,
    SBATCH_ACCOUNT,
    SBATCH_MEM,
    SBATCH_PARTITION,
    SBATCH_TIME,
    check_line,
    check_path,
    check_run_id,
    problem,
)
from medcore.jobs.slurm import SlurmConfig

Target = Literal["local", "slurm", "k8s", "k8s-vllm"]
TARGETS: tuple[str, ...] = ("local", "slurm", "k8s", "k8s-vllm")
K8S_WORKSPACE = "/workspace"  # where the workspace volume is mounted in every pod
DEFAULT_RDZV_PORT = 29500  # torchrun's own default master port


class LaunchConfig(BaseModel):
    """How one job is launched on a target. Spec fields (nodes, processes per node, device) come from the run spec."""

    model_config = ConfigDict(extra="forbid")

    target: Target = Field(
        description="local: a torchrun script for this or another machine; slurm: an sbatch script (srun + torchrun "
        "per node); k8s: a Kubeflow PyTorchJob manifest; k8s-vllm: a vLLM Deployment + Service from a serving config."
    )
    run_id: str | None = Field(
        None,
        description="The run's id (its folder runs/RUN_ID and the rendezvous id), chosen once here and passed to every "
        "node. Default: a new id, as `medcore train` makes.",
    )
    workspace: str | None = Field(
        None,
        description=f"The workspace folder as the job sees it (MEDCORE_HOME there). Default: this machine's "
        f"workspace (local, slurm), {K8S_WORKSPACE} (k8s: the workspace volume's mount path).",
    )
    python: str | None = Field(
        None,
        description="Python of the MedCore environment where the job runs. Default: this Python (local), `python` "
        "on PATH (slurm, k8s).",
    )
    rdzv_port: int = Field(
        DEFAULT_RDZV_PORT, ge=1024, le=65535, description="Rendezvous (master) port on the job's first node."
    )
    slurm: SlurmConfig = Field(
        default_factory=lambda: SlurmConfig(python="python"),
        description="slurm: partition, account, time limit, CPUs, memory and setup lines (medcore.jobs.slurm).",
    )
    image: str | None = Field(
        None,
        description=f"k8s: container image with MedCore installed. Default: medcore-gpu:{__version__} when the job "
        f"uses GPUs (Dockerfile.gpu), medcore:{__version__} otherwise (Dockerfile).",
    )
    namespace: str | None = Field(None, description="k8s: namespace of the objects; default: kubectl's current one.")
    pvc: str = Field(
        "medcore-workspace",
        description=f"k8s: PersistentVolumeClaim holding the workspace, mounted at {K8S_WORKSPACE} in every pod "
        "(ReadWriteMany when the job has several nodes).",
    )
    cpu: str = Field("8", description="k8s: CPU cores requested per pod (a Kubernetes quantity: 8, 500m).")
    memory: str = Field("64Gi", description="k8s: memory requested and limited per pod (a Kubernetes quantity).")
    api_key_secret: str = Field(
        "medcore-vllm-api-key",
        description="k8s-vllm: Secret whose key `api-key` vLLM requires as the bearer token (never in the manifest).",
    )

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, value: str | None) -> str | None:
        return None if value is None else check_run_id(value)

    @field_validator("workspace")
    @classmethod
    def _check_workspace(cls, value: str | None) -> str | None:
        return None if value is None else check_path(value)

    @field_validator("python")
    @classmethod
    def _check_python(cls, value: str | None) -> str | None:
        return None if value is None else check_line(value)

    @model_validator(mode="after")
    def _check_cluster_values(self) -> LaunchConfig:
        """Values that land in #SBATCH lines or Kubernetes names, where nothing can be quoted: all problems at once."""
        slurm = self.slurm
        found = [
            problem(slurm.partition, SBATCH_PARTITION, "slurm partition", "a partition name (or a comma list)"),
            problem(slurm.account, SBATCH_ACCOUNT, "slurm account", "an account name"),
            problem(slurm.time_limit, SBATCH_TIME, "slurm time limit", "a time like 04:00:00 or 1-12:00:00"),
            problem(slurm.mem, SBATCH_MEM, "slurm mem", "a size like 64G"),
            problem(self.image, IMAGE, "image", "an image reference like registry.example.org/medcore-gpu:0.1.0"),
            problem(self.namespace, DNS_LABEL, "namespace", "a Kubernetes namespace name"),
            problem(self.pvc, DNS_SUBDOMAIN, "pvc", "a Kubernetes object name"),
            problem(self.api_key_secret, DNS_SUBDOMAIN, "api_key_secret", "a Kubernetes object name"),
            problem(self.cpu, CPU_QUANTITY, "cpu", "a Kubernetes CPU quantity like 8 or 500m"),
            problem(self.memory, MEMORY_QUANTITY, "memory", "a Kubernetes memory quantity like 64Gi"),
        ]
        found += [
            f"slurm setup line {i + 1} must be one line" for i, line in enumerate(slurm.setup) if CONTROL.search(line)
        ]
        found = [f for f in found if f]
        if found:
            raise ValueError("; ".join(found))
        return self
