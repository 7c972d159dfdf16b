"""`medcore audit`: show or verify the hash-chained PHI audit log of the workspace.

medcore audit verify          # exit 1 and list every edited or deleted record
medcore audit show --last 5   # one line per record (counts and hashes only: the log holds no PHI)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="Print the records, oldest first.")
    show.add_argument("--last", type=int, default=20, help="Only the last N records (0: all).")
    show.add_argument("--json", action="store_true", help="Print the records as JSON lines.")
    sub.add_parser("verify", help="Recompute the hash chain; exit 1 if any record was edited or deleted.")


def run(args: argparse.Namespace) -> int:
    from medcore.phi.audit import log_path, read_audit_log, verify_audit_log
    from medcore.workspace import get_workspace

    ws = get_workspace()
    if args.action == "verify":
        result = verify_audit_log(ws)
        if result.ok:
            print(f"Audit log OK: {result.records} records, chain intact (head {result.head_hash[:16]}...).")
            return 0
        print(f"Audit log {log_path(ws)} FAILED verification ({len(result.problems)} problems):")
        for problem in result.problems:
            print(f"  - {problem}")
        return 1
    records = read_audit_log(ws)
    shown = records[-args.last :] if args.last else records
    if not records:
        print(f"No audit records yet in {log_path(ws)}.")
    for record in shown:
        if args.json:
            print(json.dumps(record, sort_keys=True))
            continue
        when = dt.datetime.fromtimestamp(record.get("time", 0)).isoformat(timespec="seconds")
        what = record.get("dataset") or record.get("input") or ""
        counts = ", ".join(f"{k} {v}" for k, v in sorted((record.get("counts") or {}).items()))
        print(
            f"#{record.get('seq')} {when} {record.get('user')} {record.get('kind')} {what} [{counts}] {record.get('hash', '')[:12]}"
        )
    return 0
