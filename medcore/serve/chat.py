"""A chat with one or two models on the same prompts: the prompt PHI-guarded, each model's messages from the history.

An assistant turn holds one answer per model asked (two side by side); each model sees its own earlier answers.

    turns = [{"role": "user", "content": "..."}, {"role": "assistant", "answers": [{"model": "qa", "content": "..."}]}]
    messages_for(turns, "qa", system="Be brief.")     # the system prompt, then each user turn and qa's own answers
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medcore.serve.guard import guard_messages


@dataclass(frozen=True)
class GuardedPrompt:
    """What is sent: the system prompt and the prompt (masked when the guard is on), and what was masked."""

    system: str
    prompt: str
    guarded: bool
    counts: dict[str, int] = field(default_factory=dict)  # masked spans per category, system prompt and prompt
    system_counts: dict[str, int] = field(default_factory=dict)  # those of the system prompt alone


def prepare_prompt(system: str, prompt: str, guard: bool = True) -> GuardedPrompt:
    """The system prompt and prompt as they will be sent: through the PHI guard, or as typed when `guard` is off."""
    if not guard:
        return GuardedPrompt(system, prompt, guarded=False)
    messages = [{"role": "system", "content": system}] if system.strip() else []
    result = guard_messages([*messages, {"role": "user", "content": prompt}])
    masked = {r.role: r.counts for r in result.redactions}
    sent_system = result.messages[0]["content"] if messages else system
    return GuardedPrompt(sent_system, result.messages[-1]["content"], True, result.counts, masked.get("system", {}))


def answer_of(turn: dict[str, Any], model: str) -> str:
    """An assistant turn's answer by `model`; a turn it did not answer gives the first model's answer."""
    answers = turn.get("answers") or [{"content": ""}]
    return next((a["content"] for a in answers if a.get("model") == model), answers[0]["content"])


def messages_for(turns: list[dict[str, Any]], model: str, system: str = "") -> list[dict[str, str]]:
    """OpenAI messages for `model`: the system prompt (if any), then the history with this model's own answers."""
    messages = [{"role": "system", "content": system}] if system.strip() else []
    for turn in turns:
        content = turn["content"] if turn["role"] == "user" else answer_of(turn, model)
        messages.append({"role": turn["role"], "content": content})
    return messages
