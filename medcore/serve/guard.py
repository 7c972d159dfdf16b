"""The PHI guard of chat: each prompt is scanned with MedCore's detector and masked before it leaves, and the
user is told what was masked (categories and counts, and the masked text; the original is never kept)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

GUARDED_ROLES = ("system", "user")  # what people type; assistant turns come back from the guarded model
# Masks ([NAME], [CONTACT], ...) draw nothing from the salt; a fixed one keeps the workspace's secret salt unread.
MASK_SALT = b"\0" * 16


@dataclass(frozen=True)
class Redaction:
    """What the guard masked in one message."""

    index: int
    role: str
    counts: dict[str, int]
    redacted_text: str


@dataclass(frozen=True)
class GuardResult:
    """The messages to send (masked) and, per masked message, what was masked."""

    messages: list[dict[str, str]]
    redactions: list[Redaction] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Masked spans per category, over all messages."""
        total: dict[str, int] = {}
        for redaction in self.redactions:
            for kind, count in redaction.counts.items():
                total[kind] = total.get(kind, 0) + count
        return total


@functools.lru_cache(maxsize=1)
def guard_config():
    """Safe Harbor masking: every HIPAA identifier the detector finds becomes its category tag."""
    from medcore.phi.config import build_config

    return build_config(mode="safe-harbor", method="mask")


def guard_text(text: str) -> tuple[str, dict[str, int]]:
    """(masked text, masked spans per category) of one text."""
    from medcore.phi.redact import preview_text

    preview = preview_text(text, config=guard_config(), salt=MASK_SALT)
    return preview.redacted_text, dict(preview.counts)


def content_text(content) -> str:
    """A message's text: a string, or OpenAI's list of parts (the text parts joined)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def guard_messages(messages: list[dict[str, str]], roles: tuple[str, ...] = GUARDED_ROLES) -> GuardResult:
    """Mask PHI in the content of every message whose role is in `roles`; other messages pass unchanged.

    Args:
        messages: OpenAI-style messages, {"role", "content"} with text content.
        roles: which roles to scan (system and user: what people type).
    """
    guarded, redactions = [], []
    for index, message in enumerate(messages):
        if message.get("role") not in roles:
            guarded.append(dict(message))
            continue
        text, counts = guard_text(content_text(message.get("content")))
        guarded.append({**message, "content": text})
        if counts:
            redactions.append(Redaction(index, message["role"], counts, text))
    return GuardResult(guarded, redactions)
