"""Console users: argon2id password hashes, roles, dataset grants and lockout, kept in a users file outside the
workspace; every login and every user change appends one audit record (never a password, never its hash).

Where: `$MEDCORE_USERS_FILE`, else `<config dir>/users.json` (mode 0600, next to the audit key). Not in the
workspace: jobs and notebooks write there, and whoever can write the users file can make themselves admin. Not in
"the workspace's parent" either: that folder is not MedCore's (it may be /data or a home directory). One users
file serves every workspace of the OS account running the console; the records land in the workspace acted on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from medcore.access.actor import Actor, require
from medcore.access.audit import append_audit_record
from medcore.access.config import check_outside_workspace, check_private, config_dir, write_private
from medcore.access.roles import ROLES
from medcore.errors import MedcoreError
from medcore.fileio import file_lock
from medcore.workspace import Workspace

USERS_FILE_ENV = "MEDCORE_USERS_FILE"
MAX_FAILED_LOGINS = 5  # then the account is locked for LOCKOUT_S: slows guessing to 5 tries per 15 minutes
LOCKOUT_S = 15 * 60
MIN_PASSWORD_CHARS = 12
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
WRONG_LOGIN = "Wrong user name or password."  # the same for an unknown user: the form must not reveal who exists
UNKNOWN = Actor("(unknown)", "none")  # the actor of a login by a name no user has ("(" is not allowed in names)

HASHER = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory profile (t=3, 64 MiB, p=4)


@dataclass(frozen=True)
class UserInfo:
    """A user as listed (no password hash)."""

    name: str
    role: str
    datasets: tuple[str, ...]
    failed_logins: int
    locked_until: float
    created: float


def users_path() -> Path:
    return Path(os.environ.get(USERS_FILE_ENV) or config_dir() / "users.json").expanduser()


@contextmanager
def users_locked(ws: Workspace) -> Iterator[dict]:
    """The users table ({name: entry}) under an exclusive lock; saved (mode 0600) when the block ends normally."""
    path = users_path()
    check_outside_workspace(ws, path, "users file", USERS_FILE_ENV)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with file_lock(path.with_name(path.name + ".lock")):
        users = read_users(path)
        before = json.dumps(users, sort_keys=True)
        yield users
        if json.dumps(users, sort_keys=True) != before:
            write_private(path, json.dumps({"version": 1, "users": users}, indent=2, sort_keys=True).encode())


def read_users(path: Path) -> dict:
    if not path.exists():
        return {}
    check_private(path, "users file")
    try:
        return json.loads(path.read_text())["users"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise MedcoreError(f"The users file {path} is not valid: restore it from backup.") from None


def list_users(ws: Workspace) -> list[UserInfo]:
    with users_locked(ws) as users:
        return [info(name, entry) for name, entry in sorted(users.items())]


def info(name: str, entry: dict) -> UserInfo:
    return UserInfo(
        name, entry["role"], tuple(entry.get("datasets", ())), entry.get("failed_logins", 0),
        entry.get("locked_until", 0.0), entry.get("created", 0.0),
    )  # fmt: skip


def actor_for(ws: Workspace, name: str) -> Actor:
    """The current Actor of user `name` (role and grants as the users file says now)."""
    with users_locked(ws) as users:
        entry = users.get(name)
    if entry is None:
        raise MedcoreError(f"User '{name}' no longer exists; log in as another user.")
    return Actor(name, entry["role"], frozenset(entry.get("datasets", ())))


def named(name: str) -> dict:
    """How a user name goes into a record: as itself when it is a valid name, else as a hash (it may be a password
    typed into the name box)."""
    if USERNAME.match(name or ""):
        return {"target_user": name}
    return {"target_name_sha256": name_hash(name)}


def name_hash(name: str) -> str:
    return hashlib.sha256((name or "").encode()).hexdigest()[:16]


@contextmanager
def audited(ws: Workspace, actor: Actor, kind: str, **fields) -> Iterator[None]:
    """One audit record for a user change: outcome "ok", or "refused" with the reason (then the error goes on)."""
    try:
        yield
    except MedcoreError as exc:
        append_audit_record(ws, kind, actor=actor, outcome="refused", reason=str(exc), **fields)
        raise
    append_audit_record(ws, kind, actor=actor, outcome="ok", **fields)


def check_new_user(name: str, role: str, password: str | None) -> None:
    problems = []
    if not USERNAME.match(name):
        problems.append("a user name is 2-32 lower-case letters, digits, '.', '_' or '-', starting with a letter")
    if role not in ROLES:
        problems.append(f"role '{role}' does not exist; roles are: {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        problems.append(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if problems:
        raise MedcoreError("Cannot save the user: " + "; ".join(problems) + ".")


def existing(users: dict, name: str) -> dict:
    if name not in users:
        known = ", ".join(sorted(users)) or "none yet"
        raise MedcoreError(f"No user '{name}'. Users: {known}. Add one with `medcore users add NAME --role ROLE`.")
    return users[name]


def add_user(ws: Workspace, actor: Actor, name: str, role: str, password: str, datasets=()) -> UserInfo:
    """Create a user (admin only). Raises MedcoreError for a taken or malformed name, an unknown role, a short
    password; each outcome is audited."""
    with audited(ws, actor, "user_added", **named(name), new_role=role), users_locked(ws) as users:
        require(actor, "manage_users")
        check_new_user(name, role, password)
        if name in users:
            raise MedcoreError(f"User '{name}' already exists; change it with `medcore users set-role`.")
        now = time.time()
        users[name] = {"role": role, "password_hash": HASHER.hash(password), "datasets": sorted(set(datasets))}
        users[name] |= {"failed_logins": 0, "locked_until": 0.0, "created": now, "changed": now}
        return info(name, users[name])


def remove_user(ws: Workspace, actor: Actor, name: str) -> None:
    with audited(ws, actor, "user_removed", **named(name)), users_locked(ws) as users:
        require(actor, "manage_users")
        existing(users, name)
        if users[name]["role"] == "admin" and sum(u["role"] == "admin" for u in users.values()) == 1:
            raise MedcoreError(f"'{name}' is the last admin; add another admin before removing it.")
        del users[name]


def set_role(ws: Workspace, actor: Actor, name: str, role: str) -> None:
    with audited(ws, actor, "role_changed", **named(name), new_role=role), users_locked(ws) as users:
        require(actor, "manage_users")
        entry = existing(users, name)
        check_new_user(name, role, None)
        if entry["role"] == "admin" and role != "admin" and sum(u["role"] == "admin" for u in users.values()) == 1:
            raise MedcoreError(f"'{name}' is the last admin; make another user admin first.")
        entry |= {"role": role, "changed": time.time()}


def set_password(ws: Workspace, actor: Actor, name: str, password: str) -> None:
    with audited(ws, actor, "password_changed", **named(name)), users_locked(ws) as users:
        require(actor, "manage_users")
        entry = existing(users, name)
        check_new_user(name, entry["role"], password)
        entry |= {"password_hash": HASHER.hash(password), "failed_logins": 0, "locked_until": 0.0}
        entry["changed"] = time.time()


def grant_dataset(ws: Workspace, actor: Actor, name: str, dataset: str, *, grant: bool = True) -> None:
    """Grant (or with grant=False revoke) PHI preview of `dataset` to user `name`."""
    kind = "dataset_granted" if grant else "dataset_revoked"
    with audited(ws, actor, kind, **named(name), dataset=dataset), users_locked(ws) as users:
        require(actor, "manage_users")
        entry = existing(users, name)
        datasets = set(entry.get("datasets", ())) | {dataset} if grant else set(entry.get("datasets", ())) - {dataset}
        entry |= {"datasets": sorted(datasets), "changed": time.time()}


def unlock_user(ws: Workspace, actor: Actor, name: str) -> None:
    with audited(ws, actor, "user_unlocked", **named(name)), users_locked(ws) as users:
        require(actor, "manage_users")
        existing(users, name).update(failed_logins=0, locked_until=0.0)


def authenticate(ws: Workspace, name: str, password: str, *, clock: Callable[[], float] = time.time) -> Actor:
    """Check a login; return the user's Actor. Every attempt appends one "login" record (outcome, reason).

    Raises MedcoreError "Wrong user name or password." for an unknown user or a wrong password alike, and a
    lockout message after MAX_FAILED_LOGINS failures in a row (for LOCKOUT_S seconds, or until `users unlock`).
    """
    now = clock()
    with users_locked(ws) as users:
        entry = users.get(name)
        if entry is None:
            matches(dummy_hash(HASHER), password)  # the same argon2 work as for a real user: timing tells nothing
            # only a hash of the name: a password typed into the name box must not land in the log
            refusal, actor, fields = (
                WRONG_LOGIN,
                UNKNOWN,
                {"attempted_name_sha256": name_hash(name), "reason": "unknown user"},
            )
        else:
            actor = Actor(name, entry["role"], frozenset(entry.get("datasets", ())))
            refusal, fields = check_password(entry, password, now)
            if refusal is None and HASHER.check_needs_rehash(entry["password_hash"]):
                entry["password_hash"] = HASHER.hash(password)
    outcome = {"outcome": "refused" if refusal else "ok"}
    append_audit_record(ws, "login", actor=actor, **outcome, **fields)
    if refusal:
        raise MedcoreError(refusal)
    return actor


def check_password(entry: dict, password: str, now: float) -> tuple[str | None, dict]:
    """(refusal or None, audit fields) for a known user, updating its failure count and lock in place."""
    if entry.get("locked_until", 0.0) > now:
        minutes = max(1, round((entry["locked_until"] - now) / 60))
        message = (
            f"This account is locked after {MAX_FAILED_LOGINS} failed logins; try again in {minutes} minute(s) "
            "or ask an admin to unlock it (`medcore users unlock NAME`)."
        )
        return message, {"reason": "locked"}
    if matches(entry["password_hash"], password):
        entry |= {"failed_logins": 0, "locked_until": 0.0}
        return None, {}
    entry["failed_logins"] = entry.get("failed_logins", 0) + 1
    if entry["failed_logins"] >= MAX_FAILED_LOGINS:
        entry |= {"failed_logins": 0, "locked_until": now + LOCKOUT_S}
        message = f"{WRONG_LOGIN} The account is now locked for {LOCKOUT_S // 60} minutes."
        return message, {"reason": "wrong password", "locked_now": True}
    return WRONG_LOGIN, {"reason": "wrong password", "failed_logins": entry["failed_logins"]}


@functools.cache
def dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("medcore: equal work for unknown users")


def matches(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
