"""Import and redaction share one input check: the same bad file gets the same message, exit 1, no audit record."""

from __future__ import annotations

import pytest

from medcore.cli import main as medcore_main
from medcore.phi.audit import read_audit_log


def bad_files(tmp_path):
    """(name, path, message fragment) for each kind of broken input a user hands in."""
    truncated = tmp_path / "truncated.parquet"
    import pandas as pd

    pd.DataFrame({"text": ["a note"] * 50}).to_parquet(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    cases = {
        "missing": (tmp_path / "nowhere.csv", "does not exist"),
        "zero_bytes": (tmp_path / "zero.csv", "is empty (0 bytes)"),
        "empty_jsonl": (tmp_path / "blank.jsonl", "holds only whitespace"),
        "header_only": (tmp_path / "header.csv", "has no rows"),
        "latin1": (tmp_path / "latin1.csv", "is not UTF-8 text: undecodable byte at offset 13 (line 2)"),
        "truncated_parquet": (truncated, "is not a readable Parquet file"),
    }
    (tmp_path / "zero.csv").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    (tmp_path / "header.csv").write_text("id,text\n")
    (tmp_path / "latin1.csv").write_bytes("id,text\n1,caf\u00e9 note\n".encode("latin-1"))
    return cases


CASES = ["missing", "zero_bytes", "empty_jsonl", "header_only", "latin1", "truncated_parquet"]


@pytest.mark.parametrize("case", CASES)
def test_redact_and_import_refuse_the_same_file_the_same_way(case, tmp_path, workspace, capsys):
    path, fragment = bad_files(tmp_path)[case]
    before = len(read_audit_log(workspace))
    assert medcore_main(["redact", str(path), str(tmp_path / "out.jsonl")]) == 1
    redact_message = capsys.readouterr().err
    assert fragment in redact_message and "Traceback" not in redact_message
    assert not (tmp_path / "out.jsonl").exists()
    assert len(read_audit_log(workspace)) == before  # nothing was redacted, so nothing is audited
    assert medcore_main(["data", "import", str(path), "--name", "bad-input"]) == 1
    assert capsys.readouterr().err.strip() == redact_message.strip()
