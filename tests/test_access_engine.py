"""Permissions enforced in the engine, not the console: an import on a user's behalf checks the role matrix and
leaves exactly one audit record naming that user, the object by id and the outcome (never note text); reading the
log is for admins; the Audit page's rows and filters."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from medcore.access.acting import acting
from medcore.access.actor import Actor, Refused
from medcore.access.audit_view import audit_rows, describe_object, filter_choices, read_audit_records
from medcore.access.roles import ACTIONS, ROLES
from medcore.cli import main
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, dataset_dir
from medcore.errors import MedcoreError
from medcore.phi.audit import read_audit_log, verify_audit_log

CANARY = "Canary Patient-7Q9Z"  # planted in the notes: it must reach no audit record
MAPPING = ColumnMapping(text="text", label="label")
VIEWER, ENGINEER, ADMIN = Actor("vic", "viewer"), Actor("eve", "ml-engineer"), Actor("ada", "admin")


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCORE_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("MEDCORE_AUDIT_KEY", "MEDCORE_AUDIT_KEY_FILE", "MEDCORE_USERS_FILE", "MEDCORE_IMPORT_ROOTS"):
        monkeypatch.delenv(name, raising=False)


def notes(rows: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"{CANARY} seen, note {i}" for i in range(rows)], "label": ["a", "b"] * (rows // 2)})


def test_a_viewer_calling_the_engine_is_refused_and_the_refusal_recorded(workspace):
    refusal = r"user vic \(viewer\) may not import or upload data; ask an admin for the ml-engineer role"
    with pytest.raises(Refused, match=refusal):
        import_dataset(workspace, notes(), "notes", MAPPING, actor=VIEWER)
    assert not dataset_dir(workspace, "notes").exists()  # nothing else changed
    [record] = read_audit_log(workspace)
    assert (record["kind"], record["user"], record["role"], record["outcome"]) == (
        "dataset_imported", "vic", "viewer", "refused",
    )  # fmt: skip
    assert record["dataset"] == "notes" and "may not import" in record["reason"]


def test_an_ml_engineer_imports_and_one_record_names_them_and_the_dataset(workspace):
    manifest = import_dataset(workspace, notes(), "notes", MAPPING, actor=ENGINEER)
    [record] = read_audit_log(workspace)
    assert (record["user"], record["role"], record["kind"], record["outcome"]) == (
        "eve", "ml-engineer", "dataset_imported", "ok",
    )  # fmt: skip
    assert record["os_user"] != record["user"]  # the user acted for, with the OS user beside them
    assert (record["dataset"], record["rows"], record["content_hash"]) == ("notes", 10, manifest.content_hash)
    assert CANARY not in json.dumps(record)
    assert verify_audit_log(workspace).ok


@pytest.mark.parametrize("role", ROLES)
def test_every_role_at_the_engine_layer(workspace, role):
    allowed = role in ACTIONS["import_data"][1]
    try:
        import_dataset(workspace, notes(), "notes", MAPPING, actor=Actor("someone", role))
    except Refused as exc:
        assert not allowed and f"({role}) may not import" in str(exc)
    else:
        assert allowed
    assert [r["outcome"] for r in read_audit_log(workspace)] == ["ok" if allowed else "refused"]


def test_a_failed_import_is_one_failed_record_and_no_actor_means_a_local_caller(workspace):
    import_dataset(workspace, notes(), "notes", MAPPING)  # the demo, a job: not on a user's behalf, not recorded
    assert read_audit_log(workspace) == []
    with pytest.raises(MedcoreError, match="already exists"):
        import_dataset(workspace, notes(), "notes", MAPPING, actor=ENGINEER)
    [record] = read_audit_log(workspace)
    assert record["outcome"] == "failed" and "already exists" in record["reason"] and record["user"] == "eve"


def test_an_unexpected_error_is_recorded_by_its_type_only(workspace):
    with pytest.raises(ValueError), acting(workspace, ENGINEER, "launch_run", kind="run_launched", run_id="r1"):
        raise ValueError(f"a library quoting a cell: {CANARY}")
    [record] = read_audit_log(workspace)
    assert (record["outcome"], record["error"], record["run_id"]) == ("error", "ValueError", "r1")
    assert CANARY not in json.dumps(record)


def test_the_cli_import_is_recorded_as_the_os_user_and_shown_filtered(workspace, tmp_path, capsys):
    path = tmp_path / "notes.csv"
    notes().to_csv(path, index=False)
    args = ["data", "import", str(path), "--name", "notes", "--text-column", "text", "--label-column", "label"]
    assert main(args) == 0
    import_dataset(workspace, notes(), "notes-2", MAPPING, actor=ENGINEER)
    first, _ = read_audit_log(workspace)
    assert first["user"].startswith("os:") and first["role"] == "admin" and first["dataset"] == "notes"
    capsys.readouterr()
    assert main(["audit", "show", "--user", "eve", "--action", "dataset_imported"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert "eve (ml-engineer) dataset_imported ok dataset notes-2" in line
    assert main(["audit", "show", "--user", "eve", "--action", "login"]) == 0
    assert capsys.readouterr().out.startswith("No audit records match")


def test_only_admins_read_the_log_and_its_rows_filter_by_user_action_and_date(workspace):
    import_dataset(workspace, notes(), "notes", MAPPING, actor=ENGINEER)
    with pytest.raises(Refused, match=r"user vic \(viewer\) may not read the audit log; only admins may"):
        read_audit_records(workspace, VIEWER)
    records = read_audit_records(workspace, ADMIN)
    assert [(r["user"], r["kind"], r["outcome"]) for r in records] == [
        ("eve", "dataset_imported", "ok"), ("vic", "view_audit", "refused"),
    ]  # fmt: skip
    assert filter_choices(records) == (["eve", "vic"], ["dataset_imported", "view_audit"])
    rows = audit_rows(records)
    assert [row["seq"] for row in rows] == [2, 1]  # newest first
    assert rows[1]["object"] == "dataset notes" and rows[1]["outcome"] == "ok" and rows[1]["role"] == "ml-engineer"
    assert [row["user"] for row in audit_rows(records, user="vic")] == ["vic"]
    assert [row["action"] for row in audit_rows(records, action="dataset_imported")] == ["dataset_imported"]
    today = dt.date.today()
    assert len(audit_rows(records, since=today, until=today)) == 2
    assert audit_rows(records, since=today + dt.timedelta(days=1)) == []
    assert audit_rows(records, until=today - dt.timedelta(days=1)) == []


def test_describe_object_names_ids_only():
    record = {"kind": "role_changed", "target_user": "bob", "new_role": "viewer"}
    assert describe_object(record) == "target_user bob"
    assert describe_object({"kind": "run_resumed", "run_id": "r1", "new_run_id": "r2"}) == "run_id r1, new_run_id r2"
    assert describe_object({"kind": "login", "outcome": "ok"}) == ""


def engine_calls(ws):
    """Every engine entry point that acts for a user, called with the arguments a real request would use."""
    from medcore.evaluate.job import start_evaluation
    from medcore.evaluate.review import Review, close_review, record_verdict
    from medcore.evaluate.review_sources import create_review_from_evals
    from medcore.jobs import cancel_run, checkpoint_now, launch_run, resume_run, stop_run
    from medcore.phi.job import start_redaction
    from medcore.serve.manage import stop_server

    review = Review(ws.root / "reviews" / "review-x")
    spec = {"name": "r", "model": "minilm", "task": "classification", "dataset": "notes"}
    return {
        "run_launched": lambda actor: launch_run(spec, ws, actor=actor),
        "run_cancelled": lambda actor: cancel_run("run-x", ws, actor=actor),
        "run_stopped": lambda actor: stop_run("run-x", ws, actor=actor),
        "run_checkpoint_requested": lambda actor: checkpoint_now("run-x", ws, actor=actor),
        "run_resumed": lambda actor: resume_run("run-x", ws, actor=actor),
        "redaction_started": lambda actor: start_redaction(ws, "notes", "safe_harbor", None, actor=actor),
        "eval_started": lambda actor: start_evaluation(ws, "minilm", "notes", actor=actor),
        "review_created": lambda actor: create_review_from_evals(ws, "eval-a", "eval-b", actor=actor),
        "review_verdict": lambda actor: record_verdict(review, 0, "vic", "a_better", actor=actor),
        "review_closed": lambda actor: close_review(review, actor=actor),
        "server_stopped": lambda actor: stop_server("tiny-llama", ws, actor=actor),
    }


ACTING_KINDS = [
    "run_launched", "run_cancelled", "run_stopped", "run_checkpoint_requested", "run_resumed", "redaction_started",
    "eval_started", "review_created", "review_verdict", "review_closed", "server_stopped",
]  # fmt: skip


@pytest.mark.parametrize("kind", ACTING_KINDS)
def test_every_engine_action_refuses_a_viewer_and_records_it(workspace, kind):
    with pytest.raises(Refused, match=r"user vic \(viewer\) may not"):
        engine_calls(workspace)[kind](VIEWER)
    [record] = read_audit_log(workspace)
    assert (record["kind"], record["user"], record["outcome"]) == (kind, "vic", "refused")


def test_a_permitted_user_gets_the_engines_own_error_recorded_as_failed(workspace):
    """An ml-engineer passes the role check; the engine then fails on the missing run, and that is recorded."""
    with pytest.raises(MedcoreError, match="run-x"):
        engine_calls(workspace)["run_cancelled"](ENGINEER)
    [record] = read_audit_log(workspace)
    assert (record["kind"], record["user"], record["outcome"], record["run_id"]) == (
        "run_cancelled", "eve", "failed", "run-x",
    )  # fmt: skip


def test_without_an_actor_the_engine_checks_and_records_nothing(workspace):
    with pytest.raises(MedcoreError, match="run-x"):
        engine_calls(workspace)["run_cancelled"](None)
    assert read_audit_log(workspace) == []
