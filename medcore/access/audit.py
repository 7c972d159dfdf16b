"""The append-only audit log (audit/audit.jsonl), chained and signed with HMAC-SHA-256 under a key kept outside the
workspace (medcore.access.keys), with a signed head, a signed checkpoint every CHECKPOINT_EVERY records and
crash-safe appends.

A record is {seq, time, user, [role, os_user], kind, medcore_version, ...fields, prev_hash, hash, key_id, mac}:
- `hash` = sha256 over its canonical JSON without hash/key_id/mac: the record's name, which manifests and runs cite;
- `mac` = HMAC-SHA-256(key, canonical JSON of all but mac), so `prev_hash` is signed too. Editing, inserting,
  deleting or reordering records, or rewriting the log as a recomputed plain-hash chain, needs the key;
- `audit/head.json` (the last seq and hash, signed) makes cutting records off the end need the key too;
- `audit/checkpoints.jsonl` holds every CHECKPOINT_EVERY-th record's seq and hash, signed and chained to the
  checkpoint before: the unit to copy to an append-only sink elsewhere.
An append writes the record line (fsync), then the checkpoint when due, then the head (atomic rename). A crash in
between leaves one signed record ahead of the head, or a torn last line: the next append or verify repairs both
(`recover_audit_log`), so a crash never leaves a chain that fails for ever.

Not caught without a copy outside this machine (medcore.access.audit_sink exports one when configured): restoring
older signed copies of head.json and checkpoints.jsonl together with a log cut back to them, or deleting all three while nothing cites the deleted records (verification
checks the citations it is given: see medcore.phi.audit). Records hold counts, hashes, names and settings: never
PHI, never passwords.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from medcore.access.audit_sink import export_checkpoint, sink_problems
from medcore.access.keys import AuditKey, describe_key_source, load_audit_key
from medcore.errors import MedcoreError
from medcore.fileio import file_lock, write_bytes_atomic
from medcore.workspace import Workspace

if TYPE_CHECKING:
    from medcore.access.actor import Actor

GENESIS = "0" * 64
CHECKPOINT_EVERY = 100  # a checkpoint line per 100 records: small next to the log, frequent enough to export
SIGNATURE_FIELDS = ("hash", "key_id", "mac")
RESERVED = {"seq", "time", "user", "role", "os_user", "kind", "medcore_version", "prev_hash", *SIGNATURE_FIELDS}


def log_path(ws: Workspace) -> Path:
    return ws.audit / "audit.jsonl"


def head_path(ws: Workspace) -> Path:
    return ws.audit / "head.json"


def checkpoints_path(ws: Workspace) -> Path:
    return ws.audit / "checkpoints.jsonl"


def canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def record_hash(record: dict) -> str:
    """sha256 of a record's content (everything but its hash and signature): the name others cite it by."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k not in SIGNATURE_FIELDS})).hexdigest()


def unsigned(record: dict) -> bytes:
    return canonical({k: v for k, v in record.items() if k != "mac"})


def sign(key: AuditKey, record: dict) -> dict:
    """`record` with key_id and mac added (the mac covers every other field, prev_hash and hash included)."""
    signed = {k: v for k, v in record.items() if k != "mac"} | {"key_id": key.key_id}
    return signed | {"mac": key.sign(unsigned(signed))}


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry inside some containers
        return os.environ.get("USER", "unknown")


def locked(ws: Workspace):
    """One writer at a time across processes (console, CLI and jobs all append). Not re-entrant."""
    ws.audit.mkdir(parents=True, exist_ok=True)
    return file_lock(ws.audit / "audit.lock")


