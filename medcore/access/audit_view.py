"""The audit log as the Audit page shows it: one row per record (time, user, action, object, outcome), filtered by
user, action and date; reading it is for admins only."""

from __future__ import annotations

import datetime as dt

from medcore.access.acting import refusals_audited
from medcore.access.actor import Actor
from medcore.access.audit import read_audit_log
from medcore.workspace import Workspace

# The fields that name what a record acted on, by id (never PHI), in the order the "object" column shows them.
OBJECT_FIELDS = (
    "dataset", "output", "run_id", "new_run_id", "eval_id", "job_id", "review_id", "item", "server", "model",
    "request_id", "target_user", "source_file",
)  # fmt: skip


def read_audit_records(ws: Workspace, actor: Actor) -> list[dict]:
    """Every record, oldest first, for an actor whose role may read the log (a refusal is itself recorded)."""
    with refusals_audited(ws, actor, "view_audit"):
        return read_audit_log(ws)


def describe_object(record: dict) -> str:
    """What a record acted on, e.g. "dataset notes, run_id notes-ab12" ("" for a login)."""
    return ", ".join(f"{name} {record[name]}" for name in OBJECT_FIELDS if record.get(name) not in (None, ""))


def record_day(record: dict) -> dt.date | None:
    when = record.get("time")
    return dt.datetime.fromtimestamp(when).date() if isinstance(when, int | float) else None


def audit_rows(
    records: list[dict],
    *,
    user: str | None = None,
    action: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[dict]:
    """The records matching every filter given (dates inclusive, local time), newest first, as table rows."""
    rows = []
    for record in reversed(records):
        day = record_day(record)
        if (user and record.get("user") != user) or (action and record.get("kind") != action):
            continue
        if (since and (day is None or day < since)) or (until and (day is None or day > until)):
            continue
        when = record.get("time")
        rows.append({
            "seq": record.get("seq"),
            "time": dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S") if day else "",
            "user": record.get("user", ""),
            "role": record.get("role", ""),
            "action": record.get("kind", ""),
            "object": describe_object(record),
            "outcome": record.get("outcome", ""),
            "reason": record.get("reason", ""),
        })  # fmt: skip
    return rows


def filter_choices(records: list[dict]) -> tuple[list[str], list[str]]:
    """The users and the actions present in the log, sorted: the Audit page's filter options."""
    users = sorted({str(r["user"]) for r in records if r.get("user")})
    actions = sorted({str(r["kind"]) for r in records if r.get("kind")})
    return users, actions
