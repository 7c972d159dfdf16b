"""The hash-chained audit log: appends, verification, and detection of edited or deleted records."""

from __future__ import annotations

import json
import stat

import pytest

from medcore.cli import main
from medcore.errors import MedcoreError
from medcore.phi.audit import append_audit_record, load_salt, log_path, read_audit_log, verify_audit_log


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
    from medcore.phi.audit import record_hash

    fill(workspace)
    records = read_audit_log(workspace)
    records[1]["input"] = "other.jsonl"
    records[1]["hash"] = record_hash(records[1])
    rewrite(workspace, records)
    problems = verify_audit_log(workspace).problems
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
