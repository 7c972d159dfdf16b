"""Single sign-on: the identity provider proves an e-mail address, MedCore maps it to a linked user (or refuses), and
every sign-in is audited; the console offers st.login where secrets.toml configures a provider."""

from __future__ import annotations

import json

import pytest
from app_helpers import MAIN, texts, widget
from streamlit.testing.v1 import AppTest

from medcore.access import users
from medcore.access.actor import Actor, local_admin
from medcore.access.sessions import Sessions
from medcore.access.sso import identity_of, link_identity, oidc_providers, sso_login
from medcore.cli import main as medcore_main
from medcore.errors import MedcoreError

AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "a long random string of at least 32 characters",
    "client_id": "medcore",
    "client_secret": "client secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


@pytest.fixture
def linked(with_users):
    """ada's sign-on identity linked (as an admin would, with `medcore users link`)."""
    link_identity(with_users, local_admin(), "ada", "Ada.Lovelace@Hospital.org")
    return with_users


def audit_records(ws) -> list[dict]:
    return [json.loads(line) for line in (ws.root / "audit" / "audit.jsonl").read_text().splitlines()]


def test_providers_come_from_the_auth_table():
    assert oidc_providers(None) == [] and oidc_providers({"client_id": "x"}) == []  # no redirect or cookie secret
    assert oidc_providers(AUTH) == [None]  # one provider in [auth] itself
    named = {k: AUTH[k] for k in ("redirect_uri", "cookie_secret")} | {"okta": {k: AUTH[k] for k in
             ("client_id", "client_secret", "server_metadata_url")}, "half": {"client_id": "y"}}  # fmt: skip
    assert oidc_providers(named) == ["okta"]  # a section lacking a field is no provider


def test_the_identity_is_a_verified_lower_case_e_mail():
    assert identity_of({"email": " Ada@Hospital.ORG ", "email_verified": True}) == "ada@hospital.org"
    assert identity_of({"email": "ada@hospital.org"}) == "ada@hospital.org"  # a provider that does not say
    with pytest.raises(MedcoreError, match="did not give an e-mail address"):
        identity_of({"sub": "1234"})
    with pytest.raises(MedcoreError, match="not verified"):
        identity_of({"email": "ada@hospital.org", "email_verified": False})


def test_a_linked_identity_signs_in_as_its_user_and_is_audited(linked):
    actor = sso_login(linked, {"email": "ada.lovelace@hospital.org", "email_verified": True})
    assert actor == Actor("ada", "admin", frozenset())
    last = audit_records(linked)[-1]
    assert (last["kind"], last["outcome"], last["method"], last["user"]) == ("login", "ok", "sso", "ada")


def test_an_identity_no_user_is_linked_to_is_refused_and_recorded_as_a_hash(linked):
    with pytest.raises(MedcoreError, match=r"No MedCore user is linked to eve@elsewhere.org.*users link USER"):
        sso_login(linked, {"email": "eve@elsewhere.org"})
    last = audit_records(linked)[-1]
    assert (last["kind"], last["outcome"], last["reason"]) == ("login", "refused", "no user linked")
    assert "eve@elsewhere.org" not in json.dumps(last) and last["identity_sha256"]


def test_a_locked_user_cannot_sign_on_either(linked):
    with users.users_locked(linked) as table:
        table["ada"]["locked_until"] = 4e9
    with pytest.raises(MedcoreError, match="is locked"):
        sso_login(linked, {"email": "ada.lovelace@hospital.org"})


def test_links_are_one_identity_one_user_and_admin_only(linked):
    with pytest.raises(MedcoreError, match="linked to user 'ada' already"):
        link_identity(linked, local_admin(), "vic", "ada.lovelace@hospital.org")
    with pytest.raises(MedcoreError, match="is not an e-mail address"):
        link_identity(linked, local_admin(), "vic", "vic")
    with pytest.raises(MedcoreError, match="may not"):
        link_identity(linked, Actor("vic", "viewer"), "vic", "vic@hospital.org")
    link_identity(linked, local_admin(), "ada", None)  # unlinked: the password still works, SSO does not
    with pytest.raises(MedcoreError, match="No MedCore user is linked"):
        sso_login(linked, {"email": "ada.lovelace@hospital.org"})


def test_a_sign_on_session_expires_like_a_password_one(linked):
    now = [1000.0]
    sessions = Sessions(linked, idle_s=60, absolute_s=3600, clock=lambda: now[0])
    token = sessions.login_sso({"email": "ada.lovelace@hospital.org"})
    assert sessions.actor(token).user == "ada"
    now[0] += 61
    with pytest.raises(MedcoreError, match="expired"):
        sessions.actor(token)


def test_the_cli_links_and_unlinks(linked, capsys):
    assert medcore_main(["users", "link", "vic", "vic@hospital.org"]) == 0
    assert "signs in through single sign-on as vic@hospital.org" in capsys.readouterr().out
    assert sso_login(linked, {"email": "vic@hospital.org"}).user == "vic"
    assert medcore_main(["users", "unlink", "vic"]) == 0
    with pytest.raises(MedcoreError):
        sso_login(linked, {"email": "vic@hospital.org"})


def console(user: dict | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.secrets["auth"] = AUTH
    if user is not None:
        at.user = user
    return at.run()


def test_the_login_page_offers_single_sign_on_beside_the_password_form(linked):
    at = console()
    assert not at.exception
    assert [t.value for t in at.title] == ["Log in to MedCore"]
    assert widget(at.button, "Sign in with single sign-on") and widget(at.button, "Log in")


def test_back_from_the_provider_a_linked_user_gets_the_console_and_an_unknown_one_does_not(linked):
    at = console({"is_logged_in": True, "email": "ada.lovelace@hospital.org", "email_verified": True})
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Data"]
    assert any("Signed in as **ada** (admin)" in c for c in texts(at, "caption"))

    at = console({"is_logged_in": True, "email": "eve@elsewhere.org"})
    assert not at.exception
    assert any("No MedCore user is linked to eve@elsewhere.org" in e for e in texts(at, "error"))
    assert widget(at.button, "Sign out of single sign-on") and not [t for t in at.title if t.value == "Data"]
