"""Managed servers: a server started detached is a process with its state in the workspace, like a job.

servers/<name>/
  state.json     name, engine, url, pid (+ create time), job tag, models at start, started/stopped times, state
  serving.json   the resolved ServingConfig the process was started with (never the API key)
  server.log     the server's stdout and stderr (no prompt text unless log_prompts, a debug option, is on)

States: starting -> running -> stopped; a process found gone without being stopped is `dead`.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcore.access.acting import acting_for
from medcore.access.actor import Actor
from medcore.errors import MedcoreError
from medcore.models import REGISTRY_NAMES
from medcore.procs import JOB_TAG_ENV, check_port, find_process, python_module, spawn_detached, terminate_job
from medcore.rundir import read_json, write_json_atomic
from medcore.serve.config import API_KEY_ENV, ServingConfig
from medcore.workspace import ENV_VAR, Workspace, get_workspace

SERVERS = "servers"
STATE_FILE = "state.json"
CONFIG_FILE = "serving.json"
LOG_FILE = "server.log"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
START_TIMEOUT_S = {"embedded": 300.0, "vllm": 1200.0}  # vLLM compiles CUDA graphs and loads big weights
LIVE_STATES = ("starting", "running")


@dataclass(frozen=True)
class ServerInfo:
    """What the console and CLI show for one managed server."""

    name: str
    state: str
    url: str
    engine: str
    models: list[str] = field(default_factory=list)
    pid: int | None = None
    started: float | None = None
    log: str = ""
    api_key_required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def servers_dir(ws: Workspace) -> Path:
    return ws.root / SERVERS


def check_server_name(name: str) -> str:
    if not NAME.match(name):
        raise MedcoreError(
            f"Server name '{name}' is not valid: use lower-case letters, digits, '.', '_', '-' (e.g. qa-adapter)."
        )
    return name


def read_state(folder: Path) -> dict[str, Any]:
    return read_json(folder / STATE_FILE, default={}) or {}


def info_from(folder: Path, state: dict[str, Any]) -> ServerInfo:
    return ServerInfo(
        name=folder.name,
        state=state.get("state", "unknown"),
        url=state.get("url", ""),
        engine=state.get("engine", ""),
        models=list(state.get("models", [])),
        pid=(state.get("process") or {}).get("pid"),
        started=state.get("started"),
        log=str(folder / LOG_FILE),
        api_key_required=bool(state.get("api_key_required")),
    )


def observe(folder: Path) -> ServerInfo:
    """The server's state now; a live state whose process is gone is settled as `dead`."""
    state = read_state(folder)
    if state.get("state") in LIVE_STATES and find_process(state.get("process")) is None:
        state.update(state="dead", ended=time.time())
        write_json_atomic(folder / STATE_FILE, state)
    return info_from(folder, state)


def list_servers(ws: Workspace | None = None) -> list[ServerInfo]:
    """Every managed server of the workspace, newest first, dead processes detected."""
    root = servers_dir(ws or get_workspace())
    folders = [p for p in root.iterdir() if (p / STATE_FILE).exists()] if root.exists() else []
    infos = [observe(folder) for folder in folders]
    return sorted(infos, key=lambda info: info.started or 0, reverse=True)


def find_server(name: str, ws: Workspace | None = None) -> Path:
    """The folder of managed server `name`; an unknown name fails with the names that exist."""
    ws = ws or get_workspace()
    folder = servers_dir(ws) / name
    if NAME.match(name) and (folder / STATE_FILE).exists():
        return folder
    known = ", ".join(info.name for info in list_servers(ws)) or "none"
    raise MedcoreError(
        f"No managed server '{name}' in {servers_dir(ws)}. Servers are: {known}. See `medcore serve list`."
    )


def server_status(name: str, ws: Workspace | None = None) -> ServerInfo:
    return observe(find_server(name, ws))


