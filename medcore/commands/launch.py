"""`medcore launch SPEC --target local|slurm|k8s|k8s-vllm [key=value ...] [--dry-run] [--out DIR]`: write the file
that runs a job on a cluster (torchrun script, sbatch script, Kubeflow PyTorchJob) or serves adapters with vLLM on
Kubernetes (SPEC is then a serving config, e.g. configs/serving.yaml).

medcore launch configs/runs/minilm_classification.yaml --target slurm nnodes=2 nproc_per_node=4 --partition gpu
medcore launch configs/runs/tiny_llama_qa.yaml --target k8s nnodes=2 --image registry.example.org/medcore-gpu:0.1.0
medcore launch configs/serving.yaml --target k8s-vllm --adapter qa=RUN_ID --dry-run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medcore.cluster import TARGETS, LaunchConfig, generate_launch, write_launch_file
from medcore.errors import validated
from medcore.jobs.slurm import SlurmConfig
from medcore.serve.config import parse_adapter_args

FIELDS = LaunchConfig.model_fields
SLURM_FIELDS = SlurmConfig.model_fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="Run spec file (local, slurm, k8s) or serving config file (k8s-vllm).")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="Override fields of the file, e.g. nnodes=2 max_steps=500."
    )
    parser.add_argument("--target", required=True, choices=TARGETS, help=FIELDS["target"].description)
    parser.add_argument("--dry-run", action="store_true", help="Print the generated file; write nothing.")
    parser.add_argument("--out", type=Path, default=Path("."), help="Folder to write the file into (default: here).")
    parser.add_argument("--run-id", default=None, help=FIELDS["run_id"].description)
    parser.add_argument("--workspace", default=None, help=FIELDS["workspace"].description)
    parser.add_argument("--python", default=None, help=FIELDS["python"].description)
    parser.add_argument("--rdzv-port", type=int, default=None, help=FIELDS["rdzv_port"].description)
    slurm = parser.add_argument_group("slurm")
    slurm.add_argument("--partition", default=None, help=SLURM_FIELDS["partition"].description)
    slurm.add_argument("--account", default=None, help=SLURM_FIELDS["account"].description)
    slurm.add_argument("--time", dest="time_limit", default=None, help=SLURM_FIELDS["time_limit"].description)
    slurm.add_argument("--cpus-per-task", type=int, default=None, help=SLURM_FIELDS["cpus_per_task"].description)
    slurm.add_argument("--mem", default=None, help=SLURM_FIELDS["mem"].description)
    slurm.add_argument(
        "--setup", action="append", default=None, metavar="LINE", help=SLURM_FIELDS["setup"].description
    )
    k8s = parser.add_argument_group("k8s, k8s-vllm")
    k8s.add_argument("--image", default=None, help=FIELDS["image"].description)
    k8s.add_argument("--namespace", default=None, help=FIELDS["namespace"].description)
    k8s.add_argument("--pvc", default=None, help=FIELDS["pvc"].description)
    k8s.add_argument("--cpu", default=None, help=FIELDS["cpu"].description)
    k8s.add_argument("--memory", default=None, help=FIELDS["memory"].description)
    k8s.add_argument("--api-key-secret", default=None, help=FIELDS["api_key_secret"].description)
    k8s.add_argument(
        "--adapter", action="append", default=None, metavar="NAME=RUN_ID", help="k8s-vllm: an adapter to serve: a "
        "run id of the workspace volume or an absolute path in the pod (replaces the config's adapters)."
    )  # fmt: skip
    # key=value overrides may come before or after options: plain parse_args cannot split positionals around options.
    parser.parse_args = parser.parse_intermixed_args


def launch_config(args: argparse.Namespace) -> LaunchConfig:
    """The LaunchConfig of the given options (unset ones keep LaunchConfig's and SlurmConfig's defaults)."""
    slurm_keys = ("partition", "account", "time_limit", "cpus_per_task", "mem", "setup")
    slurm = {key: getattr(args, key) for key in slurm_keys if getattr(args, key) is not None}
    keys = ("run_id", "workspace", "python", "rdzv_port", "image", "namespace", "pvc", "cpu", "memory")
    data = {key: getattr(args, key) for key in (*keys, "api_key_secret") if getattr(args, key) is not None}
    data = {**data, "target": args.target, "slurm": {"python": "python", **slurm}}
    return validated(LaunchConfig, data, "launch settings", help_hint="see `medcore launch --help`")


def run(args: argparse.Namespace) -> int:
    cfg = launch_config(args)
    adapters = {name: str(folder) for name, folder in parse_adapter_args(args.adapter).items()}
    item = generate_launch(args.spec, cfg, list(args.overrides), adapters or None)
    if args.dry_run:
        print(item.text, end="")
        return 0
    path = write_launch_file(item, args.out)
    print(f"wrote {path}\nnext: {item.start_command(path)}")
    return 0
