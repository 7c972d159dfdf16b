"""`medcore users`: create the console's users, change their roles, grants and passwords (each change audited).

medcore users add alice --role admin          # the first admin; the password is prompted for twice
echo "$PW" | medcore users add bob --role ml-engineer   # or read from stdin (never from the command line)
medcore users set-role bob viewer
medcore users grant carol notes-redacted      # PHI preview of one dataset for a clinician-reviewer
medcore users revoke carol notes-redacted
medcore users passwd bob
medcore users unlock bob                      # after MAX_FAILED_LOGINS failed logins
medcore users link bob bob@hospital.org       # single sign-on: the identity provider's e-mail for bob
medcore users unlink bob
medcore users remove bob
medcore users list [--json]

Run on the server's shell, a command acts as admin (recorded as `os:<OS user>`): whoever can run it can read the
users file and the audit key already.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import sys

from medcore.access.actor import local_admin
from medcore.access.roles import ROLES
from medcore.access.sso import link_identity
from medcore.access.users import (
    MIN_PASSWORD_CHARS,
    add_user,
    grant_dataset,
    list_users,
    remove_user,
    set_password,
    set_role,
    unlock_user,
    users_path,
)
from medcore.errors import MedcoreError
from medcore.workspace import get_workspace

ROLE_HELP = f"One of: {', '.join(ROLES)}."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("add", help="Create a user; the password is prompted for (or read from stdin).")
    p.add_argument("name", help="User name: 2-32 lower-case letters, digits, '.', '_' or '-'.")
    p.add_argument("--role", required=True, help=ROLE_HELP)
    p.add_argument("--grant", action="append", default=[], metavar="DATASET", help="Grant PHI preview of DATASET.")
    p = sub.add_parser("remove", help="Delete a user (not the last admin).")
    p.add_argument("name", help="User name.")
    p = sub.add_parser("set-role", help="Change a user's role.")
    p.add_argument("name", help="User name.")
    p.add_argument("role", help=ROLE_HELP)
    for action, verb in (("grant", "Grant"), ("revoke", "Revoke")):
        p = sub.add_parser(action, help=f"{verb} PHI preview of one dataset (clinician-reviewers).")
        p.add_argument("name", help="User name.")
        p.add_argument("dataset", help="Dataset name.")
    p = sub.add_parser("passwd", help="Set a user's password (prompted for, or read from stdin); clears a lockout.")
    p.add_argument("name", help="User name.")
    p = sub.add_parser("unlock", help="Clear a user's failed logins and lockout.")
    p.add_argument("name", help="User name.")
    p = sub.add_parser("link", help="Let a user sign in through single sign-on as IDENTITY (an e-mail address).")
    p.add_argument("name", help="User name.")
    p.add_argument("identity", help="The e-mail address the identity provider gives for this person.")
    p = sub.add_parser("unlink", help="Remove a user's single sign-on identity (the password still works).")
    p.add_argument("name", help="User name.")
    p = sub.add_parser("list", help="Users, roles, grants and lockouts (never password hashes).")
    p.add_argument("--json", action="store_true", help="One JSON object per user.")


def run(args: argparse.Namespace) -> int:
    ws, actor = get_workspace(), local_admin()
    if args.action == "list":
        return print_users(list_users(ws), as_json=args.json)
    if args.action == "add":
        add_user(ws, actor, args.name, args.role, read_password(args.name), datasets=args.grant)
        print(f"Added {args.name} ({args.role}) to {users_path()}.")
    elif args.action == "remove":
        remove_user(ws, actor, args.name)
        print(f"Removed {args.name}.")
    elif args.action == "set-role":
        set_role(ws, actor, args.name, args.role)
        print(f"{args.name} is now {args.role}; open sessions pick it up on their next page.")
    elif args.action in {"grant", "revoke"}:
        grant_dataset(ws, actor, args.name, args.dataset, grant=args.action == "grant")
        print(f"{'Granted' if args.action == 'grant' else 'Revoked'} PHI preview of '{args.dataset}' for {args.name}.")
    elif args.action == "passwd":
        set_password(ws, actor, args.name, read_password(args.name))
        print(f"Password of {args.name} changed.")
    elif args.action == "unlock":
        unlock_user(ws, actor, args.name)
        print(f"Unlocked {args.name}.")
    elif args.action in {"link", "unlink"}:
        link_identity(ws, actor, args.name, getattr(args, "identity", None))
        print(f"{args.name} signs in through single sign-on as {args.identity}." if args.action == "link" else
              f"{args.name} no longer signs in through single sign-on.")  # fmt: skip
    return 0


def read_password(name: str) -> str:
    """From a prompt (twice) on a terminal, else the first line of stdin: never from argv, where `ps` shows it."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass(f"Password for {name} (at least {MIN_PASSWORD_CHARS} characters): ")
    if getpass.getpass("Again: ") != password:
        raise MedcoreError("The two passwords differ; nothing was changed. Run the command again.")
    return password


def print_users(users, *, as_json: bool) -> int:
    if as_json:
        for user in users:
            print(json.dumps(dataclasses.asdict(user), sort_keys=True))
        return 0
    if not users:
        print(f"No users yet in {users_path()}. Create the first admin: medcore users add NAME --role admin")
        return 0
    now = dt.datetime.now().timestamp()
    for user in users:
        locked = " LOCKED" if user.locked_until > now else ""
        grants = f" datasets: {', '.join(user.datasets)}" if user.datasets else ""
        print(f"{user.name:<20} {user.role:<18}{grants}{locked}")
    return 0
