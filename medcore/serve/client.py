"""Talk to any OpenAI-compatible server (MedCore's embedded one, vLLM, others) with the official `openai` client:
list its models, chat (streamed or whole), with the PHI guard in front. For the console and notebooks.

    from medcore.serve.client import guard_messages, stream_chat
    guarded = guard_messages([{"role": "user", "content": prompt}])   # what was masked: guarded.redactions
    for piece in stream_chat("http://127.0.0.1:8000", "qa", guarded.messages):
        print(piece, end="")
"""

from __future__ import annotations

from collections.abc import Iterator

from openai import APIConnectionError, APIError, APIStatusError, OpenAI

from medcore.errors import MedcoreError
from medcore.serve.guard import GuardResult, Redaction, guard_messages

__all__ = [
    "GuardResult",
    "Redaction",
    "complete_chat",
    "guard_messages",
    "list_models",
    "openai_client",
    "stream_chat",
]


def openai_client(url: str, api_key: str | None = None, timeout_s: float = 120.0) -> OpenAI:
    """An OpenAI client for a server root (http://host:port) or its /v1 URL. No retries: errors surface at once."""
    base = url.rstrip("/")
    base = base if base.endswith("/v1") else f"{base}/v1"
    # The client insists on a key; a server without one ignores the header.
    return OpenAI(base_url=base, api_key=api_key or "no-key", timeout=timeout_s, max_retries=0)


def describe_failure(exc: Exception, url: str) -> MedcoreError:
    """A client failure as one line: the server's own message (it names the field), or how to reach the server."""
    if isinstance(exc, APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or (body.get("error") or {}).get("message") or str(exc)
        return MedcoreError(f"The server at {url} refused the request ({exc.status_code}): {message}")
    if not isinstance(exc, APIConnectionError):  # an error event inside a stream (e.g. the request timed out)
        return MedcoreError(f"The server at {url} stopped the answer: {exc.message}")
    return MedcoreError(
        f"Cannot reach a server at {url}: start one (`medcore serve --detach`) or check the URL and port."
    )


def list_models(url: str, api_key: str | None = None) -> list[str]:
    """The model names a server serves (base models and adapters)."""
    try:
        return [model.id for model in openai_client(url, api_key).models.list().data]
    except APIError as exc:
        raise describe_failure(exc, url) from None


def stream_chat(
    url: str,
    model: str,
    messages: list[dict[str, str]],
    *,
    api_key: str | None = None,
    temperature: float = 0.0,
    max_tokens: int = 256,
) -> Iterator[str]:
    """The answer's text pieces as the server streams them (send guarded messages: see guard_messages)."""
    try:
        stream = openai_client(url, api_key).chat.completions.create(
            model=model, messages=messages, temperature=temperature, max_tokens=max_tokens, stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
    except APIError as exc:
        raise describe_failure(exc, url) from None


def complete_chat(
    url: str,
    model: str,
    messages: list[dict[str, str]],
    *,
    api_key: str | None = None,
    temperature: float = 0.0,
    max_tokens: int = 256,
) -> str:
    """The whole answer at once."""
    try:
        response = openai_client(url, api_key).chat.completions.create(
            model=model, messages=messages, temperature=temperature, max_tokens=max_tokens
        )
    except APIError as exc:
        raise describe_failure(exc, url) from None
    return response.choices[0].message.content or ""
