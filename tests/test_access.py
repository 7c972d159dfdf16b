"""Users, roles and the Actor: the whole role matrix, argon2 logins with lockout, sessions with idle and absolute
expiry (an injected clock), `medcore users`, and one audit record (never a password) for each of them."""

from __future__ import annotations

import io
import json
import stat

import pytest
from argon2 import PasswordHasher

import medcore.access.users as users
from medcore.access.actor import Actor, require
from medcore.access.roles import ACTIONS, ROLES
from medcore.access.sessions import Sessions
from medcore.cli import main
from medcore.errors import MedcoreError
from medcore.phi.audit import read_audit_log, verify_audit_log

PASSWORD = "correct horse battery"
ADMIN = Actor("os:tester", "admin")

# Written out by hand, not derived from roles.ACTIONS: this table is the specification the matrix is checked against.
EXPECTED = {
    "admin": set(ACTIONS),
    "ml-engineer": {
        "view_runs", "view_metrics", "view_datasets", "import_data", "redact_data", "launch_run", "cancel_run",
        "resume_run", "run_eval", "manage_reviews", "export_model", "serve_model", "chat",
    },
    "clinician-reviewer": {"view_runs", "view_metrics", "view_datasets", "preview_phi", "review_eval", "chat"},
    "viewer": {"view_runs", "view_metrics"},
}  # fmt: skip


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """Audit key and users file in a private folder beside the workspace; argon2 at its cheapest real settings so
    tests stay fast (production uses argon2-cffi's RFC 9106 profile)."""
    monkeypatch.setenv("MEDCORE_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("MEDCORE_AUDIT_KEY", "MEDCORE_AUDIT_KEY_FILE", "MEDCORE_USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def records(ws, kind: str | None = None) -> list[dict]:
    return [r for r in read_audit_log(ws) if kind is None or r["kind"] == kind]


def add(ws, name: str, role: str, **kwargs) -> None:
    users.add_user(ws, ADMIN, name, role, PASSWORD, **kwargs)


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(role, action):
    actor = Actor("pat", role, frozenset({"notes"}))
    obj = "notes" if action == "preview_phi" else None
    if action in EXPECTED[role]:
        require(actor, action, obj)
    else:
        with pytest.raises(MedcoreError, match=rf"^user pat \({role}\) may not "):
            require(actor, action, obj)


def test_the_matrix_lists_exactly_the_specified_actions():
    assert set(ACTIONS) == set().union(*EXPECTED.values()) and set(EXPECTED) == set(ROLES)


def test_refusals_say_who_what_and_which_role_to_ask_for():
    with pytest.raises(MedcoreError) as refused:
        require(Actor("bob", "viewer"), "launch_run")
    assert str(refused.value) == "user bob (viewer) may not launch runs; ask an admin for the ml-engineer role"
    with pytest.raises(MedcoreError, match="may not chat with served models; ask an admin for the clinician-reviewer"):
        require(Actor("bob", "viewer"), "chat")
    with pytest.raises(MedcoreError, match=r"\(ml-engineer\) may not manage users; only admins may"):
        require(Actor("bob", "ml-engineer"), "manage_users")


def test_phi_preview_only_of_granted_datasets():
    carol = Actor("carol", "clinician-reviewer", frozenset({"notes"}))
    require(carol, "preview_phi", "notes")
    with pytest.raises(MedcoreError, match="dataset 'other': it is not granted.*medcore users grant carol other"):
        require(carol, "preview_phi", "other")
    with pytest.raises(MedcoreError, match="not granted"):
        require(carol, "preview_phi")
    require(Actor("root", "admin"), "preview_phi", "other")


def test_a_refused_preview_is_a_refusal_and_leaves_one_record(workspace):
    from medcore.access.acting import refusals_audited
    from medcore.access.actor import Refused

    carol = Actor("carol", "clinician-reviewer", frozenset({"notes"}))
    with refusals_audited(workspace, carol, "preview_phi", obj="notes", dataset="notes"):
        pass  # granted: a read is not recorded
    with (
        pytest.raises(Refused, match="not granted"),
        refusals_audited(workspace, carol, "preview_phi", obj="other", dataset="other"),
    ):
        pytest.fail("the block of a refused read must not run")
    [record] = records(workspace)
    assert (record["kind"], record["user"], record["outcome"], record["dataset"]) == (
        "preview_phi", "carol", "refused", "other",
    )  # fmt: skip


def test_unknown_role_and_unknown_action():
    with pytest.raises(MedcoreError, match="role MedCore does not know; roles are: viewer, clinician-reviewer"):
        require(Actor("eve", "superuser"), "view_runs")
    with pytest.raises(ValueError, match="unknown action 'launch'"):
        require(ADMIN, "launch")


def test_users_file_is_private_outside_the_workspace_and_holds_no_password(workspace, tmp_path):
    add(workspace, "alice", "admin")
    path = users.users_path()
    assert path.parent == tmp_path / "config" and stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())["users"]["alice"]
    assert stored["password_hash"].startswith("$argon2id$") and PASSWORD not in path.read_text()
    assert users.list_users(workspace)[0] == users.UserInfo("alice", "admin", (), 0, 0.0, stored["created"])