def launch_config(config: ServingConfig) -> dict[str, Any]:
    """The config as the detached process reads it: folders made absolute (it may start elsewhere), no API key."""
    data = config.public_dict()
    if config.model not in REGISTRY_NAMES and Path(config.model).expanduser().exists():
        data["model"] = str(Path(config.model).expanduser().resolve())
        data["served_name"] = config.base_name
    data["adapters"] = {name: str(Path(folder).expanduser().resolve()) for name, folder in config.adapters.items()}
    return data


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def log_tail(path: Path, lines: int = 6) -> str:
    """The end of a server log (start-up lines only reach here: no request has been served yet)."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_healthy(folder: Path, url: str, process: dict[str, Any], timeout_s: float) -> None:
    """Poll GET /health until it answers 200; fail when the process exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_healthy(url):
            return
        if find_process(process) is None:
            raise MedcoreError(
                f"Server '{folder.name}' exited while starting. Last log lines: {log_tail(folder / LOG_FILE)}. "
                f"Full log: {folder / LOG_FILE}."
            )
        time.sleep(0.25)
    raise MedcoreError(
        f"Server '{folder.name}' did not answer {url}/health within {timeout_s:.0f} s; it was stopped. "
        f"See {folder / LOG_FILE}."
    )


def start_server(
    config: ServingConfig, name: str | None = None, ws: Workspace | None = None, timeout_s: float | None = None
) -> ServerInfo:
    """Start `config` as a detached process, wait for /health, and return its state (state running, the URL).

    Raises:
        MedcoreError: a server of that name is still running, the port is taken, or the server failed to start
            (with the end of its log).
    """
    ws = ws or get_workspace()
    name = check_server_name(name or config.base_name.lower())
    folder = servers_dir(ws) / name
    if find_process(read_state(folder).get("process")) is not None:
        raise MedcoreError(
            f"Server '{name}' is already running at {read_state(folder).get('url')}: stop it with "
            f"`medcore serve stop {name}`, or pick another --name."
        )
    check_port(config.port, "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / CONFIG_FILE, launch_config(config))
    tag = f"serve-{name}-{uuid.uuid4().hex[:8]}"
    env = {JOB_TAG_ENV: tag, ENV_VAR: str(ws.root), **({API_KEY_ENV: config.key()} if config.key() else {})}
    command = python_module("medcore.serve", "--config", str(folder / CONFIG_FILE))
    process = spawn_detached(command, folder / LOG_FILE, env)
    state = {
        "name": name,
        "engine": config.engine,
        "url": config.url,
        "process": process,
        "tag": tag,
        "models": [config.base_name, *config.adapters],
        "started": time.time(),
        "state": "starting",
        "api_key_required": config.key() is not None,
    }
    write_json_atomic(folder / STATE_FILE, state)
    try:
        wait_until_healthy(folder, config.url, process, timeout_s or START_TIMEOUT_S[config.engine])
    except MedcoreError:
        terminate_job(process["pid"], tag, grace_s=5.0)
        write_json_atomic(folder / STATE_FILE, {**state, "state": "dead", "ended": time.time()})
        raise
    write_json_atomic(folder / STATE_FILE, {**state, "state": "running"})
    return info_from(folder, read_state(folder))


def stop_server(
    name: str, ws: Workspace | None = None, grace_s: float = 10.0, *, actor: Actor | None = None
) -> ServerInfo:
    """Stop managed server `name` (_stop_server); for `actor`, checked and audited."""
    with acting_for(ws or get_workspace(), actor, "serve_model", kind="server_stopped", server=name):
        return _stop_server(name, ws, grace_s)


def _stop_server(name: str, ws: Workspace | None = None, grace_s: float = 10.0) -> ServerInfo:
    """SIGTERM the server's processes (SIGKILL after `grace_s`) and record it stopped."""
    folder = find_server(name, ws)
    state = read_state(folder)
    if find_process(state.get("process")) is not None:
        # spawn_detached starts a new session, so the server's pid is also its process group id.
        terminate_job(state["process"]["pid"], state.get("tag"), grace_s=grace_s)
    state.update(state="stopped", ended=time.time())
    write_json_atomic(folder / STATE_FILE, state)
    return info_from(folder, state)
