"""Encryption at rest of raw datasets: AES-GCM segments that detect tampering, an import that leaves no note text on
disk, redaction to a plain dataset, the console showing the rows, and a missing or wrong key refused and audited."""

from __future__ import annotations

import base64
import html
import os
import re
import secrets

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from app_helpers import open_page, texts, widget
from polling import wait_for

from medcore.access.actor import local_admin
from medcore.access.audit import read_audit_log
from medcore.data import encryption
from medcore.data.encryption import MAGIC, SEGMENT_BYTES, DataKey, decrypt_bytes, encrypt_bytes, load_data_key
from medcore.data.importer import import_dataset
from medcore.data.label_stats import label_counts
from medcore.data.manifest import SPLITS, ColumnMapping, load_split, read_manifest, split_path
from medcore.errors import MedcoreError
from medcore.phi import detect
from medcore.phi.datasets import redact_dataset
from medcore.phi.job import redaction_status, start_redaction
from medcore.phi.verify import verify_redaction
from medcore.train.spec import load_spec
from medcore.train.validate import validate_spec
from medcore.workspace import get_workspace

CANARY = "Zebediah Quux"
STEP = encryption.NONCE_BYTES + SEGMENT_BYTES + encryption.TAG_BYTES  # one full segment on disk


def new_key() -> DataKey:
    return DataKey(secrets.token_bytes(32), "test")


def canary_frame(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"Seen by Dr. {CANARY} on 03/{i + 1:02d}/2023, stable. Patient {CANARY}." for i in range(n)],
            "label": ["cardio", "renal"] * (n // 2),
            "patient_name": [CANARY] * n,
        }
    )


def files_with_canary(root) -> list[str]:
    """Every file under `root` whose bytes hold the canary (in UTF-8 or UTF-16, as any writer might store it)."""
    needles = [CANARY.encode(), CANARY.encode("utf-16-le")]
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            data = open(os.path.join(folder, name), "rb").read()
            found += [os.path.join(folder, name)] if any(n in data for n in needles) else []
    return found


@pytest.fixture
def encrypting(workspace, tmp_path, monkeypatch):
    """Encryption on, the key in a key file outside the workspace (created on first use)."""
    monkeypatch.setenv(encryption.ENCRYPT_ENV, "1")
    monkeypatch.delenv(encryption.KEY_ENV, raising=False)
    monkeypatch.setenv(encryption.KEY_FILE_ENV, str(tmp_path / "keys" / "data.key"))
    return workspace


@pytest.fixture
def rules_alone(monkeypatch):
    """Detection by the rules and Presidio without the learned tagger: fast, and enough for the planted names."""
    monkeypatch.setattr(detect, "tagger_for", lambda config: (None, None))


