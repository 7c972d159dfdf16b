"""Secure by default: the console answers beyond this machine only when logins are configured.

    python -m medcore.access.bind HOST     # exit 1, with the fix, when HOST is not loopback and no user exists

Without users the console runs in local mode (whoever reaches it acts as admin), which is safe only on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import sys

from medcore.access.users import list_users
from medcore.errors import MedcoreError
from medcore.workspace import Workspace, get_workspace

LOOPBACK_NAMES = {"", "localhost"}


def is_loopback(address: str | None) -> bool:
    host = (address or "").strip().strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name that may resolve anywhere


def logins_configured(ws: Workspace) -> bool:
    """Whether any console user exists: then every page asks for a login."""
    return bool(list_users(ws))


def check_bind(address: str | None, ws: Workspace) -> None:
    """Refuse an address beyond loopback while no user exists."""
    if is_loopback(address) or logins_configured(ws):
        return
    raise MedcoreError(
        f"The console would listen on {address}, reachable from other machines, but no user is configured, so "
        "anyone reaching it would act as admin. Create the first admin with `medcore users add NAME --role admin` "
        "(every page then asks for a login), or bind to 127.0.0.1."
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m medcore.access.bind HOST", file=sys.stderr)
        return 2
    try:
        check_bind(argv[0], get_workspace())
    except MedcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
