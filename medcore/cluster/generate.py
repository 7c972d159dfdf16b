"""One entry for every target: a run spec (or, for k8s-vllm, a serving config) -> the launch file that runs it."""

from __future__ import annotations

from pathlib import Path

from medcore.cluster.config import LaunchConfig
from medcore.cluster.files import LaunchFile
from medcore.cluster.job import plan_job, source_label
from medcore.cluster.kubernetes import render_pytorchjob, render_vllm
from medcore.cluster.local import render_local
from medcore.cluster.slurm import render_slurm
from medcore.serve.config import load_serving_config
from medcore.train.spec import parse_overrides


def generate_launch(
    source: str | Path, cfg: LaunchConfig, overrides: list[str] | None = None, adapters: dict | None = None
) -> LaunchFile:
    """The launch file for `cfg.target`. Nothing is written and nothing runs.

    Args:
        source: a run spec file (local, slurm, k8s) or a serving config file (k8s-vllm).
        cfg: the target and its settings.
        overrides: `key=value` fields applied over the file (RunSpec or ServingConfig fields).
        adapters: k8s-vllm: NAME -> run id or absolute path in the pod, instead of the config's adapters.

    Raises:
        MedcoreError: every problem with the spec or config, in one message.
    """
    if cfg.target == "k8s-vllm":
        fields = parse_overrides(overrides)
        if adapters:
            fields["adapters"] = adapters  # as `medcore serve --adapter`: replaces the file's adapters
        serving = load_serving_config(source, **{**fields, "engine": "vllm"})
        return render_vllm(serving, cfg, source_label(source))
    job = plan_job(source, overrides, cfg)
    if cfg.target == "slurm":
        return render_slurm(job, cfg)
    if cfg.target == "k8s":
        return render_pytorchjob(job, cfg)
    return render_local(job)
