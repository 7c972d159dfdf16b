"""Acting for a user: check the role matrix, then leave exactly one audit record naming the user, the action, the
object (by id: dataset name, run id, job id; never PHI) and the outcome.

    with acting(ws, actor, "launch_run", kind="run_launched", dataset=spec.dataset) as outcome:
        outcome["run_id"] = launch_run(spec, ws)

Engine entry points that act for someone take `actor=None` and run inside `acting_for`: with an actor (the
console's signed-in user) the check and the record happen in the engine itself, so no caller can skip them; with
none (the CLI on the server's shell, a notebook, a job's own process) the call is what it always was.

Outcomes: "ok"; "refused" (medcore.access.actor.Refused: a role, a grant, an import root); "failed" (any other
MedcoreError, its message as the reason: MedcoreError messages hold no patient text); "error" (an unexpected
exception: only its type is recorded, its message could quote anything).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from medcore.access.actor import Actor, Refused, require
from medcore.access.audit import append_audit_record
from medcore.errors import MedcoreError
from medcore.workspace import Workspace


@contextmanager
def acting(
    ws: Workspace, actor: Actor, action: str, *, kind: str | None = None, obj: str | None = None, **fields
) -> Iterator[dict]:
    """Check `actor` may take `action` (on dataset `obj` for granted actions), run the block, record the outcome.

    Args:
        kind: the record's kind (what the Audit page lists as the action); the matrix action by default.
        fields: the object acted on, by id. The block may add more (a new run id) to the dict it is given.
    Raises:
        Refused: the role may not take the action (recorded as "refused"); whatever the block raises goes on.
    """
    kind = kind or action
    outcome: dict = {}
    with refusals_audited(ws, actor, action, kind=kind, obj=obj, **fields):
        pass
    try:
        yield outcome
    except Refused as exc:
        record(ws, actor, kind, "refused", reason=str(exc), **(fields | outcome))
        raise
    except MedcoreError as exc:
        record(ws, actor, kind, "failed", reason=str(exc), **(fields | outcome))
        raise
    except Exception as exc:
        record(ws, actor, kind, "error", error=type(exc).__name__, **(fields | outcome))
        raise
    record(ws, actor, kind, "ok", **(fields | outcome))


@contextmanager
def refusals_audited(
    ws: Workspace, actor: Actor, action: str, *, kind: str | None = None, obj: str | None = None, **fields
) -> Iterator[None]:
    """For a read on a user's behalf (a file to import, an audit page): check the role, and record only a refusal,
    from the check or the block; a read that succeeds is not an action worth a record on every page run."""
    try:
        require(actor, action, obj)
        yield
    except Refused as exc:
        record(ws, actor, kind or action, "refused", reason=str(exc), **fields)
        raise


def acting_for(ws: Workspace, actor: Actor | None, action: str, **fields) -> AbstractContextManager[dict]:
    """`acting(ws, actor, action, **fields)` when the call is made for a user, else a block that checks and records
    nothing (and still yields the outcome dict the block fills)."""
    return acting(ws, actor, action, **fields) if actor is not None else nullcontext({})


def record(ws: Workspace, actor: Actor, kind: str, outcome: str, **fields) -> dict:
    return append_audit_record(ws, kind, actor=actor, outcome=outcome, **fields)
