"""Encryption at rest of raw (un-redacted) dataset splits: AES-256-GCM in framed segments, decrypted only in memory.

Off unless $MEDCORE_ENCRYPT_RAW is set (1/true/yes/on). The key comes from $MEDCORE_DATA_KEY (base64 of 32 bytes),
else a 0600 key file outside the workspace ($MEDCORE_DATA_KEY_FILE, default `<config dir>/data.key`), created on first
use, as the audit key is (medcore.access.keys). Lose the key and the encrypted raw data is lost with it.

An encrypted file is HEADER then segments. HEADER = MAGIC, format version, segment size, key id (a fingerprint of the
key, so a wrong key is named as such before anything is decrypted) and a random file id. Each segment is a fresh
96-bit nonce and the AES-GCM ciphertext of up to SEGMENT_BYTES of plaintext, with the header, the segment's index and
a last-segment flag as associated data: an edited byte, a dropped or reordered segment, a segment taken from another
file, or a file cut at a segment boundary all fail authentication. Readers dispatch on MAGIC, never on a file name.
Redacted datasets, run outputs and evaluation predictions are written plain.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

from medcore.access.config import SecretSource, config_dir
from medcore.errors import MedcoreError
from medcore.fileio import write_bytes_atomic
from medcore.workspace import Workspace

ENCRYPT_ENV = "MEDCORE_ENCRYPT_RAW"
KEY_ENV = "MEDCORE_DATA_KEY"
KEY_FILE_ENV = "MEDCORE_DATA_KEY_FILE"
KEY_BYTES = 32  # AES-256
NEW_KEY_HINT = "python -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())'"
MAGIC = b"MCENC"
VERSION = 1
SEGMENT_BYTES = 1 << 20  # 1 MiB of plaintext per segment: far below GCM's per-nonce limit, small enough to stream
NONCE_BYTES = 12  # GCM's standard 96-bit nonce, random per segment
TAG_BYTES = 16
KEY_ID_BYTES = 8
FILE_ID_BYTES = 16
HEADER = struct.Struct(f">{len(MAGIC)}sBI{KEY_ID_BYTES}s{FILE_ID_BYTES}s")
TRUE_WORDS, FALSE_WORDS = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class DataKey:
    """An AES-256 key and where it came from (for messages; the secret never appears in a repr)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A public fingerprint: recorded in the manifest and in each file's header, never enough to decrypt."""
        return hmac.new(self.secret, b"medcore data key id", hashlib.sha256).hexdigest()[: 2 * KEY_ID_BYTES]


def encryption_enabled() -> bool:
    """Whether raw datasets are written encrypted ($MEDCORE_ENCRYPT_RAW)."""
    value = os.environ.get(ENCRYPT_ENV, "").strip().lower()
    if value not in TRUE_WORDS | FALSE_WORDS:
        raise MedcoreError(f"{ENCRYPT_ENV}={value!r} is not understood: set it to 1 (encrypt raw data) or 0 (do not).")
    return value in TRUE_WORDS


DATA_SECRET = SecretSource("data key", KEY_ENV, KEY_FILE_ENV, "data.key")


