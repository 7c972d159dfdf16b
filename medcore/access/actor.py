"""The Actor every engine call made on a user's behalf carries, and `require`, the one permission check."""

from __future__ import annotations

from dataclasses import dataclass

from medcore.access.audit import current_user
from medcore.access.roles import ACTIONS, ADMIN, GRANTED_ACTIONS, ROLES, allowed_roles
from medcore.errors import MedcoreError


class Refused(MedcoreError):
    """A refusal on a user's behalf (their role, a dataset not granted, a path outside the import roots): audited
    with outcome "refused", where any other MedcoreError is a "failed" action."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user name, their role, and the datasets granted to them for PHI preview."""

    user: str
    role: str
    datasets: frozenset[str] = frozenset()


def local_admin() -> Actor:
    """The actor of a command run on the server's shell: whoever can run it can already read the audit key and the
    users file, so it acts as admin, recorded as `os:<OS user>`."""
    return Actor(f"os:{current_user()}", ADMIN)


def require(actor: Actor, action: str, obj: str | None = None) -> None:
    """Raise Refused (a MedcoreError) unless `actor`'s role may take `action` (on dataset `obj` for granted actions).

    Example refusal: "user bob (viewer) may not launch runs; ask an admin for the ml-engineer role".
    """
    roles = allowed_roles(action)
    phrase = ACTIONS[action][0]
    who = f"user {actor.user} ({actor.role})"
    if actor.role not in ROLES:
        raise Refused(
            f"{who} has a role MedCore does not know; roles are: {', '.join(ROLES)}. "
            f"Ask an admin to run `medcore users set-role {actor.user} ROLE`."
        )
    if actor.role not in roles:
        suggestion = next(role for role in ROLES if role in roles)
        fix = "only admins may" if suggestion == ADMIN else f"ask an admin for the {suggestion} role"
        raise Refused(f"{who} may not {phrase}; {fix}")
    if action in GRANTED_ACTIONS and actor.role != ADMIN and (obj is None or obj not in actor.datasets):
        what = f"dataset '{obj}'" if obj else "a dataset not named"
        raise Refused(
            f"{who} may not {phrase} of {what}: it is not granted to them; "
            f"ask an admin to run `medcore users grant {actor.user} {obj or 'DATASET'}`"
        )