def append_audit_record(ws: Workspace, kind: str, *, actor: Actor | None = None, **fields) -> dict:
    """Append one signed record (e.g. kind="redaction", "login") and return it with its hash.

    Args:
        actor: who acted for a user (recorded as user and role, with the OS user next to them); without one the
            record names the OS user of this process.
        fields: JSON-serialisable and PHI-free: counts, content hashes, settings, dataset and user names.
    Raises:
        MedcoreError: a reserved field name, a non-JSON field, or no usable audit key.
    """
    from medcore import __version__

    reserved = RESERVED & fields.keys()
    if reserved:
        raise MedcoreError(f"Audit fields {sorted(reserved)} are set by the log itself; rename them.")
    who = {"user": current_user()}
    if actor is not None:
        who = {"user": actor.user, "role": actor.role, "os_user": current_user()}
    with locked(ws):
        key = key_for_append(ws)
        recover_audit_log(ws, key)
        last = checked_head(ws, key)
        record = {"seq": last["seq"] + 1, "time": time.time(), **who, "kind": kind, "medcore_version": __version__}
        record |= {**fields, "prev_hash": last["hash"]}
        try:
            record["hash"] = record_hash(record)
        except TypeError as exc:
            raise MedcoreError(f"Audit record '{kind}' has a field that is not JSON: {exc}.") from None
        record = sign(key, record)
        append_line(log_path(ws), canonical(record))
        finish_append(ws, key, record)
    return record


def key_for_append(ws: Workspace) -> AuditKey:
    """The key, created on first use only while the log is empty: a lost key must not be silently replaced."""
    empty = not log_path(ws).exists() or log_path(ws).stat().st_size == 0
    key = load_audit_key(ws, create=empty and not head_path(ws).exists())
    if key is None and "mac" not in read_head(ws):
        raise MedcoreError(legacy_message(ws))
    if key is None:
        raise MedcoreError(
            f"The audit key is missing ({describe_key_source()} does not exist) but {log_path(ws)} already holds "
            "signed records. Restore the key file (mode 0600) from backup, or set MEDCORE_AUDIT_KEY to that key."
        )
    return key


def checked_head(ws: Workspace, key: AuditKey) -> dict:
    """The head to append after, refusing to extend a log this key did not sign (a wrong key mixes key ids)."""
    head = read_head(ws)
    if not head_path(ws).exists() or key.verify(unsigned(head), head.get("mac")):
        return head
    if "mac" not in head:
        raise MedcoreError(legacy_message(ws))
    raise MedcoreError(
        f"The audit head {head_path(ws)} is not signed by the audit key in use ({describe_key_source()}): a wrong "
        "key, or the log was tampered with. Nothing was recorded; run `medcore audit verify`."
    )


def legacy_message(ws: Workspace) -> str:
    return (
        f"The audit log {log_path(ws)} predates HMAC signing: check it with `medcore audit verify`, then sign it "
        "with `medcore audit seal` before anything new is recorded."
    )


def append_line(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data + b"\n")  # one write: a crash leaves at most one torn last line, repaired on recovery
        handle.flush()
        os.fsync(handle.fileno())


def finish_append(ws: Workspace, key: AuditKey, record: dict) -> None:
    """After the record line: its checkpoint when due, then the head (the step that makes the append final)."""
    if record["seq"] % CHECKPOINT_EVERY == 0:
        write_checkpoint(ws, key, record)
    write_head(ws, key, record)


def write_checkpoint(ws: Workspace, key: AuditKey, record: dict) -> None:
    checkpoints = read_jsonl(checkpoints_path(ws))
    if checkpoints and checkpoints[-1].get("seq") == record["seq"]:
        return  # written before a crash cut the append short of its head
    previous = checkpoints[-1].get("mac", GENESIS) if checkpoints else GENESIS
    checkpoint = {"seq": record["seq"], "hash": record["hash"], "time": time.time(), "prev_mac": previous}
    line = canonical(sign(key, checkpoint))
    append_line(checkpoints_path(ws), line)
    export_checkpoint(line)  # a copy outside the workspace, when $MEDCORE_AUDIT_SINK names one


def write_head(ws: Workspace, key: AuditKey, record: dict) -> None:
    head = sign(key, {"seq": record["seq"], "hash": record["hash"], "time": time.time()})
    write_bytes_atomic(head_path(ws), json.dumps(head, indent=2, sort_keys=True).encode())


