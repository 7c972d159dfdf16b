"""The PHI side of the audit log: the surrogate salt, and verification that also checks every audit record a
dataset manifest or a run folder cites is in the log.

The log itself (HMAC-signed records, head and checkpoints, crash-safe appends) is medcore.access.audit; its
functions are re-exported here for the PHI pipeline and the training gate. Records hold counts, content hashes and
settings only: never PHI, never surrogate mappings.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from medcore.access.audit import (  # noqa: F401  (re-exported for the PHI pipeline, the gate and the console)
    GENESIS,
    VerifyResult,
    append_audit_record,
    canonical,
    head_path,
    log_path,
    read_audit_log,
    record_hash,
    seal_audit_log,
    verify_chain,
)
from medcore.data.manifest import list_dataset_names
from medcore.errors import MedcoreError
from medcore.workspace import Workspace

SALT_BYTES = 32


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


def audit_references(ws: Workspace) -> Iterator[tuple[str, str]]:
    """(audit hash, who cites it) for every dataset manifest's `redaction.audit_hash` and every run folder JSON file
    with a top-level `audit_hash` (e.g. redaction_override.json). Unreadable files are skipped: not audit evidence."""
    for name in list_dataset_names(ws):
        redaction = read_json(ws.datasets / name / "manifest.json").get("redaction")
        cited = redaction.get("audit_hash") if isinstance(redaction, dict) else None
        if isinstance(cited, str) and cited:
            yield cited, f"dataset '{name}' (manifest.json)"
    for path in sorted(ws.runs.glob("*/*.json")) if ws.runs.exists() else []:
        cited = read_json(path).get("audit_hash")
        if isinstance(cited, str) and cited:
            yield cited, f"run '{path.parent.name}' ({path.name})"


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def verify_audit_log(ws: Workspace, *, citations: bool = True) -> VerifyResult:
    """Check every record's signature and link, the head and checkpoints, and (with `citations`) that every record a
    dataset or run cites is in the log; report each edited, inserted, reordered or deleted record.

    The training gate passes citations=False: it checks its own dataset's citation, with a message about that
    dataset, and one hand-edited manifest must not block training on every other dataset.
    """
    return verify_chain(ws, list(audit_references(ws)) if citations else ())
