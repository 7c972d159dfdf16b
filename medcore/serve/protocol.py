"""The OpenAI-compatible wire format: request bodies, the error shape, and response and stream-chunk bodies.

Request bodies ignore fields they do not know (OpenAI clients send many optional ones) but refuse the ones that
would change the answer and are not supported (n > 1, stop sequences). Error messages name the field and never
quote what a request contained: prompts may hold PHI.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medcore.errors import MedcoreError

ROLES = ("system", "user", "assistant")


class ApiError(MedcoreError):
    """A request the server refuses: HTTP status plus OpenAI's error fields (`param` names the field at fault)."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None, kind: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class TextPart(BaseModel):
    """One part of a message's content given as a list (only text parts are served)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text"] = Field(description="Only 'text' parts: this server serves text models.")
    text: str = Field(description="The text of this part.")


class ChatMessage(BaseModel):
    """One message of a conversation."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"] = Field(description="Who wrote it: system, user or assistant.")
    content: str | list[TextPart] = Field(description="The text, or a list of text parts.")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class SamplingFields(BaseModel):
    """What every generation request shares. `min_tokens` is vLLM's extension (generate at least this many)."""

    model_config = ConfigDict(extra="ignore")  # OpenAI clients send optional fields this server has no use for
    model: str = Field(description="A served model: the base model's name or an adapter's name (see /v1/models).")
    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens to generate; default: the cap or the room left."
    )
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens.")
    min_tokens: int = Field(0, ge=0, description="Generate at least this many tokens (vLLM's extension).")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 is greedy (deterministic); higher is more random.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling: keep the smallest set with this mass.")
    seed: int | None = Field(None, description="Seed for sampling, for repeatable answers at temperature > 0.")
    n: int = Field(1, ge=1, le=1, description="Answers per request: this server gives one.")
    stop: Any = Field(None, description="Stop sequences: not supported by the embedded server (leave empty).")
    stream: bool = Field(False, description="Send the answer as server-sent events while it is generated.")
    stream_options: StreamOptions | None = Field(None, description="include_usage: a last chunk with usage.")

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class ChatRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(description="The conversation so far, oldest first; the last one is answered.")


class CompletionRequest(SamplingFields):
    """POST /v1/completions (one prompt string per request)."""

    prompt: str = Field(description="The text to continue.")


class ClassifyRequest(BaseModel):
    """POST /v1/classify: texts through a classification adapter."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="A served classification adapter's name.")
    input: str | list[str] = Field(description="One text or a list of texts.")


class LoadAdapterRequest(BaseModel):
    """POST /v1/load_lora_adapter (vLLM's body)."""

    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(description="The model name the adapter is served under.")
    lora_path: str = Field(description="The adapter folder (a PEFT adapter: adapter_config.json + weights).")


class UnloadAdapterRequest(BaseModel):
    """POST /v1/unload_lora_adapter (vLLM's body)."""

    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(description="The name of a loaded adapter.")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_body(request_id: str, model: str, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
    """A whole chat completion (object chat.completion)."""
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def completion_body(request_id: str, model: str, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
    """A whole text completion (object text_completion)."""
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def chunk_body(
    request_id: str, model: str, chat: bool, text: str | None, finish: str | None = None, first: bool = False
) -> dict[str, Any]:
    """One streamed chunk: a piece of text, or (text None) the end with its finish reason."""
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    return {
        "id": request_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def usage_chunk(request_id: str, model: str, chat: bool, usage: dict[str, int]) -> dict[str, Any]:
    """The last chunk when stream_options.include_usage is set: no choices, the usage."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage,
    }


def field_path(loc: tuple | list) -> str | None:
    """pydantic's error location -> the field as a client names it: ('body', 'messages', 1, 'role') -> messages[1].role."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None
