"""Launch files generated from a run spec: a torchrun script, a SLURM sbatch script, a Kubeflow PyTorchJob, vLLM on
Kubernetes. MedCore writes the inputs of these engines and does not reinvent them.

    medcore launch configs/runs/minilm_classification.yaml --target slurm nnodes=2 nproc_per_node=4 --dry-run

    file = generate_launch("spec.yaml", LaunchConfig(target="k8s", image="registry/medcore-gpu:0.1.0"))
    write_launch_file(file, Path("out"))

Every file carries the spec and a run id chosen at generation time; on the job's first node it runs
`python -m medcore.cluster.prepare`, which creates the run folder there, then torchrun on every node.
"""

from __future__ import annotations

from medcore.cluster.config import TARGETS, LaunchConfig
from medcore.cluster.files import LaunchFile, write_launch_file
from medcore.cluster.generate import generate_launch

__all__ = ["TARGETS", "LaunchConfig", "LaunchFile", "generate_launch", "write_launch_file"]
