"""`medcore audit`: show, verify or seal the HMAC-signed audit log of the workspace.

medcore audit verify          # exit 1 and list every edited, deleted or missing record (and a wrong or missing key)
medcore audit show --last 5   # one line per record (counts and hashes only: the log holds no PHI)
medcore audit show --user bob --action run_launched   # only bob's launches
medcore audit seal            # sign a log written before HMAC chaining, once, after checking it
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
    show.add_argument("--user", help="Only the records of this user (e.g. bob, os:root).")
    show.add_argument("--action", help="Only the records of this kind (e.g. login, dataset_imported, run_launched).")
    sub.add_parser(
        "verify",
        help="Check every signature, link, the head, the checkpoints and the records datasets and runs cite; "
        "exit 1 on any problem.",
    )
    sub.add_parser("seal", help="Sign every record of a log written before HMAC chaining (its plain chain intact).")


def run(args: argparse.Namespace) -> int:
    from medcore.access.actor import local_admin
    from medcore.access.audit_view import describe_object
    from medcore.phi.audit import log_path, read_audit_log, seal_audit_log, verify_audit_log
    from medcore.workspace import get_workspace

    ws = get_workspace()
    if args.action == "verify":
        return print_verification(verify_audit_log(ws), log_path(ws))
    if args.action == "seal":
        sealed = seal_audit_log(ws, local_admin())
        print(f"Signed {sealed} pre-HMAC records." if sealed else "Nothing to seal: every record is signed already.")
        return 0
    records = [
        r for r in read_audit_log(ws) if args.user in (None, r.get("user")) and args.action in (None, r.get("kind"))
    ]
    shown = records[-args.last :] if args.last else records
    if not records:
        print(f"No audit records {'match' if args.user or args.action else 'yet'} in {log_path(ws)}.")
    for record in shown:
        if args.json:
            print(json.dumps(record, sort_keys=True))
            continue
        when = dt.datetime.fromtimestamp(record.get("time", 0)).isoformat(timespec="seconds")
        what = describe_object(record) or record.get("input") or ""
        counts = ", ".join(f"{k} {v}" for k, v in sorted((record.get("counts") or {}).items()))
        who = f"{record.get('user')} ({record['role']})" if record.get("role") else record.get("user")
        outcome = f" {record['outcome']}" if record.get("outcome") else ""
        print(
            f"#{record.get('seq')} {when} {who} {record.get('kind')}{outcome} {what} [{counts}] {record.get('hash', '')[:12]}"
        )
    return 0


def print_verification(result, path) -> int:
    for note in result.notes:
        print(f"Repaired: {note}.")
    if result.ok:
        print(
            f"Audit log OK: {result.records} records, signatures and chain intact, {result.checkpoints} checkpoints, "
            f"every cited record present (head {result.head_hash[:16]}..., key {result.key_id or 'none yet'})."
        )
        return 0
    print(f"Audit log {path} FAILED verification ({len(result.problems)} problems):")
    for problem in result.problems:
        print(f"  - {problem}")
    return 1
