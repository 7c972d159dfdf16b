"""Run one training job from its run folder, on every rank.

    torchrun --nproc-per-node=2 -m medcore.train RUN_DIR [--resume]
    torchrun --nnodes=2 --node-rank=R --nproc-per-node=2 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:PORT -m medcore.train RUN_DIR          # on each of two nodes
    deepspeed --num_gpus=2 --module medcore.train RUN_DIR
    python -m medcore.train RUN_DIR                                  # one process

RUN_DIR holds spec.json and ds_config.json (written by `medcore train` / medcore.train.prepare_run_dir).
Reads top to bottom: parse -> validate -> set up (process group) -> train -> clean up. Failures end with
state "failed" plus error and hint in status.json (an exception's type and MedCore location, never a library's
message: it may quote patient text); SIGINT/SIGTERM/SIGHUP save a checkpoint and end "stopped" (exit 0). Each rank
records its exit code in RUN_DIR/exits/. Models load from local files only unless the spec sets allow_downloads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from pathlib import Path

from medcore.deepspeed_ops import prefer_this_environments_tools
from medcore.errors import MedcoreError
from medcore.rundir import RunDir, read_json
from medcore.train.failure import explain_failure, format_traceback
from medcore.train.spec import set_offline_mode
from medcore.workspace import Workspace


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medcore.train", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="Run folder with spec.json and ds_config.json.")
    parser.add_argument("--resume", action="store_true", help="Continue from the newest checkpoint.")
    # The deepspeed launcher passes --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def fail(rd: RunDir, rank: int, error: str, hint: str) -> None:
    """Record the failure. Every rank may write (rank 0 may be the one that is missing); messages carry no note text."""
    with contextlib.suppress(OSError):  # a full or read-only disk: the launcher names that cause from the log
        rd.update_status(state="failed", error=error, hint=hint, failed_rank=rank)
    print(f"[medcore.train rank {rank}] error: {error}\n  hint: {hint}", file=sys.stderr, flush=True)


def print_scrubbed(exc_type, exc, tb) -> None:
    """sys.excepthook for the trainer: the traceback without library messages (medcore.train.failure)."""
    print(format_traceback(exc.with_traceback(tb)), file=sys.stderr, flush=True)


def print_scrubbed_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        print_scrubbed(args.exc_type, args.exc_value, args.exc_traceback)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rd = RunDir(args.run_dir.resolve())
    rank = int(os.environ.get("RANK", 0))
    spec_data = read_json(rd.spec)
    if spec_data is None or not rd.ds_config.exists():
        print(
            f"error: {rd.path} is not a run folder (spec.json and ds_config.json are needed); create one with "
            "`medcore train SPEC.yaml`.",
            file=sys.stderr,
        )
        return 2
    set_offline_mode(spec_data)  # before transformers is imported: huggingface_hub reads it once, at import
    prefer_this_environments_tools()  # DeepSpeed's ops build with this venv's ninja, however the rank was started
    sys.excepthook = print_scrubbed  # whatever escapes below (or a thread's failure) is printed without its message
    threading.excepthook = print_scrubbed_thread
    code = 1
    try:
        code = train(rd, rank, spec_data, args)
    finally:
        rd.record_exit(rank, code)  # the evidence an observer settles the run from if the launcher is gone
    return code


def train(rd: RunDir, rank: int, spec_data: dict, args: argparse.Namespace) -> int:
    from medcore.train.distributed import DistributedStartError, init_distributed, shutdown
    from medcore.train.runner import run_training

    device = spec_data.get("device", "cpu")
    device = "cpu" if device == "auto" else device
    try:
        ctx = init_distributed(float(spec_data.get("dist_timeout_s", 60)), device, args.local_rank)
        return run_training(rd, ctx, args.resume)
    except DistributedStartError as exc:
        fail(rd, rank, str(exc), exc.hint)
        return 1
    except MedcoreError as exc:
        fail(rd, rank, str(exc), "Fix the input named above, then resume or relaunch the run.")
        return 1
    except Exception as exc:
        # Type and MedCore location only, in the status and the log: library messages can quote inputs (a label,
        # a value from a note), and the status is shown in the console.
        print(format_traceback(exc), file=sys.stderr, flush=True)
        error, hint = explain_failure(exc, spec_data, Workspace(rd.path.parent.parent))  # a hint fit for the cause
        fail(rd, rank, f"{error} on rank {rank}.", hint)
        return 1
    finally:
        shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
