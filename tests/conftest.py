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
