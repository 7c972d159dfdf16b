"""Loaded by every Python process of a test that puts this folder on PYTHONPATH: refuses and records any
connection from Python code to an address other than this machine's loopback (tests assert none happen)."""

import os
import socket

_connect = socket.socket.connect
LOG = os.environ.get("MEDCORE_NET_GUARD_LOG")


def _is_local(address) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = str(address[0])
    return host.startswith("127.") or host in ("::1", "localhost", "0.0.0.0", "")


def guarded_connect(self, address):
    if not _is_local(address):
        if LOG:
            with open(LOG, "a") as handle:
                handle.write(f"{os.getpid()} {address!r}\n")
        raise OSError(f"network access blocked by the test guard: {address!r}")
    return _connect(self, address)


socket.socket.connect = guarded_connect
