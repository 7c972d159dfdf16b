"""The embedded OpenAI-compatible HTTP server (FastAPI): routes, API key, bounded queue, timeouts, disconnects.

Model calls run one at a time in a worker thread, so the event loop keeps answering (health, 429s, streams)
while a model generates. A request is admitted only while fewer than `queue_size` are running or waiting (else
429); it is stopped after `request_timeout_s` (408) and as soon as its client disconnects.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from medcore.serve.config import ServingConfig
from medcore.serve.engine import ModelPool
from medcore.serve.generation import GenerationSettings
from medcore.serve.http_errors import install_error_handlers
from medcore.serve.protocol import (
    ApiError,
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    LoadAdapterRequest,
    SamplingFields,
    UnloadAdapterRequest,
    chat_body,
    chunk_body,
    completion_body,
    error_body,
    new_id,
    usage_body,
    usage_chunk,
)

logger = logging.getLogger("medcore.serve")


@dataclass
class ServerState:
    """What the routes share. Counters are touched on the event loop thread only."""

    pool: ModelPool
    config: ServingConfig
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model"))
    active: int = 0  # admitted requests, running or waiting for the model
    rejected: int = 0
    cancelled: int = 0
    timed_out: int = 0

    def admit(self) -> None:
        if self.active >= self.config.queue_size:
            self.rejected += 1
            raise ApiError(
                429,
                f"The server is busy: {self.active} requests are running or waiting (queue_size "
                f"{self.config.queue_size}). Retry shortly.",
                code="queue_full",
                kind="rate_limit_error",
            )
        self.active += 1


def state_of(request: Request) -> ServerState:
    return request.app.state.serve


def require_key(request: Request) -> None:
    """401 unless the request carries `Authorization: Bearer KEY` (when the server has a key)."""
    key = state_of(request).config.key()
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise ApiError(
            401,
            "Missing or wrong API key: send the header `Authorization: Bearer KEY` (the key the server started with).",
            code="invalid_api_key",
            kind="authentication_error",
        )


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n"


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body is already read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_model_call(request: Request, call: Callable, cancel: threading.Event):
    """Run a blocking model call in the worker thread; stop it on timeout (408) or when the client disconnects."""
    state = state_of(request)
    future = asyncio.get_running_loop().run_in_executor(state.executor, call)
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {future, gone}, timeout=state.config.request_timeout_s, return_when="FIRST_COMPLETED"
        )
    finally:
        gone.cancel()
    if future in done:
        return future.result()
    cancel.set()  # the generation stops after its current token; a call still queued returns at once
    if gone in done:
        state.cancelled += 1
        raise ApiError(499, "The client disconnected.", code="client_closed")
    state.timed_out += 1
    raise ApiError(
        408,
        f"The request took longer than request_timeout_s ({state.config.request_timeout_s:g} s) and was stopped. "
        "Ask for fewer max_tokens, or retry when the server is less busy.",
        code="timeout",
        kind="timeout_error",
    )


class EventStream(StreamingResponse):
    """Server-sent events; `on_close` runs once the response ends, however it ends (done, error, disconnect)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


@dataclass(frozen=True)
class Job:
    """One admitted generation."""

    model: str
    prompt_ids: list[int]
    settings: GenerationSettings
    chat: bool
    stream: bool
    include_usage: bool
    cancel: threading.Event = field(default_factory=threading.Event)


