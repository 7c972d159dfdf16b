"""The audit log's HMAC key: from $MEDCORE_AUDIT_KEY, else a 0600 key file outside the workspace, created on first use.

Without the key nobody can append a record, re-sign an edited one or forge a head that verification accepts. The key
file defaults to `<config dir>/audit.key` ($MEDCORE_AUDIT_KEY_FILE overrides it): back it up with the workspace
backups but never inside the workspace. A lost key cannot be replaced for an existing log: records signed with it can
no longer be verified.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from medcore.access.config import SecretSource
from medcore.errors import MedcoreError
from medcore.workspace import Workspace

KEY_ENV = "MEDCORE_AUDIT_KEY"
KEY_FILE_ENV = "MEDCORE_AUDIT_KEY_FILE"
KEY_BYTES = 32  # HMAC-SHA-256 keys longer than the 64-byte block add nothing; 32 random bytes = the hash's strength
NEW_KEY_HINT = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class AuditKey:
    """An HMAC-SHA-256 key and where it came from (for messages; the secret never appears in a repr)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A public fingerprint written into records, so a wrong key is reported as such, not as edits."""
        return self.sign(b"medcore audit key id")[:16]

    def sign(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, mac: object) -> bool:
        return isinstance(mac, str) and hmac.compare_digest(self.sign(data), mac)


AUDIT_SECRET = SecretSource("audit key", KEY_ENV, KEY_FILE_ENV, "audit.key")


def describe_key_source() -> str:
    return AUDIT_SECRET.describe()


def load_audit_key(ws: Workspace, *, create: bool) -> AuditKey | None:
    """The audit key; None when there is none yet and `create` is False.

    Raises MedcoreError for a malformed key, a key file that others can read or one inside the workspace.
    """
    found = AUDIT_SECRET.read(ws, create=create, new=lambda: secrets.token_hex(KEY_BYTES).encode() + b"\n")
    if found is None:
        return None
    text, source = found
    return AuditKey(parse_key(text.strip(), source), source)


def parse_key(text: str, source: str) -> bytes:
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < KEY_BYTES:
        raise MedcoreError(
            f"The audit key in {source} must be at least {2 * KEY_BYTES} hex characters ({KEY_BYTES} bytes); "
            f"make one with `{NEW_KEY_HINT}`, or restore the key this log was written with."
        )
    return secret
