"""Run one training job from its run folder, on every rank.

    torchrun --nproc-per-node=2 -m medcore.train RUN_DIR [--resume]
    torchrun --nnodes=2 --node-rank=R --nproc-per-node=2 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:PORT -m medcore.train RUN_DIR          # on each of two nodes
    deepspeed --num_gpus=2 --module medcore.train RUN_DIR
    python -m medcore.train RUN_DIR                                  # one process

RUN_DIR holds spec.json and ds_config.json (written by `medcore train` / medcore.train.prepare_run_dir).
Reads top to bottom: parse -> validate -> set up (process group) -> train -> clean up. Failures end with
state "failed" plus error and hint in status.json; SIGINT/SIGTERM save a checkpoint and end "stopped" (exit 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.rundir import RunDir, read_json


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medcore.train", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="Run folder with spec.json and ds_config.json.")
    parser.add_argument("--resume", action="store_true", help="Continue from the newest checkpoint.")
    # The deepspeed launcher passes --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def fail(rd: RunDir, rank: int, error: str, hint: str) -> None:
    """Record the failure. Every rank may write (rank 0 may be the one that is missing); messages carry no note text."""
    rd.update_status(state="failed", error=error, hint=hint, failed_rank=rank)
    print(f"[medcore.train rank {rank}] error: {error}\n  hint: {hint}", file=sys.stderr, flush=True)


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
        traceback.print_exc()
        # Type and first line only: library messages can quote inputs, and the status is shown in the console.
        first = (str(exc).splitlines() or [""])[0][:300]
        fail(
            rd,
            rank,
            f"{type(exc).__name__} on rank {rank}: {first}",
            "See the traceback in train.log (`medcore runs logs RUN_ID --tail 50`); resume from the last checkpoint.",
        )
        return 1
    finally:
        shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
