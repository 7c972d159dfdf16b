"""Serve a model for chat on a managed server: a registry base, or a completed causal-LM run's adapter.

A run's adapter is loaded at run time (POST /v1/load_lora_adapter) into a running server of the same base, else a
server is started with it.

    served = serve_model("20261130-101500-qa-1a2b")     # ServedModel(server, url, model, started)
    for piece in stream_chat(served.url, served.model, messages): ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from openai import APIError

from medcore.errors import MedcoreError
from medcore.models import REGISTRY_NAMES
from medcore.procs import free_port
from medcore.rundir import ADAPTER_CONFIG, RunDir, read_json
from medcore.serve.client import describe_failure, list_models, openai_client
from medcore.serve.config import API_KEY_ENV, NAME_PATTERN, load_serving_config
from medcore.serve.manage import CONFIG_FILE, ServerInfo, list_servers, servers_dir, start_server
from medcore.workspace import Workspace, get_workspace

CHAT_BASES = ("tiny-llama",)  # the registry's causal LMs (minilm is an encoder: it cannot chat)
CHAT_TASK = "causal-lm"


@dataclass(frozen=True)
class ServedModel:
    """Where a model answers: the managed server, its URL, the model name to chat with, and whether it was started."""

    server: str
    url: str
    model: str
    started: bool


def env_api_key() -> str | None:
    """The API key this process sends to managed servers: $MEDCORE_SERVE_API_KEY, the one they start with."""
    return os.environ.get(API_KEY_ENV) or None


def servable_run(run_id: str, ws: Workspace | None = None) -> bool:
    """Whether `run_id` is a completed causal-LM run with an adapter (what the Chat page can serve)."""
    rd = RunDir((ws or get_workspace()).runs / run_id)
    spec = read_json(rd.spec, default={}) or {}
    return (
        spec.get("task") == CHAT_TASK
        and rd.read_status().get("state") == "completed"
        and (rd.adapter / ADAPTER_CONFIG).exists()
    )


def servable_models(ws: Workspace | None = None) -> list[str]:
    """What a chat server can be started for: the registry's causal LMs, then servable runs, newest first."""
    ws = ws or get_workspace()
    folders = sorted(ws.runs.glob("*"), key=lambda p: p.stat().st_mtime, reverse=True) if ws.runs.exists() else []
    return [*CHAT_BASES, *(p.name for p in folders if p.is_dir() and servable_run(p.name, ws))]


def base_key(model: str) -> str:
    """A base model as a managed server records it (launch_config): a registry name, a resolved folder, a hub id."""
    if model in REGISTRY_NAMES or not Path(model).expanduser().exists():
        return model
    return str(Path(model).expanduser().resolve())


def served_base(info: ServerInfo, ws: Workspace) -> tuple[str, str]:
    """(base model as recorded, the name clients use for it) of a managed server."""
    config = read_json(servers_dir(ws) / info.name / CONFIG_FILE, default={}) or {}
    model = str(config.get("model", ""))
    return model, config.get("served_name") or Path(model.rstrip("/")).name


def find_server(base: str, ws: Workspace) -> ServerInfo | None:
    """The newest running managed server whose base is `base`, or None."""
    key = base_key(base)
    return next((s for s in list_servers(ws) if s.state == "running" and served_base(s, ws)[0] == key), None)


def load_adapter(url: str, name: str, folder: Path, api_key: str | None = None) -> None:
    """Load the adapter in `folder` under `name` into the server at `url` (vLLM's runtime-LoRA endpoint)."""
    try:
        openai_client(url, api_key).post(
            "/load_lora_adapter", body={"lora_name": name, "lora_path": str(folder)}, cast_to=httpx.Response
        )
    except APIError as exc:
        raise describe_failure(exc, url) from None


def run_adapter(run_id: str, ws: Workspace) -> tuple[str, Path]:
    """(base model, adapter folder) of a servable run; a run that cannot chat fails saying why."""
    rd = RunDir(ws.runs / run_id)
    if not rd.spec.exists():
        raise MedcoreError(f"No run '{run_id}' in {ws.runs}: pick one on the Runs page (`medcore runs list`).")
    if not servable_run(run_id, ws):
        raise MedcoreError(
            f"Run '{run_id}' is not a completed causal-lm run with an adapter: chat serves text generation. Serve a "
            f"classification run with `medcore serve --model BASE --adapter NAME={run_id}` and POST /v1/classify."
        )
    if not NAME_PATTERN.match(run_id):
        raise MedcoreError(
            f"Run id '{run_id}' cannot be a served model name: serve it with `medcore serve --adapter`."
        )
    return str(read_json(rd.spec)["model"]), rd.adapter


def serve_model(model: str, ws: Workspace | None = None) -> ServedModel:
    """Make `model` answer on a managed server: a registry base (CHAT_BASES) or a servable run's id, served under
    the run id. A running server of the same base is reused (the adapter loaded at run time); else one is started
    on a free port (seconds for the embedded server: it waits for /health). The API key, if any, is $MEDCORE_SERVE_API_KEY.

    Raises:
        MedcoreError: not a chat model or servable run, the server refused the adapter, or it failed to start.
    """
    ws = ws or get_workspace()
    key = env_api_key()
    if model in CHAT_BASES:
        base, adapter = model, None
    else:
        base, adapter = run_adapter(model, ws)
    running = find_server(base, ws)
    if running is not None:
        answer_as = model if adapter else served_base(running, ws)[1]
        if adapter and model not in list_models(running.url, key):
            load_adapter(running.url, model, adapter, key)
        return ServedModel(running.name, running.url, answer_as, started=False)
    config = load_serving_config(model=base, adapters={model: adapter} if adapter else None, port=free_port())
    info = start_server(config, ws=ws)
    return ServedModel(info.name, info.url, model if adapter else config.base_name, started=True)
