"""The slurm target: medcore.jobs.slurm's sbatch script, with the run folder prepared on the allocation's first node.

One torchrun per node under srun, c10d rendezvous on the first node (medcore.jobs.slurm.render_sbatch). Before srun,
the batch step (which runs on the first node) creates the run folder from the spec the script carries, with the
rendezvous address that node works out from the allocation.
"""

from __future__ import annotations

import re
import shlex

from medcore.cluster.config import LaunchConfig
from medcore.cluster.files import LaunchFile, header
from medcore.cluster.job import JobLaunch
from medcore.errors import MedcoreError
from medcore.jobs.slurm import render_sbatch, trainer_args

DIRECTIVE = re.compile(r"^#SBATCH --([a-z][a-z-]*)=(\S+)$")
FIRST_NODE = 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'


def render_slurm(job: JobLaunch, cfg: LaunchConfig) -> LaunchFile:
    """`RUN_ID.sbatch` for `job`; nodes and GPUs per node come from the spec (nnodes, nproc_per_node, device)."""
    spec, given = job.spec, cfg.slurm
    if given.nodes not in (None, spec.nnodes) or given.gpus_per_node not in (None, job.gpus_per_node):
        raise MedcoreError(
            "The SLURM allocation follows the run spec: set nnodes, nproc_per_node (and device=cpu for a CPU "
            "partition) in the spec instead of slurm nodes / gpus_per_node."
        )
    slurm = given.model_copy(
        update={
            "python": job.python,
            "rdzv_port": job.rdzv_port,
            "gpus_per_node": job.gpus_per_node,
            "setup": [*given.setup, *prepare_lines(job)],
        }
    )
    train_args = trainer_args(job.torchrun_argv())
    text = render_sbatch(
        job.run_dir, slurm, nnodes=spec.nnodes, nproc_per_node=spec.nproc_per_node, train_args=train_args
    )
    text = replace_header(text, job)
    parse_sbatch_directives(text)  # every value made it onto a well-formed #SBATCH line, before any command
    return LaunchFile(sbatch_name(job), text, f"mkdir -p {job.run_dir.path} && sbatch FILE", executable=True)


def sbatch_name(job: JobLaunch) -> str:
    return f"{job.run_id}.sbatch"


def prepare_lines(job: JobLaunch) -> list[str]:
    """The batch step's first command: the run folder, with the rendezvous on this (the first) node."""
    lines = [
        "# The first node makes the run folder: spec checked against the workspace and its GPUs (kept on requeue)."
    ]
    command = shlex.join(job.prepare_argv())
    if job.spec.nnodes > 1:
        lines.append(FIRST_NODE)
        command += f' --rdzv-endpoint "$head_node:{job.rdzv_port}"'
    return lines + [command]


def replace_header(text: str, job: JobLaunch) -> str:
    """medcore.jobs.slurm's second line says where it writes its own script; this one is submitted from elsewhere."""
    lines = text.split("\n")
    assert lines[1].startswith("# MedCore run"), "render_sbatch's header line moved"
    steps = [
        f"mkdir -p {job.run_dir.path} && sbatch FILE    (SLURM writes train.log there from the start)",
        f"{job.spec.nnodes} node(s) x {job.spec.nproc_per_node} process(es); every node trains run {job.run_id}.",
    ]
    what = f"MedCore run {job.run_id}: torchrun on every node of a SLURM allocation."
    lines[1:2] = header(what, job.source, "slurm", sbatch_name(job), steps)
    return "\n".join(lines)


def parse_sbatch_directives(text: str) -> dict[str, str]:
    """{option: value} of the #SBATCH lines, which sbatch reads only before the first command.

    Raises:
        MedcoreError: a malformed #SBATCH line, or one after the first command (sbatch would ignore it).
    """
    found: dict[str, str] = {}
    in_header = True
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            in_header = False
        if not line.startswith("#SBATCH"):
            continue
        match = DIRECTIVE.match(line)
        if not match or not in_header:
            raise MedcoreError(f"Generated sbatch line {number} is not a valid #SBATCH directive: {line[:80]!r}.")
        found[match.group(1)] = match.group(2)
    return found
