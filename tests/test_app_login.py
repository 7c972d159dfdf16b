"""Access control in the console: local mode on loopback without users; with users, a login before anything else,
and the role matrix enforced by the services a page calls (not by hiding buttons)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from app_helpers import ROOT, log_in, open_page, texts, widget

from medcore.access.bind import check_bind
from medcore.errors import MedcoreError

PAGES = ["data", "phi", "train", "runs", "evaluate", "review", "chat"]


def test_without_users_the_console_is_local_and_says_who_acts(workspace):
    at = open_page("runs")
    assert not at.exception
    assert any("Signed in as **local:" in c and "(admin)" in c for c in texts(at, "caption"))


@pytest.mark.parametrize("page", PAGES)
def test_with_users_every_page_asks_for_a_login_first(with_users, page):
    at = open_page(page)
    assert not at.exception
    assert [t.value for t in at.title] == ["Log in to MedCore"]  # the login form and nothing of the page
    assert widget(at.button, "Log in")


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_console(with_users):
    at = log_in("ada", "wrong")
    assert any("Wrong user name or password" in e for e in texts(at, "error"))
    assert [t.value for t in at.title] == ["Log in to MedCore"]
    at = log_in("ada", "correct horse battery")
    assert not at.exception and [t.value for t in at.title] == ["Data"]
    assert any("Signed in as **ada** (admin)" in c for c in texts(at, "caption"))
    widget(at.button, "Log out").click().run()
    assert [t.value for t in at.title] == ["Log in to MedCore"]


def test_a_viewer_cannot_upload_whatever_the_page_shows(with_users):
    at = log_in("vic", "viewer password 123")
    at.file_uploader[0].set_value(("notes.csv", b"text,label\nfine,a\nok,b\n", "text/csv"))
    at.run()
    refused = " ".join(texts(at, "error"))
    assert "user vic (viewer) may not import or upload data" in refused


def test_binding_beyond_loopback_needs_users(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCORE_USERS_FILE", str(tmp_path / "nobody.json"))
    check_bind("127.0.0.1", workspace)
    check_bind("::1", workspace)
    with pytest.raises(MedcoreError, match="no user is configured"):
        check_bind("0.0.0.0", workspace)
    refused = subprocess.run([sys.executable, "-m", "medcore.access.bind", "0.0.0.0"], capture_output=True, text=True)
    assert refused.returncode == 1 and "medcore users add NAME --role admin" in refused.stderr
    plan = subprocess.run(["make", "-n", "run", "HOST=0.0.0.0"], cwd=ROOT, capture_output=True, text=True).stdout
    check, start = plan.index("medcore.access.bind 0.0.0.0"), plan.index("streamlit run app/main.py")
    assert check < start  # make run checks the address before it starts the console
