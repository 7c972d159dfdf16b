"""`medcore runs`: list, watch, cancel, stop, checkpoint and resume training jobs.

medcore runs list [--json]
medcore runs status RUN_ID [--json]
medcore runs logs RUN_ID [--tail N] [--follow]
medcore runs cancel RUN_ID [--grace SECONDS]    # stop now, without saving (resumable from the last checkpoint)
medcore runs stop RUN_ID [--grace SECONDS]      # save a checkpoint, then stop (resumable)
medcore runs checkpoint RUN_ID    # save a checkpoint at the next step, keep training
medcore runs resume RUN_ID [--port P]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from medcore.jobs import runs
from medcore.jobs.state import CANCEL_GRACE_S, STOP_GRACE_MIN_S, RunInfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="All runs, newest first.")
    p.add_argument("--json", action="store_true", help="One JSON object per run instead of a table.")
    p = sub.add_parser("status", help="State, step, error and hint of one run.")
    p.add_argument("run_id", help="Run id (a folder name under runs/).")
    p.add_argument("--json", action="store_true", help="Print the state as one JSON object.")
    p = sub.add_parser("logs", help="The end of a run's train.log.")
    p.add_argument("run_id", help="Run id.")
    p.add_argument("--tail", type=int, default=50, help="How many lines from the end (default 50).")
    p.add_argument("--follow", "-f", action="store_true", help="Keep printing new lines until the run ends.")
    p = sub.add_parser("cancel", help="Stop a queued or running job now, without saving (state cancelled, resumable).")
    p.add_argument("run_id", help="Run id.")
    p.add_argument(
        "--grace", type=float, default=CANCEL_GRACE_S,
        help=f"Seconds between SIGTERM and SIGKILL (default {CANCEL_GRACE_S:g}).",
    )  # fmt: skip
    p = sub.add_parser("stop", help="Save a checkpoint, then stop (state stopped, resumable).")
    p.add_argument("run_id", help="Run id.")
    p.add_argument(
        "--grace", type=float, default=None,
        help=f"Seconds the save may take before the job is terminated (default: 2 x the run's last save, at least "
        f"{STOP_GRACE_MIN_S:g}).",
    )  # fmt: skip
    p = sub.add_parser("checkpoint", help="Save a checkpoint at the next step and keep training.")
    p.add_argument("run_id", help="Run id.")
    p = sub.add_parser("resume", help="Continue a failed, cancelled or stopped run from its newest checkpoint.")
    p.add_argument("run_id", help="Run id.")
    p.add_argument("--port", type=int, default=None, help="Rendezvous port (default: a free one).")


def _age(ts: float | None) -> str:
    if not ts:
        return "-"
    minutes = (time.time() - ts) / 60
    return f"{minutes:.0f}m ago" if minutes < 120 else f"{minutes / 60:.0f}h ago"


def print_table(infos: list[RunInfo]) -> None:
    if not infos:
        print("No runs yet. Launch one with `medcore train SPEC`.")
        return
    rows = [("RUN", "STATE", "STEP", "CREATED", "ERROR")]
    for info in infos:
        step = f"{info.step if info.step is not None else '-'}/{info.max_steps or '-'}"
        rows.append((info.run_id, info.state, step, _age(info.created_at), (info.error or "")[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])


def print_info(info: RunInfo) -> None:
    print(f"run:    {info.run_id} ({info.backend})\nstate:  {info.state}")
    if info.step is not None:
        print(f"step:   {info.step}/{info.max_steps or '?'}")
    if info.exit_code is not None:
        print(f"exit:   {info.exit_code}")
    if info.error:
        print(f"error:  {info.error}")
    if info.hint:
        print(f"hint:   {info.hint}")
    print(f"folder: {info.path}")


def run(args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        infos = runs.list_runs()
        if args.json:
            for info in infos:
                print(json.dumps(info.to_dict(), default=str))
        else:
            print_table(infos)
    elif action == "status":
        info = runs.run_status(args.run_id)
        print(json.dumps(info.to_dict(), default=str)) if args.json else print_info(info)
    elif action == "logs":
        if args.follow:
            log = Path(runs.run_status(args.run_id).path) / "train.log"
            offset = log.stat().st_size if log.exists() else 0  # taken first: no line is lost between the two
            print(runs.read_logs(args.run_id, args.tail, library_warnings=True), flush=True)
            for chunk in runs.follow_logs(args.run_id, offset=offset):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        else:
            print(runs.read_logs(args.run_id, args.tail, library_warnings=True))
    elif action == "cancel":
        print_info(runs.cancel_run(args.run_id, grace_s=args.grace))
    elif action == "stop":
        info = runs.stop_run(args.run_id, grace_s=args.grace)
        print(
            f"Asked run {info.run_id} to save a checkpoint and stop; watch it with `medcore runs status {info.run_id}`."
        )
    elif action == "checkpoint":
        runs.checkpoint_now(args.run_id)
        print(f"Run {args.run_id} will save a checkpoint at its next step.")
    elif action == "resume":
        run_id = runs.resume_run(args.run_id, port=args.port)
        print(
            f"Resumed run {run_id} from its newest checkpoint (queued); follow it with `medcore runs logs {run_id} -f`."
        )
    return 0
