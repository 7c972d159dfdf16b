"""Shared fixtures: every test gets its own workspace and runs offline."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# MedCore's secrets (the audit key, the users file) live outside the workspace, by default in ~/.config/medcore:
# the tests, and the jobs they start, keep theirs in a folder of their own instead of the user's home.
os.environ.setdefault("MEDCORE_CONFIG_DIR", tempfile.mkdtemp(prefix="medcore-test-config-"))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh workspace in tmp_path, also exported as MEDCORE_HOME for child processes."""
    from medcore.workspace import get_workspace

    root = tmp_path / "workspace"
    monkeypatch.setenv("MEDCORE_HOME", str(root))
    return get_workspace(root)


@pytest.fixture
def with_users(workspace, tmp_path, monkeypatch):
    """Console users of this test's own (admin ada, viewer vic; a cheap argon2 profile): the session's config folder
    stays without users for every other test."""
    from argon2 import PasswordHasher

    from medcore.access import users
    from medcore.access.actor import local_admin

    monkeypatch.setenv("MEDCORE_USERS_FILE", str(tmp_path / "config" / "users.json"))
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    users.add_user(workspace, local_admin(), "ada", "admin", "correct horse battery")
    users.add_user(workspace, local_admin(), "vic", "viewer", "viewer password 123")
    return workspace
