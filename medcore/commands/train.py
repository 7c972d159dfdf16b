"""`medcore train SPEC.yaml [--nproc N] [key=value ...]`: validate a run spec, create the run folder, launch it."""

from __future__ import annotations

import argparse
import json
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
    from medcore.train import load_spec, prepare_run_dir, torchrun_command, validate_spec
    from medcore.workspace import get_workspace

    ws = get_workspace()
    nproc = [f"nproc_per_node={args.nproc}"] if args.nproc is not None else []
    spec = load_spec(args.spec, list(args.overrides) + nproc)
    validate_spec(spec, ws)  # raises before any folder or process exists
    if args.dry_run:
        print("spec is valid; would run: " + " ".join(torchrun_command(spec, _DryRun())))
        return 0
    if args.detach:
        from medcore.jobs import launch_run

        run_id = launch_run(spec, ws)
        print(f"queued run {run_id}; follow it with `medcore runs`")
        return 0
    rd = prepare_run_dir(spec, ws)
    command = torchrun_command(spec, rd)
    print(f"run {rd.run_id}: {' '.join(command)}", flush=True)
    code = stream_job(command, rd.log)
    status = rd.read_status()
    print(summarise(rd))
    if status.get("state") in ("completed", "stopped"):
        return 0
    if status.get("state") == "failed":
        raise MedcoreError(f"Run {rd.run_id} failed: {status.get('error')} {status.get('hint') or ''}".strip())
    return code or 1


class _DryRun:
    """Stand-in run folder for --dry-run (nothing is created)."""

    run_id = "DRY-RUN"
    path = "workspace/runs/RUN_ID"