# ---- the file format ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, SEGMENT_BYTES, SEGMENT_BYTES + 1, 2 * SEGMENT_BYTES + 7])
def test_bytes_round_trip_at_every_size(size):
    key, data = new_key(), secrets.token_bytes(size)
    blob = encrypt_bytes(data, key)
    assert blob.startswith(MAGIC) and (size < 16 or data[:16] not in blob)
    segments = max(1, -(-size // SEGMENT_BYTES))
    assert len(blob) == encryption.HEADER.size + size + segments * (encryption.NONCE_BYTES + encryption.TAG_BYTES)
    assert decrypt_bytes(blob, key, "Dataset 'x'") == data
    assert encrypt_bytes(data, key) != blob  # fresh nonces and file id every time


def three_segments() -> tuple[DataKey, bytes]:
    key = new_key()
    return key, encrypt_bytes(secrets.token_bytes(2 * SEGMENT_BYTES + 100), key)


def flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1 :]


def swap_first_two(blob: bytes) -> bytes:
    head, body = blob[: encryption.HEADER.size], blob[encryption.HEADER.size :]
    return head + body[STEP : 2 * STEP] + body[:STEP] + body[2 * STEP :]


TAMPERINGS = {
    "one byte of a segment": lambda blob: flip(blob, encryption.HEADER.size + STEP + 5000),
    "one byte of the file id": lambda blob: flip(blob, encryption.HEADER.size - 1),
    "the last segment cut short": lambda blob: blob[:-10],
    "the last segment dropped": lambda blob: blob[: encryption.HEADER.size + 2 * STEP],
    "every segment dropped": lambda blob: blob[: encryption.HEADER.size],
    "two segments swapped": swap_first_two,
    "the magic": lambda blob: b"X" + blob[1:],
}


@pytest.mark.parametrize("how", TAMPERINGS)
def test_tampering_is_detected(how):
    key, blob = three_segments()
    with pytest.raises(MedcoreError, match=r"Dataset 'notes' is encrypted at rest but fails authentication"):
        decrypt_bytes(TAMPERINGS[how](blob), key, "Dataset 'notes'")


def test_a_segment_from_another_file_is_detected():
    key, blob = three_segments()
    _, other = key, encrypt_bytes(secrets.token_bytes(2 * SEGMENT_BYTES + 100), key)
    start = encryption.HEADER.size + STEP
    spliced = blob[:start] + other[start : start + STEP] + blob[start + STEP :]
    with pytest.raises(MedcoreError, match="fails authentication"):
        decrypt_bytes(spliced, key, "Dataset 'notes'")


def test_a_wrong_or_missing_key_is_named_before_decrypting():
    key, blob = three_segments()
    wrong = new_key()
    with pytest.raises(
        MedcoreError, match=rf"with key id {key.key_id}, but the key in test has key id {wrong.key_id}"
    ):
        decrypt_bytes(blob, wrong, "Dataset 'notes'")
    with pytest.raises(MedcoreError, match=r"Dataset 'notes' is encrypted at rest .* no data key is set: set "):
        decrypt_bytes(blob, None, "Dataset 'notes'")


# ---- the key --------------------------------------------------------------------------------------


def test_key_file_is_created_private_outside_the_workspace_and_a_loose_one_is_refused(encrypting, tmp_path):
    path = tmp_path / "keys" / "data.key"
    assert load_data_key(encrypting, create=False) is None
    key = load_data_key(encrypting, create=True)
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    assert load_data_key(encrypting, create=True) == key  # created once, then read
    assert len(base64.b64decode(path.read_text())) == 32 and key.secret.hex() not in repr(key)
    path.chmod(0o644)
    with pytest.raises(MedcoreError, match=r"readable or writable by other users \(mode 644\).*chmod 600"):
        load_data_key(encrypting, create=False)


def test_a_key_file_inside_the_workspace_or_a_malformed_key_is_refused(encrypting, monkeypatch):
    monkeypatch.setenv(encryption.KEY_FILE_ENV, str(encrypting.root / "data.key"))
    with pytest.raises(MedcoreError, match="lies inside the workspace"):
        load_data_key(encrypting, create=True)
    assert not (encrypting.root / "data.key").exists()
    monkeypatch.setenv(encryption.KEY_ENV, "too-short")
    with pytest.raises(MedcoreError, match=r"MEDCORE_DATA_KEY must be base64 of exactly 32 bytes"):
        import_dataset(encrypting, canary_frame(), "notes", ColumnMapping(text="text", label="label"))
    assert not (encrypting.datasets / "notes").exists()


# ---- datasets -------------------------------------------------------------------------------------


def test_an_encrypted_import_leaves_no_text_on_disk_and_reads_back_the_same(encrypting, tmp_path, monkeypatch):
    mapping = ColumnMapping(text="text", label="label")
    manifest = import_dataset(encrypting, canary_frame(), "notes", mapping, actor=local_admin())
    assert manifest.encrypted and manifest.key_id == load_data_key(encrypting, create=False).key_id
    assert files_with_canary(encrypting.root) == []
    assert all(split_path(encrypting, "notes", s).read_bytes().startswith(MAGIC) for s in SPLITS)

    monkeypatch.setenv(encryption.ENCRYPT_ENV, "0")
    plain_ws = get_workspace(tmp_path / "plain")
    import_dataset(plain_ws, canary_frame(), "notes", mapping)
    assert split_path(plain_ws, "notes", "train").read_bytes().startswith(b"PAR1")
    for split in SPLITS:  # readers dispatch on content: encryption turned off since changes nothing for reading
        pd.testing.assert_frame_equal(load_split(encrypting, "notes", split), load_split(plain_ws, "notes", split))
    pd.testing.assert_frame_equal(label_counts(encrypting, "notes"), label_counts(plain_ws, "notes"))


def test_redaction_of_an_encrypted_dataset_is_plain_parquet_the_training_gate_accepts(encrypting, rules_alone):
    import_dataset(encrypting, canary_frame(), "notes", ColumnMapping(text="text", label="label"))
    manifest = redact_dataset(encrypting, "notes", drop=["patient_name"])
    assert not manifest.encrypted and manifest.key_id is None and manifest.redaction.status == "redacted"
    assert read_manifest(encrypting, "notes").encrypted  # the source stays encrypted
    path = split_path(encrypting, "notes-redacted", "train")
    assert path.read_bytes().startswith(b"PAR1")
    direct = pq.read_table(path).to_pandas()  # no MedCore in the way: notebooks and DuckDB read it as it is
    assert "[NAME]" in direct["text"].iloc[0] and len(direct) == manifest.rows["train"]
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall() == [(manifest.rows["train"],)]
    assert verify_redaction(encrypting, "notes-redacted").ok
    spec = {"task": "classification", "model": "minilm", "max_length": 32}
    validate_spec(load_spec({"dataset": "notes-redacted", **spec}), encrypting)  # the training gate accepts it
    # An admin's override trains on the raw dataset: the trainer's checks read its labels through the decryption.
    validate_spec(load_spec({"dataset": "notes", "allow_unredacted": True, **spec}), encrypting)
    assert files_with_canary(encrypting.root) == []


@pytest.mark.parametrize("key_problem", ["missing", "wrong"])
def test_a_missing_or_wrong_key_is_refused_audited_once_and_changes_nothing(encrypting, tmp_path, monkeypatch,
                                                                           key_problem):  # fmt: skip
    import_dataset(encrypting, canary_frame(), "notes", ColumnMapping(text="text", label="label"))
    if key_problem == "missing":
        monkeypatch.setenv(encryption.KEY_FILE_ENV, str(tmp_path / "elsewhere" / "data.key"))
        expected = r"Dataset 'notes' is encrypted at rest \(key id [0-9a-f]{16}\) and no data key is set: set "
    else:
        monkeypatch.setenv(encryption.KEY_ENV, base64.b64encode(secrets.token_bytes(32)).decode())
        expected = r"Dataset 'notes' is encrypted at rest with key id [0-9a-f]{16}, but the key in MEDCORE_DATA_KEY"
    before = sorted(p for p in encrypting.root.rglob("*") if encrypting.audit not in p.parents)
    records = len(read_audit_log(encrypting))
    with pytest.raises(MedcoreError, match=expected) as refused:
        start_redaction(encrypting, "notes", "safe-harbor", None, actor=local_admin())
    assert CANARY not in str(refused.value) and "MEDCORE_DATA_KEY_FILE" in str(refused.value)
    added = read_audit_log(encrypting)[records:]
    assert [(r["kind"], r["outcome"], r["dataset"]) for r in added] == [("redaction_started", "failed", "notes")]
    assert CANARY not in str(added)
    assert sorted(p for p in encrypting.root.rglob("*") if encrypting.audit not in p.parents) == before
    readers = (
        lambda: load_split(encrypting, "notes", "train"),
        lambda: label_counts(encrypting, "notes"),
        lambda: redact_dataset(encrypting, "notes"),  # the CLI's and the job's way in
    )
    for read in readers:
        with pytest.raises(MedcoreError, match=expected.replace("'notes'", r"'notes'( \(train split\))?")):
            read()
    assert not (encrypting.datasets / "notes-redacted").exists()


@pytest.mark.slow
def test_the_detached_redaction_job_reads_the_encrypted_dataset_with_the_inherited_key(encrypting):
    import_dataset(encrypting, canary_frame(), "notes", ColumnMapping(text="text", label="label"))
    job_id = start_redaction(encrypting, "notes", "safe-harbor", None, drop=["patient_name"])
    status = wait_for(
        lambda: (s := redaction_status(encrypting, job_id))["state"] in ("completed", "failed") and s,
        timeout=180,
        what="the redaction job",
    )
    assert status["state"] == "completed", status.get("error")
    assert split_path(encrypting, "notes-redacted", "test").read_bytes().startswith(b"PAR1")
    assert verify_redaction(encrypting, "notes-redacted").ok
    assert files_with_canary(encrypting.root) == []  # job log and status included


# ---- the console ----------------------------------------------------------------------------------


def test_an_encrypted_upload_is_unreadable_on_disk_and_round_trips_in_the_console(encrypting, rules_alone):
    at = open_page("data", timeout=120)
    at.file_uploader[0].set_value(("ward.csv", canary_frame().to_csv(index=False).encode(), "text/csv"))
    at = at.run()
    widget(at.text_input, "Dataset name").set_value("ward")
    at = widget(at.button, "Import").click().run()
    assert not at.exception and not at.error, texts(at, "error")
    assert read_manifest(encrypting, "ward").encrypted
    assert files_with_canary(encrypting.root) == []  # the upload was parsed in memory and written encrypted
    balance = next(d.value for d in at.dataframe if "total" in d.value.columns)
    assert balance["total"].sum() == 20  # the label counts were read through the decryption

    at = open_page("phi", timeout=120)
    assert not at.exception and not at.error, texts(at, "error")
    assert widget(at.selectbox, "Dataset").value == "ward"
    panes = [m.value for m in at.markdown if 'class="phi-text"' in m.value]
    shown = [html.unescape(re.sub(r"<[^>]+>", "", pane)) for pane in panes]
    assert len(shown) == 3 and all(f"Dr. {CANARY} on 03/" in text for text in shown)  # decrypted for the preview
    assert files_with_canary(encrypting.root) == []
