"""Chat transcripts in the workspace (`chats/<id>.jsonl`, one JSON object per turn), holding guarded text only:
every turn is passed through the PHI guard before it is written, whoever wrote it."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from medcore.errors import MedcoreError
from medcore.fileio import file_lock
from medcore.serve.guard import guard_text
from medcore.workspace import Workspace, get_workspace

CHATS = "chats"
CHAT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")


def chats_dir(ws: Workspace) -> Path:
    return ws.root / CHATS


def new_chat_id() -> str:
    """A sortable, unguessable id: creation time and random hex."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(4)


def chat_path(chat_id: str, ws: Workspace) -> Path:
    if not CHAT_ID.match(chat_id):
        raise MedcoreError(f"Chat id '{chat_id}' is not valid: letters, digits, '_' and '-' only (see new_chat_id()).")
    return chats_dir(ws) / f"{chat_id}.jsonl"


def append_turn(
    chat_id: str, role: str, content: str, *, model: str | None = None, ws: Workspace | None = None
) -> dict[str, Any]:
    """Guard `content`, then append the turn to the transcript; returns the record as stored."""
    ws = ws or get_workspace()
    path = chat_path(chat_id, ws)
    text, counts = guard_text(content)
    record = {"at": time.time(), "role": role, "content": text, "model": model, "redacted": counts}
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")), open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def read_transcript(chat_id: str, ws: Workspace | None = None) -> list[dict[str, Any]]:
    """The turns of a chat, oldest first ([] for a chat with none yet)."""
    path = chat_path(chat_id, ws or get_workspace())
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def list_chats(ws: Workspace | None = None) -> list[str]:
    """Chat ids of the workspace, newest first."""
    folder = chats_dir(ws or get_workspace())
    return sorted((p.stem for p in folder.glob("*.jsonl")), reverse=True) if folder.exists() else []
