"""Regenerate the example launch files in launchers/generated/ with `medcore launch` (tests fail when they drift).

    python launchers/make_examples.py

Each row is the command line of one example; the files are what `medcore launch ... --out launchers/generated`
writes for it. Paths, run ids and images are fixed so that every machine writes the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medcore.cli import main

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "launchers" / "generated"
WORKSPACE = ["--workspace", "/srv/medcore/workspace"]
IMAGE = ["--image", "registry.example.org/medcore-gpu:0.1.0", "--namespace", "medcore"]
EXAMPLES: list[list[str]] = [
    # One machine, 2 processes: what `medcore train` runs, as a script to keep or run elsewhere.
    ["configs/runs/minilm_classification.yaml", "--target", "local", "--run-id", "example-minilm-specialty",
     "--python", "python", *WORKSPACE],
    # SLURM: 2 nodes x 4 GPUs, srun + torchrun with the c10d rendezvous on the allocation's first node.
    ["configs/runs/minilm_classification.yaml", "--target", "slurm", "nnodes=2", "nproc_per_node=4",
     "--run-id", "example-minilm-specialty", "--partition", "gpu", "--time", "02:00:00", "--mem", "128G",
     "--python", "/srv/medcore/.venv/bin/python", "--setup", "module load cuda/12.4", *WORKSPACE],
    # Kubernetes: a Kubeflow PyTorchJob, Master + 1 Worker, 4 GPUs each, the workspace on a shared volume.
    ["configs/runs/tiny_llama_qa.yaml", "--target", "k8s", "nnodes=2", "nproc_per_node=4",
     "--run-id", "example-tiny-llama-qa", "--memory", "128Gi", *IMAGE],
    # vLLM on Kubernetes serving tiny-llama with the adapter of the run above.
    ["configs/serving.yaml", "--target", "k8s-vllm", "--adapter", "qa=example-tiny-llama-qa", *IMAGE],
]  # fmt: skip


def write_examples(out: Path) -> list[Path]:
    """Run every example's `medcore launch` into `out`; returns the files written there."""
    for args in EXAMPLES:
        code = main(["launch", str(ROOT / args[0]), *args[1:], "--out", str(out)])
        if code != 0:
            raise SystemExit(f"medcore launch {' '.join(args)} failed with exit code {code}")
    return sorted(out.iterdir())


if __name__ == "__main__":
    write_examples(OUT)
    sys.exit(0)