def load_data_key(ws: Workspace | None, *, create: bool) -> DataKey | None:
    """The data key; None when there is none yet and `create` is False.

    `ws` (when known) is the workspace the key file must lie outside of.
    Raises MedcoreError for a malformed key, a key file that others can read or one inside the workspace.
    """
    found = DATA_SECRET.read(ws, create=create, new=lambda: base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    if found is None:
        return None
    text, source = found
    return DataKey(parse_key(text, source), source)


def parse_key(text: str, source: str) -> bytes:
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != KEY_BYTES:
        raise MedcoreError(
            f"The data key in {source} must be base64 of exactly {KEY_BYTES} bytes; make one with `{NEW_KEY_HINT}`, "
            "or restore the key the raw datasets were written with."
        )
    return secret


def encrypt_bytes(data: bytes, key: DataKey) -> bytes:
    """`data` as an encrypted file's bytes (header, then one or more segments; empty data still has one)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = HEADER.pack(MAGIC, VERSION, SEGMENT_BYTES, bytes.fromhex(key.key_id), secrets.token_bytes(FILE_ID_BYTES))
    aead, view = AESGCM(key.secret), memoryview(data)
    starts = range(0, max(len(data), 1), SEGMENT_BYTES)
    parts = [header]
    for index, start in enumerate(starts):
        nonce, ad = secrets.token_bytes(NONCE_BYTES), segment_ad(header, index, last=index == len(starts) - 1)
        parts += [nonce, aead.encrypt(nonce, bytes(view[start : start + SEGMENT_BYTES]), ad)]
    return b"".join(parts)


def segment_ad(header: bytes, index: int, last: bool) -> bytes:
    """Associated data binding a segment to its file, its place and whether it ends the file."""
    return header + struct.pack(">QB", index, last)


def decrypt_bytes(blob: bytes, key: DataKey | None, what: str) -> bytes:
    """The plaintext of an encrypted file's bytes, in memory. `what` names the file in messages ("Dataset 'notes'").

    Raises:
        MedcoreError: no key, the wrong key, or bytes that fail authentication (edited, truncated, reordered).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _, version, segment, key_id, _ = read_header(blob, what)
    if version != VERSION:
        raise MedcoreError(f"{what} is encrypted in format version {version}; this MedCore reads {VERSION}. Upgrade.")
    check_key(key, key_id.hex(), what)
    header, body = blob[: HEADER.size], memoryview(blob)[HEADER.size :]
    step = NONCE_BYTES + segment + TAG_BYTES
    starts = range(0, max(len(body), 1), step)
    aead, plain = AESGCM(key.secret), []
    for index, start in enumerate(starts):
        frame = body[start : start + step]
        if len(frame) < NONCE_BYTES + TAG_BYTES:
            raise damaged(what)
        nonce, sealed = bytes(frame[:NONCE_BYTES]), bytes(frame[NONCE_BYTES:])
        try:
            plain.append(aead.decrypt(nonce, sealed, segment_ad(header, index, index == len(starts) - 1)))
        except InvalidTag:
            raise damaged(what) from None
    return b"".join(plain)


def read_header(blob: bytes, what: str) -> tuple:
    if len(blob) < HEADER.size or not blob.startswith(MAGIC):
        raise damaged(what)
    return HEADER.unpack_from(blob)


def check_key(key: DataKey | None, key_id: str, what: str) -> None:
    """Refuse, naming the dataset and how to give the key, when there is no key or it is not the one used."""
    how = (
        f"set {KEY_ENV} (base64 of {KEY_BYTES} bytes) or {KEY_FILE_ENV} (a 0600 key file outside the workspace; "
        f"default {config_dir() / DATA_SECRET.file_name}) to the key it was written with"
    )
    if key is None:
        raise MedcoreError(f"{what} is encrypted at rest (key id {key_id}) and no data key is set: {how}.")
    if key.key_id != key_id:
        raise MedcoreError(
            f"{what} is encrypted at rest with key id {key_id}, but the key in {key.source} has key id {key.key_id}: "
            f"{how}. Without that key the raw data cannot be read."
        )


def damaged(what: str) -> MedcoreError:
    return MedcoreError(
        f"{what} is encrypted at rest but fails authentication: it was truncated, edited or pieced together from "
        "other files. Restore it from a backup or import the data again."
    )


def is_encrypted_file(path: Path) -> bool:
    """Whether the file starts with the encrypted-file MAGIC (content, not name, decides)."""
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def describe_file(path: Path) -> str:
    """`datasets/NAME/SPLIT.parquet` -> "Dataset 'NAME' (SPLIT split)"; any other file by its name."""
    path = Path(path)
    if path.parent.parent.name == "datasets":
        return f"Dataset '{path.parent.name}' ({path.stem} split)"
    return f"File {path.name}"


def read_decrypted(path: Path, ws: Workspace | None = None) -> bytes:
    """An encrypted file's plaintext, in memory only."""
    path = Path(path)
    what = describe_file(path)
    blob = path.read_bytes()
    read_header(blob, what)  # a damaged header says so before a missing key is asked for
    return decrypt_bytes(blob, load_data_key(ws, create=False), what)


def parquet_source(path: Path, ws: Workspace | None = None):
    """What pyarrow and pandas should read a split from: the path itself when plain, else its plaintext in memory.

    The one door every reader of a raw split goes through (load_split, the redaction job's readers, label counts).
    """
    import pyarrow as pa

    path = Path(path)
    return pa.BufferReader(read_decrypted(path, ws)) if is_encrypted_file(path) else path


def read_split_table(path: Path, columns: list[str] | None = None, ws: Workspace | None = None):
    """A split file as a pyarrow Table (only `columns` when given), decrypted in memory when encrypted."""
    import pyarrow.parquet as pq

    return pq.read_table(parquet_source(path, ws), columns=columns)


def write_parquet(frame, path: Path, key: DataKey | None) -> None:
    """Write `frame` as Parquet at `path`: encrypted under `key` (never plain on disk on the way), else plain."""
    if key is None:
        frame.to_parquet(path, index=False)
        return
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes_atomic(Path(path), encrypt_bytes(buffer.getvalue(), key))


def key_for_raw_writes(ws: Workspace) -> DataKey | None:
    """The key raw datasets are written with now: None when encryption is off; created on first use when on."""
    return load_data_key(ws, create=True) if encryption_enabled() else None


def check_dataset_key(ws: Workspace, name: str, key_id: str | None) -> None:
    """Refuse early, naming dataset `name`, when it is encrypted (`key_id` from its manifest) and the key is missing
    or wrong: before a job starts or anything is written."""
    if key_id:
        check_key(load_data_key(ws, create=False), key_id, f"Dataset '{name}'")