def test_users_file_inside_the_workspace_is_refused(workspace, monkeypatch):
    monkeypatch.setenv("MEDCORE_USERS_FILE", str(workspace.root / "users.json"))
    with pytest.raises(MedcoreError, match="inside the workspace"):
        add(workspace, "alice", "admin")


def test_user_changes_are_validated_and_each_leaves_one_record(workspace):
    add(workspace, "alice", "admin")
    add(workspace, "bob", "ml-engineer")
    with pytest.raises(MedcoreError, match="role 'boss' does not exist; roles are: viewer"):
        users.set_role(workspace, ADMIN, "bob", "boss")
    with pytest.raises(MedcoreError, match="already exists"):
        add(workspace, "bob", "viewer")
    with pytest.raises(MedcoreError, match="at least 12 characters"):
        users.add_user(workspace, ADMIN, "dave", "viewer", "short")
    with pytest.raises(MedcoreError, match="'alice' is the last admin"):
        users.remove_user(workspace, ADMIN, "alice")
    with pytest.raises(MedcoreError, match=r"user bob \(ml-engineer\) may not manage users"):
        users.add_user(workspace, Actor("bob", "ml-engineer"), "mallory", "admin", PASSWORD)
    users.set_role(workspace, ADMIN, "bob", "viewer")
    users.grant_dataset(workspace, ADMIN, "bob", "notes")
    users.grant_dataset(workspace, ADMIN, "bob", "notes", grant=False)
    users.remove_user(workspace, ADMIN, "bob")
    assert [u.name for u in users.list_users(workspace)] == ["alice"]
    outcomes = [(r["kind"], r["outcome"], r.get("target_user")) for r in records(workspace)]
    assert outcomes == [
        ("user_added", "ok", "alice"), ("user_added", "ok", "bob"), ("role_changed", "refused", "bob"),
        ("user_added", "refused", "bob"), ("user_added", "refused", "dave"), ("user_removed", "refused", "alice"),
        ("user_added", "refused", "mallory"), ("role_changed", "ok", "bob"), ("dataset_granted", "ok", "bob"),
        ("dataset_revoked", "ok", "bob"), ("user_removed", "ok", "bob"),
    ]  # fmt: skip
    assert records(workspace)[2]["reason"].startswith("Cannot save the user: role 'boss' does not exist")
    assert records(workspace)[6]["user"] == "bob" and records(workspace)[6]["role"] == "ml-engineer"
    assert all(r["user"] == "os:tester" and r["role"] == "admin" for i, r in enumerate(records(workspace)) if i != 6)
    assert PASSWORD not in json.dumps(read_audit_log(workspace)) and "$argon2" not in json.dumps(
        read_audit_log(workspace)
    )
    assert verify_audit_log(workspace).ok


