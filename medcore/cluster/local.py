"""The local target: a bash script that prepares the run folder on node 0, then runs torchrun for this node."""

from __future__ import annotations

import shlex

from medcore.cluster.files import LaunchFile, header
from medcore.cluster.job import JobLaunch


def render_local(job: JobLaunch) -> LaunchFile:
    """`RUN_ID.torchrun.sh`: medcore.train.torchrun_command with the run id fixed now (one script per node)."""
    spec, rd = job.spec, job.run_dir
    multi = spec.nnodes > 1
    log = rd.log if spec.node_rank == 0 else rd.path / f"train.node{spec.node_rank}.log"
    steps = ["bash FILE"]
    if multi:
        steps.append(
            f"Node {spec.node_rank} of {spec.nnodes}: make one script per node (node_rank=N), run node 0's first; "
            "all nodes share the workspace and use this run id."
        )
    name = f"{job.run_id}.torchrun.sh"
    lines = ["#!/usr/bin/env bash"]
    lines += header(
        f"MedCore run {job.run_id}: torchrun on this machine, logs in {log}.", job.source, "local", name, steps
    )
    lines += ["set -euo pipefail"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in job.env().items()]
    if spec.node_rank == 0:
        lines += [
            "# The run folder is made here, the spec checked against this workspace and machine (kept if it exists).",
            shlex.join(job.prepare_argv()),
        ]
    else:
        lines += [f"mkdir -p {shlex.quote(str(rd.path))}  # node 0 fills it; this node's log goes there"]
    lines += [f"echo {shlex.quote(f'training run {job.run_id}; log: {log}')}"]
    lines += [f"exec {shlex.join(job.torchrun_argv())} >>{shlex.quote(str(log))} 2>&1"]
    return LaunchFile(name, "\n".join(lines) + "\n", "bash FILE", executable=True)
