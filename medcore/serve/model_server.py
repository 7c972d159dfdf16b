"""The classic `ModelServer(model_path, config_path).start(host, port)` shape, mapped onto MedCore's serving."""

from __future__ import annotations

import os
from pathlib import Path

from medcore.serve.config import ServingConfig, load_serving_config
from medcore.serve.manage import ServerInfo, start_server, stop_server
from medcore.serve.server import run_server


class ModelServer:
    """A base model (plus adapters) and a serving config; `start` serves it in the foreground or detached.

    ModelServer("tiny-llama", "configs/serving.yaml").start("127.0.0.1", 8000)             # blocks
    info = ModelServer("tiny-llama", adapters={"qa": run_adapter}).start(port=8001, detach=True)
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        config_path: str | os.PathLike | None = None,
        adapters: dict[str, str | os.PathLike] | None = None,
    ):
        self.model_path, self.config_path = str(model_path), config_path
        self.adapters = {name: Path(folder) for name, folder in (adapters or {}).items()}
        self.name: str | None = None

    def config(self, host: str | None = None, port: int | None = None) -> ServingConfig:
        """The validated config: the file, then the model, adapters, host and port given here."""
        return load_serving_config(
            self.config_path, model=self.model_path, adapters=self.adapters or None, host=host, port=port
        )

    def start(
        self, host: str | None = None, port: int | None = None, *, detach: bool = False, name: str | None = None
    ) -> ServerInfo | None:
        """Serve. Foreground (default): blocks until Ctrl-C. detach=True: a managed server; returns its info."""
        config = self.config(host, port)
        if not detach:
            run_server(config)
            return None
        info = start_server(config, name=name)
        self.name = info.name
        return info

    def stop(self) -> ServerInfo:
        """Stop the managed server this object started."""
        if self.name is None:
            raise RuntimeError("stop() is for a server started with start(detach=True)")
        return stop_server(self.name)
