"""Serving: adapters through vLLM (GPU hosts) or the embedded OpenAI-compatible server (CPU), managed like jobs.

    medcore serve --model tiny-llama --adapter qa=RUN_ID --detach     # servers/tiny-llama/: url, pid, log
    python -m medcore.serve --config configs/serving.yaml              # foreground

Imports are lazy so `import medcore.serve` stays cheap; torch and FastAPI load when a server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

_EXPORTS = {
    "ServingConfig": "medcore.serve.config",
    "load_serving_config": "medcore.serve.config",
    "build_vllm_command": "medcore.serve.vllm",
    "ModelServer": "medcore.serve.model_server",
    "ServerInfo": "medcore.serve.manage",
    "start_server": "medcore.serve.manage",
    "list_servers": "medcore.serve.manage",
    "stop_server": "medcore.serve.manage",
    "server_status": "medcore.serve.manage",
    "serve_in_thread": "medcore.serve.server",
    "guard_messages": "medcore.serve.guard",
    "list_models": "medcore.serve.client",
    "stream_chat": "medcore.serve.client",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from medcore.serve.client import list_models, stream_chat  # noqa: F401
    from medcore.serve.config import ServingConfig, load_serving_config  # noqa: F401
    from medcore.serve.guard import guard_messages  # noqa: F401
    from medcore.serve.manage import ServerInfo, list_servers, server_status, start_server, stop_server  # noqa: F401
    from medcore.serve.model_server import ModelServer  # noqa: F401
    from medcore.serve.server import serve_in_thread  # noqa: F401
    from medcore.serve.vllm import build_vllm_command  # noqa: F401


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medcore.serve' has no attribute '{name}'")