async def stream_job(state: ServerState, job: Job, request_id: str) -> AsyncIterator[str]:
    """The SSE events of one generation: text pieces as they come, the finish reason, usage, [DONE]."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    call = partial(
        state.pool.generate,
        job.model,
        job.prompt_ids,
        job.settings,
        job.cancel,
        lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece),
    )
    future = loop.run_in_executor(state.executor, call)
    future.add_done_callback(lambda _: pieces.put_nowait(None))
    deadline = loop.time() + state.config.request_timeout_s
    finished = False
    try:
        if job.chat:
            yield sse(chunk_body(request_id, job.model, True, "", first=True))
        while True:
            piece = await asyncio.wait_for(pieces.get(), timeout=max(deadline - loop.time(), 0))
            text, ended = piece or "", piece is None
            while not ended and not pieces.empty():  # coalesce what a slow reader let pile up
                more = pieces.get_nowait()
                text, ended = text + (more or ""), more is None
            if text:
                yield sse(chunk_body(request_id, job.model, job.chat, text))
            if ended:
                break
        result = future.result()
        finished = True
        yield sse(chunk_body(request_id, job.model, job.chat, None, finish=result.finish_reason))
        if job.include_usage:
            usage = usage_body(result.prompt_tokens, result.completion_tokens)
            yield sse(usage_chunk(request_id, job.model, job.chat, usage))
    except TimeoutError:
        finished = True
        state.timed_out += 1
        yield sse(error_body("The request took longer than request_timeout_s and was stopped.", "timeout_error"))
    except ApiError as exc:
        finished = True
        yield sse(exc.body())
    finally:
        job.cancel.set()
        if not finished:
            state.cancelled += 1  # the client went away mid-stream
    yield sse("[DONE]")


def check_stop_unset(body: SamplingFields) -> None:
    if body.stop not in (None, "", []):
        raise ApiError(400, "stop sequences are not supported by the embedded server: leave stop empty.", "stop")


def plan_settings(state: ServerState, body: SamplingFields, n_prompt: int, prompt_field: str) -> GenerationSettings:
    """The request's generation settings within the server's cap and the model's context (400 naming the field)."""
    cap, context = state.config.max_tokens_cap, state.pool.max_len
    asked = body.token_limit()
    if asked is not None and asked > cap:
        raise ApiError(
            400, f"max_tokens {asked} is above this server's cap of {cap}: ask for at most {cap}.", "max_tokens"
        )
    room = context - n_prompt
    if room < 1:
        raise ApiError(
            400,
            f"The prompt is {n_prompt} tokens; this model's context is {context} tokens (prompt and answer "
            "together). Shorten it.",
            prompt_field,
            code="context_length_exceeded",
        )
    max_tokens = asked if asked is not None else min(cap, room)
    if max_tokens > room:
        raise ApiError(
            400,
            f"The prompt ({n_prompt} tokens) and max_tokens ({max_tokens}) exceed this model's context of {context} "
            f"tokens: ask for at most {room} tokens, or shorten the prompt.",
            "max_tokens",
            code="context_length_exceeded",
        )
    if body.min_tokens > max_tokens:
        raise ApiError(400, f"min_tokens {body.min_tokens} is above max_tokens {max_tokens}.", "min_tokens")
    return GenerationSettings(max_tokens, body.min_tokens, body.temperature, body.top_p, body.seed)


def check_generative(state: ServerState, model: str) -> None:
    if state.pool.kind_of(model) != "generate":
        raise ApiError(400, f"The model '{model}' is a classifier: send it to /v1/classify.", "model")


def leave(state: ServerState, job: Job) -> None:
    job.cancel.set()
    state.active -= 1


async def answer(request: Request, state: ServerState, job: Job):
    """Run a job once admitted (429 when the queue is full): a stream of events, or one JSON body at the end."""
    request_id = new_id("chatcmpl" if job.chat else "cmpl")
    state.admit()
    if job.stream:
        return EventStream(stream_job(state, job, request_id), on_close=lambda: leave(state, job))
    try:
        call = partial(state.pool.generate, job.model, job.prompt_ids, job.settings, job.cancel)
        result = await run_model_call(request, call, job.cancel)
    finally:
        leave(state, job)
    usage = usage_body(result.prompt_tokens, result.completion_tokens)
    build = chat_body if job.chat else completion_body
    return JSONResponse(build(request_id, job.model, result.text, result.finish_reason, usage))


def log_prompt(state: ServerState, model: str, text: str) -> None:
    """Debug only (config.log_prompts, used by tests to prove the PHI guard): prompt text may be PHI."""
    if state.config.log_prompts:
        logger.info("prompt for %s: %s", model, json.dumps(text))


