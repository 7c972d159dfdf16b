"""An OpenAI-compatible endpoint as the model of an eval: `openai:URL#MODEL` answers through /v1/completions.

    medcore eval run 'openai:http://127.0.0.1:8000/v1#qa' --dataset qa-redacted --max-new-tokens 32
    medcore eval run 'openai-chat:https://llm.example.org/v1#my-model' --dataset qa-redacted

- `openai:URL#MODEL`: POST URL/completions with the prompt exactly as `medcore train` formats it (what a MedCore
  adapter served by `medcore serve` or vLLM was trained on; the server adds BOS, as training does).
- `openai-chat:URL#MODEL`: POST URL/chat/completions with the note and question as one user message, for
  instruction-tuned chat models (the server applies its own chat template).
URL is the API base ("http://host:8000/v1"; a bare "http://host:8000" gets "/v1"). Greedy (temperature 0), at most
max_new_tokens tokens. The key is read from $MEDCORE_EVAL_API_KEY, else $OPENAI_API_KEY, and is never recorded.
Generation only: the OpenAI API has no classification or token-classification route (MedCore's /v1/classify is its
own), so classification and token-classification datasets are evaluated in-process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from medcore.errors import MedcoreError

PREFIXES = {"openai:": "completions", "openai-chat:": "chat"}
KEY_ENV = ("MEDCORE_EVAL_API_KEY", "OPENAI_API_KEY")
NO_KEY = "none"  # the client insists on a key; a server without one ignores it
MAX_WORKERS = 8  # requests in flight: fills a vLLM batch, and stays under the embedded server's queue of 16
MAX_RETRIES = 2  # the client's own retries with backoff (about 0.5 s, then 1 s): on 429 (queue full), 5xx, drops
TIMEOUT_S = 300.0
SHAPE = "openai:URL#MODEL (or openai-chat:URL#MODEL), e.g. openai:http://127.0.0.1:8000/v1#tiny-llama"


@dataclass(frozen=True)
class Endpoint:
    """Where to send prompts: the API (completions or chat), the API base URL and the served model's name."""

    api: str
    base_url: str
    model: str

    def identity(self) -> dict[str, str]:
        """What config.json records: no key, and no user or password from the URL."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return {"kind": "endpoint", "api": self.api, "url": urlunsplit(parts._replace(netloc=netloc)),
                "model": self.model}  # fmt: skip


def is_endpoint(model: str) -> bool:
    return model.startswith(tuple(PREFIXES))


def parse_endpoint(model: str) -> Endpoint:
    """`openai:URL#MODEL` -> Endpoint.

    Raises:
        MedcoreError: not that shape (no #MODEL, not an http(s) URL).
    """
    prefix = next(p for p in PREFIXES if model.startswith(p))
    url, _, name = model[len(prefix) :].rpartition("#")
    parts = urlsplit(url)
    if not name or parts.scheme not in ("http", "https") or not parts.hostname:
        raise MedcoreError(f"The endpoint '{model}' is not of the form {SHAPE}.")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1")
    return Endpoint(PREFIXES[prefix], urlunsplit(parts).rstrip("/"), name)


def api_key() -> str:
    return next((os.environ[name] for name in KEY_ENV if os.environ.get(name)), NO_KEY)


def chat_message(prompt: str) -> str:
    """The training prompt without its trailing "Answer: " cue: a chat template adds its own turn markers."""
    return prompt.removesuffix("Answer: ").rstrip()


def endpoint_outputs(
    endpoint: Endpoint,
    prompts: list[str],
    max_new_tokens: int,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """The endpoint's greedy answer to each prompt, in the prompts' order; `workers` requests in flight.

    Raises:
        MedcoreError: the endpoint cannot be reached, or refuses a request (status and error code, never its
            message, which may quote the note).
    """
    import openai  # the client loads only when an endpoint is evaluated

    client = openai.OpenAI(base_url=endpoint.base_url, api_key=api_key(), max_retries=MAX_RETRIES, timeout=TIMEOUT_S)

    def answer(row: int) -> str:
        try:
            if endpoint.api == "chat":
                messages = [{"role": "user", "content": chat_message(prompts[row])}]
                reply = client.chat.completions.create(
                    model=endpoint.model, messages=messages, max_tokens=max_new_tokens, temperature=0
                )
                return reply.choices[0].message.content or ""
            reply = client.completions.create(
                model=endpoint.model, prompt=prompts[row], max_tokens=max_new_tokens, temperature=0
            )
            return reply.choices[0].text or ""
        except openai.APIStatusError as exc:
            raise MedcoreError(refusal_message(endpoint, row, exc)) from None
        except openai.APIConnectionError:
            raise MedcoreError(
                f"Cannot reach the endpoint {endpoint.identity()['url']} (row {row}): is the server running and the "
                "URL the API base (ending in /v1)?"
            ) from None

    outputs: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, MAX_WORKERS))) as pool:
        futures = [pool.submit(answer, row) for row in range(len(prompts))]
        try:
            for future in futures:
                outputs.append(future.result())
                if progress is not None:
                    progress(len(outputs), len(prompts))
        except BaseException:
            for future in futures:  # one refusal ends the eval: no more requests after the ones in flight
                future.cancel()
            raise
    return outputs


def refusal_message(endpoint: Endpoint, row: int, exc) -> str:
    code = ", ".join(str(v) for v in (getattr(exc, "code", None), getattr(exc, "param", None)) if v)
    detail = f" ({code})" if code else ""
    url = endpoint.identity()["url"]
    hint = {
        401: "Set $MEDCORE_EVAL_API_KEY to the server's key.",
        404: f"Is '{endpoint.model}' one of the models it serves (GET {url}/models)?",
    }.get(exc.status_code, "Its message is not shown (it may quote the note): read the server's log; a long note "
                           "may need a smaller --max-new-tokens.")  # fmt: skip
    return f"The endpoint {url} refused row {row} with HTTP {exc.status_code}{detail}. {hint}"