def test_login_wrong_password_and_unknown_user(workspace):
    add(workspace, "carol", "clinician-reviewer", datasets=["notes"])
    actor = users.authenticate(workspace, "carol", PASSWORD)
    assert actor == Actor("carol", "clinician-reviewer", frozenset({"notes"}))
    with pytest.raises(MedcoreError) as wrong:
        users.authenticate(workspace, "carol", "wrong password!")
    with pytest.raises(MedcoreError) as unknown:
        users.authenticate(workspace, "nobody", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == "Wrong user name or password."  # the form reveals no names
    logins = records(workspace, "login")
    assert [(r["user"], r["role"], r["outcome"], r.get("reason")) for r in logins] == [
        ("carol", "clinician-reviewer", "ok", None),
        ("carol", "clinician-reviewer", "refused", "wrong password"),
        ("(unknown)", "none", "refused", "unknown user"),
    ]
    assert "nobody" not in json.dumps(logins) and len(logins[2]["attempted_name_sha256"]) == 16
    assert "wrong password!" not in json.dumps(read_audit_log(workspace)) and PASSWORD not in json.dumps(logins)


def test_lockout_after_repeated_failures_then_expiry_or_unlock(workspace):
    add(workspace, "bob", "ml-engineer")
    clock = Clock()
    for _ in range(users.MAX_FAILED_LOGINS - 1):
        with pytest.raises(MedcoreError, match="^Wrong user name or password.$"):
            users.authenticate(workspace, "bob", "guess guess guess", clock=clock)
    with pytest.raises(MedcoreError, match="now locked for 15 minutes"):
        users.authenticate(workspace, "bob", "guess guess guess", clock=clock)
    clock.now += users.LOCKOUT_S - 60
    with pytest.raises(MedcoreError, match="locked after 5 failed logins; try again in 1 minute"):
        users.authenticate(workspace, "bob", PASSWORD, clock=clock)  # even the right password
    clock.now += 60
    assert users.authenticate(workspace, "bob", PASSWORD, clock=clock).role == "ml-engineer"
    for _ in range(users.MAX_FAILED_LOGINS):
        with pytest.raises(MedcoreError):
            users.authenticate(workspace, "bob", "guess guess guess", clock=clock)
    users.unlock_user(workspace, ADMIN, "bob")
    assert users.authenticate(workspace, "bob", PASSWORD, clock=clock).user == "bob"
    reasons = [r.get("reason", r["outcome"]) for r in records(workspace, "login")]
    assert reasons == ["wrong password"] * 5 + ["locked", "ok"] + ["wrong password"] * 5 + ["ok"]
    assert records(workspace, "login")[4]["locked_now"] is True
    assert len(records(workspace, "user_unlocked")) == 1


def test_sessions_expire_when_idle_and_absolutely(workspace):
    add(workspace, "carol", "clinician-reviewer")
    clock = Clock()
    sessions = Sessions(workspace, idle_s=600, absolute_s=3600, clock=clock)
    token = sessions.login("carol", PASSWORD)
    for _ in range(5):  # active every 9 minutes: the idle timer restarts each time
        clock.now += 540
        assert sessions.actor(token).user == "carol"
    clock.now += 600
    with pytest.raises(MedcoreError, match=r"session expired \(10 minutes without activity\); log in again"):
        sessions.actor(token)
    with pytest.raises(MedcoreError, match="not logged in"):
        sessions.actor(token)  # gone: an expiry is recorded once
    token = sessions.login("carol", PASSWORD)
    for _ in range(6):  # active until 54 minutes after login
        clock.now += 540
        sessions.actor(token)
    clock.now += 540  # 63 minutes after login, 9 idle: the absolute limit ends it
    with pytest.raises(MedcoreError, match=r"session expired \(1 hours after login\)"):
        sessions.actor(token)
    with pytest.raises(MedcoreError, match="not logged in"):
        sessions.actor("forged-token")
    expired = records(workspace, "session_expired")
    assert [(r["user"], r["role"], r["reason"]) for r in expired] == [
        ("carol", "clinician-reviewer", "10 minutes without activity"),
        ("carol", "clinician-reviewer", "1 hours after login"),
    ]


def test_a_session_follows_role_changes_removal_and_logout(workspace):
    add(workspace, "alice", "admin")
    add(workspace, "bob", "ml-engineer")
    sessions = Sessions(workspace)
    token = sessions.login("bob", PASSWORD)
    require(sessions.actor(token), "launch_run")
    users.set_role(workspace, ADMIN, "bob", "viewer")
    with pytest.raises(MedcoreError, match=r"user bob \(viewer\) may not launch runs"):
        require(sessions.actor(token), "launch_run")
    users.remove_user(workspace, ADMIN, "bob")
    with pytest.raises(MedcoreError, match="User 'bob' no longer exists"):
        sessions.actor(token)
    with pytest.raises(MedcoreError, match="not logged in"):
        sessions.actor(token)
    token = sessions.login("alice", PASSWORD)
    sessions.logout(token)
    with pytest.raises(MedcoreError, match="not logged in"):
        sessions.actor(token)
    assert [(r["user"], r["outcome"]) for r in records(workspace, "logout")] == [("alice", "ok")]
    with pytest.raises(MedcoreError, match="Wrong user name or password"):
        sessions.login("alice", "not the password")


def test_cli_users_reads_passwords_from_stdin_never_argv(workspace, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "alice", "--role", "admin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "carol", "--role", "clinician-reviewer", "--grant", "notes"]) == 0
    assert users.authenticate(workspace, "alice", PASSWORD).role == "admin"
    with pytest.raises(SystemExit) as exited:
        main(["users", "add", "bob", "--role", "viewer", "--password", PASSWORD])
    assert exited.value.code == 2
    capsys.readouterr()
    assert main(["users", "set-role", "carol", "superuser"]) == 1
    assert "role 'superuser' does not exist" in capsys.readouterr().err
    assert main(["users", "set-role", "carol", "viewer"]) == 0
    assert main(["users", "list"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "carol" in out and "viewer" in out and "datasets: notes" in out and "argon2" not in out
    assert main(["users", "remove", "carol"]) == 0
    assert main(["users", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [u["name"] for u in listed] == ["alice"]
    kinds = [(r["kind"], r["outcome"]) for r in records(workspace) if r["kind"] != "login"]
    assert kinds == [
        ("user_added", "ok"), ("user_added", "ok"), ("role_changed", "refused"), ("role_changed", "ok"),
        ("user_removed", "ok"),
    ]  # fmt: skip
    assert all(
        r["user"].startswith("os:") and r["role"] == "admin" for r in records(workspace) if r["kind"] != "login"
    )
