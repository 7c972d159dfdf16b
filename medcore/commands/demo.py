"""`medcore demo`: build the deterministic synthetic demo workspace (notes with gold PHI, labels, QA).

medcore demo                          # 2,000 notes, seed 0, into $MEDCORE_HOME (default ./workspace)
medcore demo --seed 7 --notes 300 --workspace /tmp/ws
"""

from __future__ import annotations

import argparse
import time

from medcore.errors import MedcoreError
from medcore.workspace import get_workspace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="Random seed: the same seed gives byte-identical files.")
    parser.add_argument("--notes", type=int, default=2000, help="Number of clinical notes to generate.")
    parser.add_argument("--qa", type=int, default=300, help="Number of question/context/answer rows.")
    parser.add_argument("--workspace", default=None, help="Workspace folder (default: $MEDCORE_HOME or ./workspace).")
    parser.add_argument(
        "--no-import", action="store_true", help="Only write the raw files; do not import them as catalog datasets."
    )


def run(args: argparse.Namespace) -> int:
    from medcore.demo import build_demo_workspace

    for flag, value in (("--notes", args.notes), ("--qa", args.qa)):
        if value < 1:
            raise MedcoreError(f"{flag} must be at least 1 (got {value}).")
    started = time.perf_counter()
    ws = get_workspace(args.workspace)
    summary = build_demo_workspace(ws, seed=args.seed, n_notes=args.notes, n_qa=args.qa)
    print(
        f"demo workspace {ws.root}: {summary['notes']} notes from {summary['patients']} patients, "
        f"{summary['phi_spans']} gold PHI spans, {summary['qa_rows']} QA rows (seed {summary['seed']}, "
        f"{time.perf_counter() - started:.1f}s)"
    )
    for path in summary["files"].values():
        print(f"  wrote {path}")
    if not args.no_import:
        from medcore.demo.register import register_demo_datasets

        for manifest in register_demo_datasets(ws, seed=args.seed):
            print(f"  imported dataset '{manifest.name}' ({manifest.total_rows} rows, {manifest.redaction.status})")
    return 0
