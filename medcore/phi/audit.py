"""The append-only, hash-chained audit log of PHI decisions (audit/audit.jsonl) and the surrogate salt.

Each record holds `seq`, `prev_hash` and `hash` = sha256 over its own canonical JSON (without `hash`), so
editing a record breaks its hash and deleting one breaks the chain; `audit/head.json` remembers the last
record, so truncating the tail is caught too. Records hold counts, content hashes and settings only:
never PHI, never surrogate mappings.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.fileio import file_lock
from medcore.rundir import write_json_atomic
from medcore.workspace import Workspace

GENESIS = "0" * 64
SALT_BYTES = 32


def log_path(ws: Workspace) -> Path:
    return ws.audit / "audit.jsonl"


def head_path(ws: Workspace) -> Path:
    return ws.audit / "head.json"


def load_salt(ws: Workspace) -> bytes:
    """The workspace's secret surrogate salt, created (mode 0600) on first use."""
    path = ws.audit / "salt.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(SALT_BYTES))
    try:
        salt = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise MedcoreError(
            f"The salt file {path} is corrupt (not hex). Restore it from backup: surrogates depend on it."
        ) from None
    if len(salt) < 16:
        raise MedcoreError(
            f"The salt file {path} holds {len(salt)} bytes; at least 16 are needed. Restore it from backup."
        )
    return salt


def canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry inside some containers
        return os.environ.get("USER", "unknown")


def locked(ws: Workspace):
    """One writer at a time across processes (console, CLI and jobs all append)."""
    ws.audit.mkdir(parents=True, exist_ok=True)
    return file_lock(ws.audit / "audit.lock")


def append_audit_record(ws: Workspace, kind: str, **fields) -> dict:
    """Append one record (e.g. kind="redaction" or "redaction_override") and return it with its hash.

    Fields must be JSON-serialisable and PHI-free: counts, content hashes, settings, dataset names.
    """
    from medcore import __version__

    reserved = {"seq", "time", "user", "kind", "medcore_version", "prev_hash", "hash"} & fields.keys()
    if reserved:
        raise MedcoreError(f"Audit fields {sorted(reserved)} are set by the log itself; rename them.")
    with locked(ws):
        last = read_head(ws)
        record = {
            "seq": last["seq"] + 1,
            "time": time.time(),
            "user": current_user(),
            "kind": kind,
            "medcore_version": __version__,
            **fields,
            "prev_hash": last["hash"],
        }
        try:
            json.dumps(record)
        except TypeError as exc:
            raise MedcoreError(f"Audit record '{kind}' has a field that is not JSON: {exc}.") from None
        record["hash"] = record_hash(record)
        with open(log_path(ws), "ab") as handle:
            handle.write(canonical(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        write_json_atomic(head_path(ws), {"seq": record["seq"], "hash": record["hash"]})
    return record


def read_head(ws: Workspace) -> dict:
    path = head_path(ws)
    if not path.exists():
        return {"seq": 0, "hash": GENESIS}
    return json.loads(path.read_text())


def read_audit_log(ws: Workspace) -> list[dict]:
    """Every record, oldest first (unparseable lines raise with their line number)."""
    path = log_path(ws)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise MedcoreError(f"Audit log {path} line {number} is not valid JSON: the log was edited.") from None
    return records


@dataclass
class VerifyResult:
    ok: bool
    records: int
    problems: list[str] = field(default_factory=list)
    head_hash: str = GENESIS


def verify_audit_log(ws: Workspace) -> VerifyResult:
    """Recompute every hash and link; report each edited, inserted, reordered or deleted record."""
    problems: list[str] = []
    try:
        records = read_audit_log(ws)
    except MedcoreError as exc:
        return VerifyResult(False, 0, [str(exc)])
    previous, expected_seq = GENESIS, 1
    for line, record in enumerate(records, start=1):
        seq = record.get("seq")
        if record.get("hash") != record_hash(record):
            problems.append(f"line {line} (seq {seq}): content does not match its hash (record edited)")
        if record.get("prev_hash") != previous:
            problems.append(
                f"line {line} (seq {seq}): does not link to the record before it (record deleted or reordered)"
            )
        if seq != expected_seq:
            problems.append(
                f"line {line}: sequence number {seq}, expected {expected_seq} (record deleted or inserted)"
            )
        previous, expected_seq = record.get("hash"), (seq if isinstance(seq, int) else expected_seq) + 1
    head = read_head(ws)
    last = records[-1] if records else {"seq": 0, "hash": GENESIS}
    if (head.get("seq"), head.get("hash")) != (last.get("seq"), last.get("hash")):
        problems.append(
            f"the log ends at seq {last.get('seq')} but head.json records seq {head.get('seq')} (records deleted from the end)"
        )
    return VerifyResult(not problems, len(records), problems, last.get("hash", GENESIS))
