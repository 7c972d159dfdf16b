"""Run a server in the foreground: the embedded one under uvicorn (or in a thread, for notebooks and tests), or vLLM."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import threading
import time
from dataclasses import dataclass

from medcore.errors import MedcoreError
from medcore.models import resolve_model_path
from medcore.serve.config import ServingConfig
from medcore.workspace import Workspace, get_workspace


def configure_logging() -> None:
    """One line per event on stderr (a managed server's server.log). Request bodies are never logged."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def build_uvicorn(config: ServingConfig, ws: Workspace, pool=None):
    """The uvicorn server of the embedded app (models loaded now, so /health answers only once they are).

    `pool`: an already loaded ModelPool to serve (with this config's address and limits) instead of loading one.
    """
    import uvicorn

    from medcore.serve.app import create_app
    from medcore.serve.engine import ModelPool

    pool = pool or ModelPool(config, ws)
    app = create_app(pool, config)
    logging.getLogger("medcore.serve").info(
        "serving %s on %s (%s)",
        ", ".join(pool.model_names()),
        config.url,
        "API key required" if config.key() else "no API key",
    )
    if config.log_prompts:
        logging.getLogger("medcore.serve").warning(
            "log_prompts is on: prompt text is written to this log (debug only)"
        )
    settings = uvicorn.Config(app, host=config.host, port=config.port, log_config=None, timeout_graceful_shutdown=5)
    return uvicorn.Server(settings)


def describe_launch(config: ServingConfig, ws: Workspace | None = None) -> str:
    """What `run_server` would start, for --dry-run: vLLM's command line (key hidden) or the embedded config."""
    if config.engine == "embedded":
        return json.dumps(config.public_dict(), indent=2, default=str)
    from medcore.serve.vllm import build_vllm_command

    argv, env = build_vllm_command(config, resolve_model_path(config.model, ws or get_workspace()))
    shown = " ".join(f"{key}={'***' if 'KEY' in key else value}" for key, value in env.items())
    return f"{shown} {shlex.join(argv)}"


def exec_vllm(config: ServingConfig, ws: Workspace) -> None:
    """Replace this process with `vllm serve ...` (so stopping the managed server stops vLLM itself)."""
    from medcore.serve.vllm import build_vllm_command

    if shutil.which("vllm") is None:
        raise MedcoreError(
            "vLLM is not installed here. It runs on CUDA GPU hosts only (`pip install medcore[gpu]` there); on this "
            "machine use --engine embedded."
        )
    argv, env = build_vllm_command(config, resolve_model_path(config.model, ws))
    sys.stdout.flush()
    os.execvpe(argv[0], argv, {**os.environ, **env})


def run_server(config: ServingConfig, ws: Workspace | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    ws = ws or get_workspace()
    configure_logging()
    if config.engine == "vllm":
        exec_vllm(config, ws)
    build_uvicorn(config, ws).run()


@dataclass
class ThreadedServer:
    """An embedded server running in a thread of this process (notebooks, tests, benchmarks)."""

    server: object
    thread: threading.Thread
    url: str
    pool: object

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)


def serve_in_thread(
    config: ServingConfig, ws: Workspace | None = None, pool=None, start_timeout_s: float = 60.0
) -> ThreadedServer:
    """Start the embedded server in a daemon thread; returns once it accepts connections (`pool`: see build_uvicorn)."""
    server = build_uvicorn(config, ws or get_workspace(), pool)
    thread = threading.Thread(target=server.run, name="medcore-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise MedcoreError(f"The embedded server did not start on {config.url}: is the port taken? See the log.")
        time.sleep(0.02)
    return ThreadedServer(server, thread, config.url, server.config.app.state.serve.pool)
