"""`medcore quickstart` end to end, small: demo notes -> import -> redaction -> LoRA fine-tune -> test evaluation."""

from __future__ import annotations

import json

import pytest

from medcore.cli import main as medcore_main
from medcore.data.manifest import read_manifest
from medcore.phi.audit import read_audit_log
from medcore.rundir import RunDir


@pytest.mark.slow
def test_quickstart_small(workspace, capsys):
    code = medcore_main(["quickstart", "--notes", "120", "--steps", "4", "--nproc", "1"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    (run_path,) = list(workspace.runs.iterdir())
    rd = RunDir(run_path)
    assert rd.read_status()["state"] == "completed"
    manifest = read_manifest(workspace, "quickstart-notes-redacted")
    assert manifest.redaction.status == "redacted"  # it trained on the redacted copy, so no override was needed
    assert json.loads(rd.spec.read_text())["dataset"] == "quickstart-notes-redacted"
    assert not [r for r in read_audit_log(workspace) if r["kind"] == "redaction_override"]
    result = json.loads((rd.path / "eval_test.json").read_text())
    assert result["rows"] == manifest.rows["test"] and 0.0 <= result["accuracy"] <= 1.0
    assert '"macro_f1"' in out
