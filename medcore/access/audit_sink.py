"""A copy of every audit checkpoint outside the workspace, so that cutting the log back is caught.

The signed log, head and checkpoints live in one folder: someone who kept older signed copies of head.json and
checkpoints.jsonl could restore them with a log cut back to match, and verification would pass. With
$MEDCORE_AUDIT_SINK set, each checkpoint line is also written, as it is made, to
- a file (a path on another mount, ideally append-only: `chattr +a`, a WORM share), which `medcore audit verify`
  then compares with the workspace's checkpoints: a checkpoint exported there but missing from, or different in,
  the workspace means the log was cut back or rewritten;
- or `syslog` (facility auth), for a site that collects logs centrally; verification cannot read that copy back.
An export that fails is reported on stderr and never blocks the action being audited.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

SINK_ENV = "MEDCORE_AUDIT_SINK"
SYSLOG = "syslog"
log = logging.getLogger("medcore.audit")


def sink_target() -> str | None:
    return os.environ.get(SINK_ENV, "").strip() or None


def export_checkpoint(line: bytes) -> None:
    """Write one signed checkpoint line to the configured sink (nothing when none is configured)."""
    target = sink_target()
    if target is None:
        return
    try:
        if target == SYSLOG:
            import syslog

            syslog.openlog("medcore-audit", 0, syslog.LOG_AUTH)
            syslog.syslog(syslog.LOG_INFO, line.decode())
            return
        with open(Path(target).expanduser(), "ab") as handle:
            handle.write(line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        log.warning("audit checkpoint not exported to %s (%s): %s", SINK_ENV, type(exc).__name__, target)


def sink_problems(checkpoints: list[dict]) -> list[str]:
    """What the exported copy (a sink file) says that the workspace's checkpoints do not: [] without a sink file."""
    target = sink_target()
    if target is None or target == SYSLOG or not Path(target).expanduser().exists():
        return []
    exported = []
    for number, raw in enumerate(Path(target).expanduser().read_text().splitlines(), start=1):
        try:
            exported.append(json.loads(raw))
        except json.JSONDecodeError:
            return [f"{SINK_ENV} line {number} is not JSON: the exported copy is damaged"]
    local = {c.get("seq"): c.get("mac") for c in checkpoints}
    problems = []
    for checkpoint in exported:
        seq = checkpoint.get("seq")
        if seq not in local:
            problems.append(
                f"checkpoint seq {seq} was exported to {SINK_ENV} but is not in the workspace's checkpoints "
                "(the log was cut back)"
            )
        elif local[seq] != checkpoint.get("mac"):
            problems.append(f"checkpoint seq {seq} differs from its exported copy (checkpoints rewritten)")
    return problems
