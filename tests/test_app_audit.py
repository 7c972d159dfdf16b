"""The Audit page: admins see the records (time, user, action, object), filter them and the log's verification as an
OK or FAILED banner; other roles have no such page, and the records are refused to them by the engine."""

from __future__ import annotations

import json

import pytest
from app_helpers import log_in, texts, widget
from streamlit.testing.v1 import AppTest

from medcore.access import users
from medcore.access.actor import local_admin
from medcore.phi.audit import log_path, read_audit_log


def open_audit(at: AppTest) -> AppTest:
    return at.switch_page("views/audit.py").run()


def test_an_admin_sees_every_record_filters_them_and_a_verified_banner(with_users):
    log_in("vic", "wrong password here")  # a failed login: recorded, and listed below
    at = open_audit(log_in("ada", "correct horse battery"))
    assert not at.exception and [t.value for t in at.title] == ["Audit"]
    assert any(s.startswith("OK: 4 records") for s in texts(at, "success"))
    table = at.dataframe[0].value
    assert table.columns[:6].tolist() == ["seq", "time", "user", "role", "action", "object"]
    assert table["action"].tolist() == ["login", "login", "user_added", "user_added"]  # newest first
    assert table.loc[1, "user"] == "vic" and table.loc[1, "outcome"] == "refused"
    assert table.loc[3, "object"] == "target_user ada" and table.loc[3, "user"].startswith("os:")
    widget(at.selectbox, "User").set_value("vic")
    at.run()
    assert at.dataframe[0].value["user"].tolist() == ["vic"]
    widget(at.selectbox, "User").set_value("(all)")
    widget(at.selectbox, "Action").set_value("user_added")
    at.run()
    assert at.dataframe[0].value["object"].tolist() == ["target_user vic", "target_user ada"]


def test_a_tampered_log_shows_a_failed_banner(with_users):
    at = open_audit(log_in("ada", "correct horse battery"))
    lines = log_path(with_users).read_text().splitlines()
    first = json.loads(lines[0])
    first["new_role"] = "viewer"  # ada was made admin: rewritten after the fact
    log_path(with_users).write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    at.run()
    failed = [e for e in texts(at, "error") if e.startswith("FAILED")]
    assert failed and "record edited" in failed[0]


def test_a_viewer_has_no_audit_page(with_users):
    at = log_in("vic", "viewer password 123")
    assert [t.value for t in at.title] == ["Data"]
    with pytest.raises(ValueError, match="Could not find a navigation page") as missing:
        open_audit(at)  # not in a viewer's navigation (and read_audit_records refuses them: test_access_engine)
    known = str(missing.value).split("Known pages:")[1]
    assert "views/runs.py" in known and "views/audit.py" not in known


def test_console_actions_are_recorded_under_the_signed_in_user(with_users):
    users.add_user(with_users, local_admin(), "eve", "ml-engineer", "engineer password 1")
    notes = b"text,label\n" + b"".join(f"Canary-Q7 note {i},{'ab'[i % 2]}\n".encode() for i in range(10))
    at = log_in("vic", "viewer password 123")
    at.file_uploader[0].set_value(("notes.csv", notes, "text/csv"))
    at.run()
    at = log_in("eve", "engineer password 1")
    at.file_uploader[0].set_value(("notes.csv", notes, "text/csv"))
    at.run()
    widget(at.text_input, "Dataset name").set_value("notes")
    at = widget(at.button, "Import").click().run()
    assert not at.error, texts(at, "error")
    acted = [r for r in read_audit_log(with_users) if r["kind"] == "dataset_imported"]
    assert [(r["user"], r["role"], r["outcome"]) for r in acted] == [
        ("vic", "viewer", "refused"), ("eve", "ml-engineer", "ok"),
    ]  # fmt: skip
    assert acted[1]["dataset"] == "notes" and acted[1]["rows"] == 10
    assert "Canary-Q7" not in json.dumps(read_audit_log(with_users))