def read_head(ws: Workspace) -> dict:
    """The head as stored ({"seq": 0, "hash": GENESIS} before the first record)."""
    path = head_path(ws)
    if not path.exists():
        return {"seq": 0, "hash": GENESIS}
    try:
        head = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise MedcoreError(
            f"The audit head {path} is not valid JSON: it was edited. Run `medcore audit verify`."
        ) from None
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int):
        raise MedcoreError(f"The audit head {path} has no sequence number: it was edited. Run `medcore audit verify`.")
    return head


def read_jsonl(path: Path) -> list[dict]:
    """The JSON lines of `path`; a last line without its newline is an interrupted append, not a record: skipped."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    items = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] is b"" or the torn tail of a crashed write
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError:
            raise MedcoreError(f"Audit file {path} line {number} is not valid JSON: the file was edited.") from None
    return items


def read_audit_log(ws: Workspace) -> list[dict]:
    """Every record, oldest first (unparseable lines raise with their line number)."""
    return read_jsonl(log_path(ws))


def recover_audit_log(ws: Workspace, key: AuditKey) -> list[str]:
    """Finish or undo an append a crash interrupted (call under `locked`); returns what was repaired.

    A torn last line (no newline) is cut off unless it is a complete signed record; one signed record that links to
    the head but is not yet in it gets its checkpoint and head written. Nothing else is touched: more than one record
    beyond the head, or an unsigned one, is left for verification to report.
    """
    try:
        head = read_head(ws)
    except MedcoreError:
        return []
    if head_path(ws).exists() and not key.verify(unsigned(head), head.get("mac")):
        return []  # a wrong key or a tampered head: repair nothing (it could cut a good record), let verify report
    notes = [note for path in (log_path(ws), checkpoints_path(ws)) if (note := repair_torn_tail(path, key))]
    if not log_path(ws).exists():
        return notes
    tail = read_tail(log_path(ws), 2)  # only the end is read: an append costs the same on a log of any length
    try:
        records = [json.loads(line) for line in tail.lines]
    except ValueError:
        return notes
    if not records or not isinstance(records[-1], dict) or records[-1].get("seq") != head["seq"] + 1:
        return notes
    last, before = records[-1], records[-2] if len(records) > 1 else {"hash": GENESIS}
    if head_path(ws).exists():
        head_ok = isinstance(before, dict) and before.get("hash") == head["hash"]
    else:  # the very first append; with checkpoints about, a missing head was deleted, not never written
        head_ok = tail.whole and len(records) == 1 and not checkpoints_path(ws).exists()
    if head_ok and last.get("prev_hash") == head["hash"] and valid(key, last):
        finish_append(ws, key, last)
        notes.append(f"completed the interrupted append of seq {last['seq']} (its head was not written)")
    return notes


class Tail(NamedTuple):
    lines: list[bytes]  # the last complete lines asked for, oldest first
    torn: bytes  # what follows the last newline: the remains of an interrupted append, if any
    torn_at: int  # the file offset where `torn` starts
    whole: bool  # `lines` are all the file's lines


def read_tail(path: Path, count: int, block: int = 1 << 16) -> Tail:
    """The end of a JSON-lines file, read backwards in blocks until `count` complete lines are in hand."""
    with open(path, "rb") as handle:
        end = size = handle.seek(0, os.SEEK_END)
        data = b""
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - block)
            handle.seek(start)
            data = handle.read(end - start) + data
            end = start
    complete = data.rfind(b"\n") + 1
    pieces = data[:complete].split(b"\n")[:-1]
    lines = [line for line in (pieces[1:] if end > 0 else pieces) if line.strip()]  # a first piece may be cut
    return Tail(lines[-count:] if count else [], data[complete:], size - (len(data) - complete), end == 0)


def repair_torn_tail(path: Path, key: AuditKey) -> str:
    if not path.exists():
        return ""
    tail = read_tail(path, 0)
    if not tail.torn:
        return ""
    try:
        whole = valid(key, json.loads(tail.torn))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        whole = False
    with open(path, "r+b") as handle:
        if whole:  # written in full, only the newline missing
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
        else:
            handle.truncate(tail.torn_at)
        handle.flush()
        os.fsync(handle.fileno())
    return f"{'completed' if whole else 'removed'} the torn last line of {path.name} left by an interrupted append"


def valid(key: AuditKey, item: object) -> bool:
    """Signed with this key, and (for a record) its hash matches its content."""
    if not isinstance(item, dict) or not key.verify(unsigned(item), item.get("mac")):
        return False
    return "prev_hash" not in item or item.get("hash") == record_hash(item)


@dataclass
class VerifyResult:
    ok: bool
    records: int
    problems: list[str] = field(default_factory=list)
    head_hash: str = GENESIS
    notes: list[str] = field(default_factory=list)  # repairs of interrupted appends: not problems
    checkpoints: int = 0
    key_id: str = ""


def verify_chain(ws: Workspace, references: Iterable[tuple[str, str]] = ()) -> VerifyResult:
    """Check every record's signature, hash and link, the head, the checkpoints and that each cited hash is logged.

    Args:
        references: (audit hash, who cites it, e.g. "dataset 'notes' (manifest.json)") pairs.
    """
    try:
        with locked(ws):
            key = load_audit_key(ws, create=False)
            notes = recover_audit_log(ws, key) if key else []
            records, checkpoints = read_audit_log(ws), read_jsonl(checkpoints_path(ws))
            head = read_head(ws) if head_path(ws).exists() else None
    except MedcoreError as exc:
        return VerifyResult(False, 0, [str(exc)])
    problems = key_problems(ws, key, records, head or checkpoints)
    if key is not None and not problems:
        problems += check_records(records, key) + check_head(head, records, key)
        problems += check_checkpoints(checkpoints, records, key) + sink_problems(checkpoints)
    logged = {r.get("hash") for r in records}
    for cited, where in references:
        if cited not in logged:
            problems.append(f"{where} cites audit record {cited[:16]}, which is not in the log (records deleted)")
    last = records[-1].get("hash", GENESIS) if records else GENESIS
    return VerifyResult(not problems, len(records), problems, last, notes, len(checkpoints), key.key_id if key else "")


def key_problems(ws: Workspace, key: AuditKey | None, records: list[dict], other_files: object) -> list[str]:
    """A missing or wrong key, said once (rather than as every record failing its signature)."""
    if key is None and records and not any("mac" in r for r in records):
        return [legacy_message(ws)]
    if key is None and (records or other_files):
        return [
            f"no audit key: {describe_key_source()} does not exist, so the {len(records)} records cannot be verified; "
            "restore the key file (mode 0600) from backup or set MEDCORE_AUDIT_KEY to the key this log was written with"
        ]
    foreign = [r for r in records if r.get("key_id") not in (None, key.key_id)] if key else []
    if foreign:
        return [
            f"{len(foreign)} of {len(records)} records were signed with audit key {foreign[0].get('key_id')}, but the "
            f"key in use ({describe_key_source()}) is {key.key_id}: wrong audit key; use the key this log was written with"
        ]
    return []


def check_records(records: list[dict], key: AuditKey) -> list[str]:
    problems = []
    previous, expected_seq = GENESIS, 1
    for line, record in enumerate(records, start=1):
        seq = record.get("seq")
        where = f"line {line} (seq {seq})"
        if record.get("hash") != record_hash(record):
            problems.append(f"{where}: content does not match its hash (record edited)")
        elif "mac" not in record:
            problems.append(
                f"{where}: not signed: written by a MedCore before HMAC chaining, or forged "
                "(`medcore audit seal` signs a whole pre-HMAC log you trust)"
            )
        elif not key.verify(unsigned(record), record.get("mac")):
            problems.append(
                f"{where}: signature does not match its content (record edited and re-hashed without the key)"
            )
        if record.get("prev_hash") != previous:
            problems.append(f"{where}: does not link to the record before it (record deleted or reordered)")
        if seq != expected_seq:
            problems.append(
                f"line {line}: sequence number {seq}, expected {expected_seq} (record deleted or inserted)"
            )
        previous, expected_seq = record.get("hash"), (seq if isinstance(seq, int) else expected_seq) + 1
    return problems


def check_head(head: dict | None, records: list[dict], key: AuditKey) -> list[str]:
    last = records[-1] if records else {"seq": 0, "hash": GENESIS}
    if head is None:
        return [f"head.json is missing but the log holds {len(records)} records (head deleted)"] if records else []
    problems = []
    if not key.verify(unsigned(head), head.get("mac")):
        problems.append(
            "head.json is not signed by the audit key (head.json rewritten, or written before HMAC chaining)"
        )
    if (head.get("seq"), head.get("hash")) != (last.get("seq"), last.get("hash")):
        cause = "records deleted from the end" if head.get("seq", 0) > last.get("seq", 0) else "head.json rewritten"
        problems.append(f"the log ends at seq {last.get('seq')} but head.json records seq {head.get('seq')} ({cause})")
    return problems


def check_checkpoints(checkpoints: list[dict], records: list[dict], key: AuditKey) -> list[str]:
    problems, previous = [], GENESIS
    hashes = {r.get("seq"): r.get("hash") for r in records}
    last_seq = records[-1].get("seq", 0) if records else 0
    for number, checkpoint in enumerate(checkpoints, start=1):
        seq = checkpoint.get("seq")
        if not key.verify(unsigned(checkpoint), checkpoint.get("mac")) or checkpoint.get("prev_mac") != previous:
            problems.append(f"checkpoint {number} (seq {seq}) is not signed or not chained (checkpoints edited)")
        elif seq not in hashes:
            problems.append(f"checkpoint {number} names seq {seq}, which is not in the log (records deleted)")
        elif hashes[seq] != checkpoint.get("hash"):
            problems.append(f"checkpoint {number}: seq {seq} in the log is not the record it signed (record replaced)")
        previous = checkpoint.get("mac")
    due = range(CHECKPOINT_EVERY, last_seq + 1, CHECKPOINT_EVERY) if isinstance(last_seq, int) else ()
    missing = sorted(set(due) - {c.get("seq") for c in checkpoints})
    if missing:
        problems.append(f"no checkpoint for seq {', '.join(map(str, missing[:5]))} (checkpoints deleted)")
    return problems


def seal_audit_log(ws: Workspace, actor: Actor | None = None) -> int:
    """Sign a log written before HMAC chaining (every record unsigned, its plain chain intact); returns the count.

    The signer vouches that the log was not altered before today: the seal records when and by whom.
    """
    with locked(ws):
        records = read_audit_log(ws)
        if not records or all("mac" in r for r in records):
            return 0
        if any("mac" in r for r in records):
            raise MedcoreError("Only a log with no signed records can be sealed; this one mixes both: restore it.")
        key = load_audit_key(ws, create=True)
        broken = [p for p in check_records(records, key) if "not signed" not in p]
        legacy_head = read_head(ws)
        if broken or (legacy_head.get("seq"), legacy_head.get("hash")) != (records[-1]["seq"], records[-1]["hash"]):
            first = broken[0] if broken else "head.json does not match the last record"
            raise MedcoreError(f"The pre-HMAC log is not intact ({first}); restore it from backup before sealing.")
        signed = [sign(key, r) for r in records]
        write_bytes_atomic(log_path(ws), b"".join(canonical(r) + b"\n" for r in signed))
        checkpoints_path(ws).unlink(missing_ok=True)
        for record in signed:
            if record["seq"] % CHECKPOINT_EVERY == 0:
                write_checkpoint(ws, key, record)
        write_head(ws, key, signed[-1])
    append_audit_record(ws, "audit_sealed", actor=actor, sealed=len(records), last_sealed_hash=records[-1]["hash"])
    return len(records)
