"""`medcore train SPEC.yaml [--nproc N] [key=value ...]`: validate a run spec, create the run folder, launch it.

One job on several nodes: the same command on every node with its node_rank and one shared run id, e.g.
`medcore train SPEC.yaml nnodes=2 rdzv_endpoint=HOST:PORT node_rank=1 run_id=ID` (without run_id it prints them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from medcore.errors import MedcoreError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="Run spec file (YAML or JSON); see RunSpec in medcore/train/spec.py for fields.")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="Override spec fields, e.g. lr=1e-4 max_steps=50."
    )
    parser.add_argument("--nproc", type=int, default=None, help="Processes per node (overrides nproc_per_node).")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="Queue as a background job (medcore.jobs); follow it with `medcore runs`.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="Validate and print the torchrun command; launch nothing."
    )
    # key=value overrides may come before or after --nproc: plain parse_args cannot split positionals around options.
    parser.parse_args = parser.parse_intermixed_args


def stream_job(command: list[str], log_path) -> int:
    """Run the job in the foreground, its train.log (`log_path`) echoed to the terminal; returns torchrun's exit code.

    This process supervises it (medcore.jobs.foreground): Ctrl-C, SIGTERM or a closed terminal make the ranks save a
    checkpoint and stop, and `medcore runs` sees, stops and resumes the run like a detached one.
    """
    from medcore.jobs.foreground import run_foreground
    from medcore.rundir import RunDir

    return run_foreground(RunDir(Path(log_path).parent), command)


def run_other_node(command: list[str], log_path: Path) -> int:
    """Run a node other than 0 in the foreground, its output in its own log (echoed); returns torchrun's exit code.

    Node 0's launcher records and settles the run (launch.json, status.json), so this one writes nothing else to the
    shared folder. Ctrl-C reaches torchrun too (same process group), which stops the ranks; if this process is
    killed, the kernel sends torchrun SIGTERM (the shim of medcore.jobs.foreground).
    """
    from medcore.jobs.foreground import PDEATHSIG_SHIM, POLL_S, echo_log

    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        shim = [sys.executable, "-c", PDEATHSIG_SHIM, str(os.getpid()), *command]
        proc = subprocess.Popen(shim, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    while proc.poll() is None:
        try:
            offset = echo_log(log_path, offset, sys.stdout.buffer)
            time.sleep(POLL_S)
        except KeyboardInterrupt:
            continue  # torchrun got the same Ctrl-C: wait for the ranks to save and stop
    echo_log(log_path, offset, sys.stdout.buffer)
    return proc.returncode


def command_line(args: argparse.Namespace) -> list[str]:
    """This invocation as a command (for the per-node commands of a multi-node refusal)."""
    nproc = ["--nproc", str(args.nproc)] if args.nproc is not None else []
    return ["medcore", "train", *(["--detach"] if args.detach else []), args.spec, *args.overrides, *nproc]


def summarise(rd) -> str:
    status = rd.read_status()
    lines = [f"run {rd.run_id}: {status.get('state')} at step {status.get('step')}/{status.get('max_steps')}"]
    if rd.metrics.exists():
        evals = [json.loads(line) for line in rd.metrics.read_text().splitlines() if '"eval_loss"' in line]
        if evals:
            lines.append("  " + ", ".join(f"{k}={v:.4f}" for k, v in evals[-1].items() if k.startswith("eval_")))
    if status.get("state") == "completed":
        lines.append(f"  adapter: {status.get('adapter')}")
    if status.get("state") == "stopped":
        lines.append(f"  checkpoint: {status.get('last_checkpoint')}; resume with `medcore runs resume {rd.run_id}`")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from medcore.train import load_spec, torchrun_command, validate_spec
    from medcore.train.launch import new_run_id, node_log, open_run_dir, require_run_id
    from medcore.workspace import get_workspace

    ws = get_workspace()
    nproc = [f"nproc_per_node={args.nproc}"] if args.nproc is not None else []
    spec = load_spec(args.spec, list(args.overrides) + nproc)
    require_run_id(spec, command_line(args))
    validate_spec(spec, ws)  # raises before any folder or process exists
    if args.dry_run:
        print("spec is valid; would run: " + " ".join(torchrun_command(spec, _DryRun())))
        return 0
    if args.detach:
        from medcore.jobs import launch_run

        if spec.node_rank > 0:  # a detached launcher records the run in launch.json: node 0's, which it would replace
            raise MedcoreError(
                f"--detach queues node 0 of a job only; start node {spec.node_rank} in the foreground (e.g. under "
                "tmux or nohup): it joins the run folder and keeps its log apart."
            )

        run_id = launch_run(spec, ws)
        print(f"queued run {run_id}; follow it with `medcore runs`")
        return 0
    rd = open_run_dir(spec, ws, spec.run_id or new_run_id(spec))  # node 0 or the first node creates it
    command = torchrun_command(spec, rd)
    node = f" node {spec.node_rank} of {spec.nnodes}" if spec.nnodes > 1 else ""
    print(f"run {rd.run_id}{node}: {' '.join(command)}", flush=True)
    if spec.node_rank > 0:
        return finish_other_node(rd, spec.node_rank, run_other_node(command, node_log(rd, spec.node_rank)))
    code = stream_job(command, rd.log)
    status = rd.read_status()
    print(summarise(rd))
    if status.get("state") in ("completed", "stopped"):
        return 0
    if status.get("state") == "failed":
        raise MedcoreError(f"Run {rd.run_id} failed: {status.get('error')} {status.get('hint') or ''}".strip())
    return code or 1


def finish_other_node(rd, node_rank: int, code: int) -> int:
    """Node N's ending: its exit code (the run's state is node 0's to record)."""
    from medcore.train.launch import node_log

    if code != 0:
        raise MedcoreError(
            f"Node {node_rank} of run {rd.run_id} ended with exit code {code}: read its log {node_log(rd, node_rank)} "
            f"and node 0's (`medcore runs logs {rd.run_id}`)."
        )
    print(f"node {node_rank} of run {rd.run_id} finished; node 0 records the run (`medcore runs status {rd.run_id}`)")
    return 0


class _DryRun:
    """Stand-in run folder for --dry-run (nothing is created)."""

    run_id = "DRY-RUN"
    path = "workspace/runs/RUN_ID"