async def chat_completions(request: Request, body: ChatRequest):
    state = state_of(request)
    if not body.messages:
        raise ApiError(400, "messages is empty: send at least one message, e.g. a user message.", "messages")
    check_stop_unset(body)
    check_generative(state, body.model)
    text, ids = state.pool.encode_chat([{"role": m.role, "content": m.text()} for m in body.messages])
    log_prompt(state, body.model, text)
    settings = plan_settings(state, body, len(ids), "messages")
    usage = bool(body.stream_options and body.stream_options.include_usage)
    return await answer(request, state, Job(body.model, ids, settings, True, body.stream, usage))


async def completions(request: Request, body: CompletionRequest):
    state = state_of(request)
    check_stop_unset(body)
    check_generative(state, body.model)
    text, ids = state.pool.encode_text(body.prompt)
    log_prompt(state, body.model, text)
    settings = plan_settings(state, body, len(ids), "prompt")
    usage = bool(body.stream_options and body.stream_options.include_usage)
    return await answer(request, state, Job(body.model, ids, settings, False, body.stream, usage))


async def classify(request: Request, body: ClassifyRequest):
    """Labels with probabilities per text: {"data": [{"index", "label", "probs", "labels"}], ...}."""
    state = state_of(request)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise ApiError(400, "input is empty: send a text or a list of texts.", "input")
    for text in texts:
        log_prompt(state, body.model, text)
    state.admit()
    cancel = threading.Event()
    try:
        labels, probs = await run_model_call(request, partial(state.pool.classify, body.model, texts), cancel)
    finally:
        state.active -= 1
    data = [
        {"index": i, "label": labels[max(range(len(row)), key=row.__getitem__)], "probs": row, "labels": list(labels)}
        for i, row in enumerate(probs)
    ]
    return {"id": new_id("classify"), "object": "list", "model": body.model, "data": data}


def model_card(state: ServerState, name: str) -> dict:
    """A /v1/models entry; adapters name their base as `parent` and their folder as `root`, as vLLM does."""
    info = state.pool.adapters.get(name)
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "medcore",
        "root": str(info.path) if info else str(state.pool.source),
        "parent": state.pool.base_name if info else None,
        "max_model_len": state.pool.max_len,
        "kind": info.kind if info else ("generate" if state.pool.causal is not None else "classify"),
    }


async def list_models(request: Request):
    state = state_of(request)
    return {"object": "list", "data": [model_card(state, name) for name in state.pool.model_names()]}


async def load_lora_adapter(request: Request, body: LoadAdapterRequest):
    state = state_of(request)
    call = partial(state.pool.load_adapter, body.lora_name, body.lora_path)
    await asyncio.get_running_loop().run_in_executor(state.executor, call)
    logger.info("loaded adapter %s from %s", body.lora_name, body.lora_path)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


async def unload_lora_adapter(request: Request, body: UnloadAdapterRequest):
    state = state_of(request)
    await asyncio.get_running_loop().run_in_executor(state.executor, state.pool.unload_adapter, body.lora_name)
    logger.info("unloaded adapter %s", body.lora_name)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")


async def health(request: Request):
    state = state_of(request)
    return {
        "status": "ok",
        "active": state.active,
        "queue_size": state.config.queue_size,
        "rejected": state.rejected,
        "cancelled": state.cancelled,
        "timed_out": state.timed_out,
    }


def create_app(pool: ModelPool, config: ServingConfig) -> FastAPI:
    """The FastAPI app serving `pool` under `config`'s limits."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.executor.shutdown(wait=False, cancel_futures=True)

    state = ServerState(pool=pool, config=config)
    app = FastAPI(title="MedCore embedded server", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.serve = state
    install_error_handlers(app)
    app.add_api_route("/health", health, methods=["GET"])
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
    v1.add_api_route("/models", list_models, methods=["GET"])
    v1.add_api_route("/chat/completions", chat_completions, methods=["POST"])
    v1.add_api_route("/completions", completions, methods=["POST"])
    v1.add_api_route("/classify", classify, methods=["POST"])
    v1.add_api_route("/load_lora_adapter", load_lora_adapter, methods=["POST"])
    v1.add_api_route("/unload_lora_adapter", unload_lora_adapter, methods=["POST"])
    app.include_router(v1)
    return app
