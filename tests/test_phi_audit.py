"""The HMAC-signed audit log: appends, verification, and detection of edited, deleted, reordered, truncated or
re-hashed records, of a wrong or missing key and of deleted records that manifests and runs still cite; crash
recovery of an append killed halfway."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys

import pytest

import medcore.access.audit as chain
from medcore.access.keys import AUDIT_SECRET, KEY_ENV, KEY_FILE_ENV
from medcore.cli import main
from medcore.errors import MedcoreError
from medcore.phi.audit import (
    append_audit_record,
    head_path,
    load_salt,
    log_path,
    read_audit_log,
    record_hash,
    verify_audit_log,
)


@pytest.fixture(autouse=True)
def audit_key_dir(tmp_path, monkeypatch):
    """Each test signs with its own key, in a private config folder next to (not inside) its workspace."""
    monkeypatch.setenv("MEDCORE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    return tmp_path / "config"


def fill(ws, n: int = 4) -> list[dict]:
    return [append_audit_record(ws, "redaction", input=f"file{i}.jsonl", counts={"NAME": i}) for i in range(n)]


def rewrite(ws, records: list[dict]) -> None:
    log_path(ws).write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))


def test_records_chain_and_verify(workspace):
    records = fill(workspace)
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert records[0]["medcore_version"] and records[0]["user"]
    result = verify_audit_log(workspace)
    assert result.ok and result.records == 4 and result.head_hash == records[-1]["hash"]


def test_an_edited_record_is_detected(workspace):
    fill(workspace)
    records = read_audit_log(workspace)
    records[1]["counts"] = {"NAME": 0}  # someone hides what was found
    rewrite(workspace, records)
    result = verify_audit_log(workspace)
    assert not result.ok
    assert any("seq 2" in p and "edited" in p for p in result.problems)


def test_an_edited_record_with_recomputed_hash_breaks_the_chain(workspace):
    fill(workspace)
    records = read_audit_log(workspace)
    records[1]["input"] = "other.jsonl"
    records[1]["hash"] = record_hash(records[1])
    rewrite(workspace, records)
    problems = verify_audit_log(workspace).problems
    assert any("seq 2" in p and "signature does not match" in p for p in problems)
    assert any("seq 3" in p and "does not link" in p for p in problems)


@pytest.mark.parametrize("index", [0, 2, 3])
def test_a_deleted_record_is_detected(workspace, index):
    fill(workspace)
    records = read_audit_log(workspace)
    del records[index]
    rewrite(workspace, records)
    assert not verify_audit_log(workspace).ok


def test_cli_verify_and_show(workspace, capsys):
    fill(workspace, 2)
    assert main(["audit", "verify"]) == 0
    assert main(["audit", "show"]) == 0
    out = capsys.readouterr().out
    assert "2 records" in out and "file1.jsonl" in out
    records = read_audit_log(workspace)
    rewrite(workspace, records[:1])
    assert main(["audit", "verify"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_corrupt_line_reports_its_number(workspace):
    fill(workspace, 2)
    with open(log_path(workspace), "a") as handle:
        handle.write("{broken\n")
    result = verify_audit_log(workspace)
    assert not result.ok and "line 3" in result.problems[0]


def test_reserved_fields_are_refused(workspace):
    with pytest.raises(MedcoreError, match="set by the log itself"):
        append_audit_record(workspace, "redaction", hash="x")


def test_salt_is_created_once_private_and_stable(workspace):
    salt = load_salt(workspace)
    path = workspace.audit / "salt.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(salt) == 32 and load_salt(workspace) == salt


def plain_chain(records: list[dict]) -> list[dict]:
    """What an attacker without the key can compute: the pre-HMAC chain (sha256 of each record, linked by seq)."""
    out, previous = [], chain.GENESIS
    for seq, record in enumerate(records, start=1):
        record = {k: v for k, v in record.items() if k not in chain.SIGNATURE_FIELDS}
        record |= {"seq": seq, "prev_hash": previous}
        record["hash"] = hashlib.sha256(chain.canonical(record)).hexdigest()
        out.append(record)
        previous = record["hash"]
    return out


def cite(ws, dataset_record: dict, run_record: dict) -> None:
    """A redacted dataset's manifest and a run's override file pointing at audit records, as the engine writes them."""
    folder = ws.datasets / "notes"
    folder.mkdir(parents=True)
    manifest = {"name": "notes", "redaction": {"status": "redacted", "audit_hash": dataset_record["hash"]}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    run = ws.runs / "run-1"
    run.mkdir(parents=True)
    (run / "redaction_override.json").write_text(json.dumps({"audit_hash": run_record["hash"], "seq": 2}))


def test_records_are_signed_with_a_private_key_outside_the_workspace(workspace, audit_key_dir):
    records = fill(workspace, 2)
    path = AUDIT_SECRET.path()
    assert path.parent == audit_key_dir and not path.resolve().is_relative_to(workspace.root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(len(r["mac"]) == 64 and r["key_id"] == records[0]["key_id"] for r in records)
    assert path.read_text().strip() not in log_path(workspace).read_text()


def test_a_reordered_log_is_detected(workspace):
    fill(workspace)
    records = read_audit_log(workspace)
    records[1], records[2] = records[2], records[1]
    rewrite(workspace, records)
    problems = verify_audit_log(workspace).problems
    assert any("does not link" in p and "reordered" in p for p in problems)


def test_deleting_the_last_record_and_moving_the_head_back_is_detected(workspace):
    """The attack that passed the plain chain: drop the last record, copy the previous seq and hash into head.json."""
    fill(workspace)
    records = read_audit_log(workspace)
    rewrite(workspace, records[:-1])
    head = json.loads(head_path(workspace).read_text()) | {"seq": records[-2]["seq"], "hash": records[-2]["hash"]}
    head_path(workspace).write_text(json.dumps(head))
    result = verify_audit_log(workspace)
    assert not result.ok and any("head.json is not signed" in p for p in result.problems)


def test_a_log_cut_short_mid_line_is_detected_not_repaired_away(workspace):
    fill(workspace)
    data = log_path(workspace).read_bytes()
    log_path(workspace).write_bytes(data[: len(data) * 2 // 3])  # truncated inside record 3
    result = verify_audit_log(workspace)
    assert not result.ok and result.records == 2
    assert any(
        "ends at seq 2 but head.json records seq 4 (records deleted from the end)" in p for p in result.problems
    )


@pytest.mark.parametrize("keep_signatures", [False, True])
def test_a_log_rewritten_as_a_recomputed_plain_hash_chain_fails(workspace, keep_signatures):
    records = fill(workspace)
    forged = plain_chain([r for r in records if r["seq"] != 2])  # record 2 removed, the rest re-hashed and re-linked
    if keep_signatures:  # the old key_id and mac copied over: they no longer match the content
        forged = [f | {"key_id": r["key_id"], "mac": r["mac"]} for f, r in zip(forged, records, strict=False)]
    rewrite(workspace, forged)
    head_path(workspace).write_text(json.dumps({"seq": forged[-1]["seq"], "hash": forged[-1]["hash"]}))
    result = verify_audit_log(workspace)
    assert not result.ok
    # unsigned: all three records; re-used signatures: the two records after the deletion (record 1 is unchanged)
    expected, count = ("signature does not match", 2) if keep_signatures else ("not signed", 3)
    assert sum(p.startswith("line") and expected in p for p in result.problems) == count
    assert any("head.json is not signed" in p for p in result.problems)


def test_deleting_log_and_head_while_a_manifest_and_a_run_cite_records_fails(workspace, capsys):
    records = fill(workspace, 3)
    cite(workspace, records[0], records[1])
    assert verify_audit_log(workspace).ok
    for path in workspace.audit.glob("*.json*"):
        path.unlink()
    result = verify_audit_log(workspace)
    assert not result.ok and result.records == 0
    assert any(
        f"dataset 'notes' (manifest.json) cites audit record {records[0]['hash'][:16]}" in p for p in result.problems
    )
    assert any("run 'run-1' (redaction_override.json) cites" in p for p in result.problems)
    assert main(["audit", "verify"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_deleted_or_edited_checkpoints_and_a_replayed_older_head_are_detected(workspace, monkeypatch):
    monkeypatch.setattr(chain, "CHECKPOINT_EVERY", 2)
    fill(workspace, 2)
    old_head = head_path(workspace).read_bytes()  # a signed head an attacker kept
    fill(workspace, 2)
    assert verify_audit_log(workspace).checkpoints == 2
    saved = chain.checkpoints_path(workspace).read_bytes()
    edited = [json.loads(line) for line in saved.splitlines()]
    edited[0]["time"] += 1
    chain.checkpoints_path(workspace).write_text("".join(json.dumps(c) + "\n" for c in edited))
    assert verify_audit_log(workspace).problems == [
        "checkpoint 1 (seq 2) is not signed or not chained (checkpoints edited)"
    ]
    chain.checkpoints_path(workspace).write_bytes(saved)
    rewrite(workspace, read_audit_log(workspace)[:2])
    head_path(workspace).write_bytes(old_head)
    problems = verify_audit_log(workspace).problems  # the head is genuine; the checkpoint of seq 4 gives it away
    assert problems == ["checkpoint 2 names seq 4, which is not in the log (records deleted)"]
    chain.checkpoints_path(workspace).unlink()
    assert verify_audit_log(workspace).problems == ["no checkpoint for seq 2 (checkpoints deleted)"]


def test_a_wrong_key_fails_verification_and_appends_nothing(workspace, monkeypatch):
    fill(workspace, 3)
    monkeypatch.setenv(KEY_ENV, "ab" * 32)
    result = verify_audit_log(workspace)
    assert not result.ok and len(result.problems) == 1
    assert "3 of 3 records were signed with audit key" in result.problems[0]
    assert "wrong audit key" in result.problems[0]
    with pytest.raises(MedcoreError, match="not signed by the audit key in use"):
        append_audit_record(workspace, "redaction", input="x")
    assert len(read_audit_log(workspace)) == 3


def test_a_missing_key_fails_verification_and_is_not_silently_replaced(workspace, capsys):
    fill(workspace, 2)
    AUDIT_SECRET.path().unlink()
    result = verify_audit_log(workspace)
    assert not result.ok and result.problems[0].startswith("no audit key:")
    with pytest.raises(MedcoreError, match="audit key is missing"):
        append_audit_record(workspace, "redaction", input="x")
    assert not AUDIT_SECRET.path().exists()
    assert main(["audit", "verify"]) == 1
    assert "no audit key" in capsys.readouterr().out


def test_a_key_from_the_environment_is_used_and_bad_keys_are_refused(workspace, monkeypatch):
    from medcore.access.keys import AuditKey

    monkeypatch.setenv(KEY_ENV, "cd" * 32)
    record = append_audit_record(workspace, "redaction", input="x")
    assert record["key_id"] == AuditKey(bytes.fromhex("cd" * 32), KEY_ENV).key_id and not AUDIT_SECRET.path().exists()
    assert verify_audit_log(workspace).ok
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(MedcoreError, match="at least 64 hex characters"):
        append_audit_record(workspace, "redaction", input="x")


def test_a_key_file_others_can_read_or_inside_the_workspace_is_refused(workspace, monkeypatch):
    fill(workspace, 1)
    AUDIT_SECRET.path().chmod(0o644)
    with pytest.raises(MedcoreError, match="chmod 600"):
        append_audit_record(workspace, "redaction", input="x")
    assert "chmod 600" in verify_audit_log(workspace).problems[0]
    monkeypatch.setenv(KEY_FILE_ENV, str(workspace.root / "audit.key"))
    with pytest.raises(MedcoreError, match="inside the workspace"):
        append_audit_record(workspace, "redaction", input="x")


KILL_BEFORE_HEAD = """
import os, signal, sys
import medcore.access.audit as chain
from medcore.workspace import get_workspace
chain.CHECKPOINT_EVERY = int(sys.argv[1])
chain.write_head = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # dies after the record (and checkpoint) line
chain.append_audit_record(get_workspace(), "redaction", input="killed.jsonl")
"""


@pytest.mark.parametrize(("then", "every"), [("verify", 100), ("append", 4)])  # 4: the checkpoint was written too
def test_an_append_killed_before_its_head_is_recovered(workspace, monkeypatch, then, every, capsys):
    monkeypatch.setattr(chain, "CHECKPOINT_EVERY", every)
    fill(workspace, 3)
    proc = subprocess.run([sys.executable, "-c", KILL_BEFORE_HEAD, str(every)], env=os.environ, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert len(read_audit_log(workspace)) == 4 and json.loads(head_path(workspace).read_text())["seq"] == 3
    if then == "append":
        assert append_audit_record(workspace, "redaction", input="next.jsonl")["seq"] == 5
        assert main(["audit", "verify"]) == 0
    else:
        assert main(["audit", "verify"]) == 0
        assert "Repaired: completed the interrupted append of seq 4" in capsys.readouterr().out
    result = verify_audit_log(workspace)
    assert result.ok and result.records == (5 if then == "append" else 4)
    assert result.checkpoints == (1 if every == 4 else 0)


def test_a_torn_last_line_is_removed_and_the_chain_continues(workspace):
    fill(workspace, 2)
    with open(log_path(workspace), "ab") as handle:
        handle.write(b'{"seq":3,"kind":"redac')  # what a crash in the middle of the record's write leaves
    result = verify_audit_log(workspace)
    assert result.ok and result.records == 2 and "removed the torn last line" in result.notes[0]
    assert append_audit_record(workspace, "redaction", input="after.jsonl")["seq"] == 3
    assert verify_audit_log(workspace).ok


def test_verify_exit_codes(workspace, capsys):
    assert main(["audit", "verify"]) == 0  # an empty workspace: nothing to check, nothing cited
    assert "OK: 0 records" in capsys.readouterr().out
    fill(workspace, 2)
    assert main(["audit", "verify"]) == 0
    records = read_audit_log(workspace)
    records[0]["input"] = "other.jsonl"
    rewrite(workspace, records)
    assert main(["audit", "verify"]) == 1


def test_a_pre_hmac_log_is_sealed_once_and_keeps_its_citations(workspace, capsys):
    base = {"time": 1.0, "user": "someone", "kind": "redaction", "medcore_version": "0.1.0"}
    legacy = plain_chain([base | {"input": f"f{i}.jsonl"} for i in range(3)])
    rewrite(workspace, legacy)
    head_path(workspace).write_text(json.dumps({"seq": 3, "hash": legacy[-1]["hash"]}))
    cite(workspace, legacy[1], legacy[2])
    assert "predates HMAC signing" in verify_audit_log(workspace).problems[0]
    with pytest.raises(MedcoreError, match="medcore audit seal"):
        append_audit_record(workspace, "redaction", input="x")
    assert main(["audit", "seal"]) == 0
    assert "Signed 3 pre-HMAC records" in capsys.readouterr().out
    result = verify_audit_log(workspace)
    assert result.ok and result.records == 4
    records = read_audit_log(workspace)
    assert [r["hash"] for r in records[:3]] == [r["hash"] for r in legacy]  # manifests keep pointing at them
    assert records[-1]["kind"] == "audit_sealed" and records[-1]["user"].startswith("os:")
    assert main(["audit", "seal"]) == 0 and "Nothing to seal" in capsys.readouterr().out


def test_a_broken_pre_hmac_log_is_not_sealed(workspace, capsys):
    legacy = plain_chain([{"kind": "redaction", "input": f"f{i}.jsonl"} for i in range(3)])
    rewrite(workspace, [legacy[0], legacy[2]])
    head_path(workspace).write_text(json.dumps({"seq": 3, "hash": legacy[-1]["hash"]}))
    assert main(["audit", "seal"]) == 1
    assert "not intact" in capsys.readouterr().err
    assert "mac" not in log_path(workspace).read_text()


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 16])
def test_the_tail_reader_finds_the_last_lines_across_block_boundaries(tmp_path, block):
    path = tmp_path / "log.jsonl"
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i * 7 % 23)) for i in range(9)]
    path.write_bytes(b"\n".join(lines) + b"\n" + b'{"torn')
    tail = chain.read_tail(path, 2, block=block)
    assert tail.lines == lines[-2:] and tail.torn == b'{"torn' and tail.whole == (block >= path.stat().st_size)
    assert path.read_bytes()[tail.torn_at :] == b'{"torn'
    assert chain.read_tail(path, 20, block=block) == (lines, b'{"torn', tail.torn_at, True)


def test_a_log_cut_back_with_its_old_signed_files_is_caught_by_the_exported_checkpoints(
    workspace, monkeypatch, tmp_path
):
    """The attack the workspace alone cannot see: old signed copies of head.json and checkpoints.jsonl restored with
    the log cut back to them. With $MEDCORE_AUDIT_SINK, the checkpoints exported elsewhere give it away."""
    sink = tmp_path / "elsewhere" / "checkpoints.jsonl"
    sink.parent.mkdir()
    monkeypatch.setenv("MEDCORE_AUDIT_SINK", str(sink))
    monkeypatch.setattr(chain, "CHECKPOINT_EVERY", 2)
    fill(workspace, 2)
    kept = {path: path.read_bytes() for path in (head_path(workspace), chain.checkpoints_path(workspace))}
    kept_log = read_audit_log(workspace)
    fill(workspace, 2)
    assert len(sink.read_text().splitlines()) == 2 and verify_audit_log(workspace).ok
    rewrite(workspace, kept_log)  # cut back to 2 records, with the signed files of that moment
    for path, data in kept.items():
        path.write_bytes(data)
    monkeypatch.delenv("MEDCORE_AUDIT_SINK")
    assert verify_audit_log(workspace).ok  # without the copy, nothing shows
    monkeypatch.setenv("MEDCORE_AUDIT_SINK", str(sink))
    assert verify_audit_log(workspace).problems == [
        "checkpoint seq 4 was exported to MEDCORE_AUDIT_SINK but is not in the workspace's checkpoints (the log was "
        "cut back)"
    ]


def test_an_export_that_fails_never_blocks_the_record(workspace, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDCORE_AUDIT_SINK", str(tmp_path / "no-such-folder" / "checkpoints.jsonl"))
    monkeypatch.setattr(chain, "CHECKPOINT_EVERY", 1)
    fill(workspace, 2)
    assert len(read_audit_log(workspace)) == 2 and verify_audit_log(workspace).ok
