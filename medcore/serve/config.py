"""The serving config (`ServingConfig`): what to serve, where, and the limits; built once at the edge and checked."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from medcore.errors import MedcoreError, validated

# A model or adapter name clients put in `model`: no spaces or slashes, so it is also a safe vLLM --lora-modules key.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
API_KEY_ENV = "MEDCORE_SERVE_API_KEY"  # read when no key is given, so a key need not sit in argv or a file


class ServingConfig(BaseModel):
    """One server: the engine, the base model and its adapters, the address, and the request limits."""

    model_config = ConfigDict(extra="forbid")
    engine: Literal["embedded", "vllm"] = Field(
        "embedded",
        description="embedded: MedCore's OpenAI-compatible server (FastAPI, CPU or one GPU); vllm: `vllm serve` "
        "(CUDA only, for GPU hosts).",
    )
    model: str = Field(
        "tiny-llama",
        description="Base model: a registry name (tiny-llama, minilm), a Hugging Face model folder, or a hub id "
        "(vLLM downloads hub ids; the embedded server needs a local folder).",
    )
    served_name: str | None = Field(
        None, description="The base model's name in /v1/models and requests. Default: the model's folder name."
    )
    adapters: dict[str, Path] = Field(
        default_factory=dict,
        description="LoRA adapters loaded at start, NAME -> adapter folder, run folder or run id; each is served as "
        "the model NAME, as vLLM's --lora-modules does.",
    )
    host: str = Field(
        "127.0.0.1", description="Address to bind. 127.0.0.1 keeps the server on this machine; 0.0.0.0 exposes it."
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    api_key: SecretStr | None = Field(
        None,
        description=f"Require `Authorization: Bearer KEY` on /v1 requests. Default: ${API_KEY_ENV}, else none. "
        "Never written to the workspace.",
    )
    max_model_len: int | None = Field(
        None, ge=16, description="Context length in tokens (prompt + answer). Default: the model's position table."
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="vLLM: share of GPU memory for weights and KV cache."
    )
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="vLLM: GPUs one model is split across.")
    max_lora_rank: int = Field(
        16, ge=1, le=512, description="Largest LoRA rank an adapter may have (vLLM sizes its LoRA buffers by it)."
    )
    max_loras: int = Field(4, ge=1, le=256, description="vLLM: adapters that can be active in one batch.")
    max_tokens_cap: int = Field(
        512, ge=1, description="Largest max_tokens a request may ask for; more is refused with 400."
    )
    queue_size: int = Field(
        16, ge=1, le=10_000, description="Requests running or waiting at once; the next one gets 429 (retry later)."
    )
    request_timeout_s: float = Field(
        120.0, gt=0.0, description="A request still unanswered after this many seconds is stopped with 408."
    )
    log_prompts: bool = Field(
        False,
        description="Debug only (tests use it to prove the PHI guard): write every received prompt to the server "
        "log. Prompts may hold PHI: never turn this on for real use.",
    )

    @field_validator("adapters")
    @classmethod
    def _check_adapter_names(cls, adapters: dict[str, Path]) -> dict[str, Path]:
        bad = [name for name in adapters if not NAME_PATTERN.match(name)]
        if bad:
            raise ValueError(
                f"adapter names {', '.join(map(repr, bad))} are not valid: use letters, digits, '.', '_', '-', ':' "
                "(no spaces or slashes), at most 64 characters"
            )
        return adapters

    @model_validator(mode="after")
    def _check_names(self) -> ServingConfig:
        if self.served_name is not None and not NAME_PATTERN.match(self.served_name):
            raise ValueError("served_name must be letters, digits, '.', '_', '-', ':' (no spaces or slashes)")
        if self.base_name in self.adapters:
            raise ValueError(f"adapter name '{self.base_name}' is the base model's name: pick another name")
        return self

    @property
    def base_name(self) -> str:
        """The name clients use for the base model."""
        return self.served_name or Path(self.model.rstrip("/")).name

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def key(self) -> str | None:
        """The API key in clear, or None when requests need none."""
        return self.api_key.get_secret_value() if self.api_key else None

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data without the API key (what is written next to a managed server)."""
        return self.model_dump(mode="json", exclude={"api_key"})


def parse_adapter_args(items: list[str] | None) -> dict[str, Path]:
    """`["NAME=DIR", ...]` (the --adapter options) -> {NAME: DIR}.

    Raises:
        MedcoreError: an item without '=', or a name given twice.
    """
    adapters: dict[str, Path] = {}
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise MedcoreError(
                f"--adapter '{item}' is not NAME=DIR: write e.g. --adapter qa=workspace/runs/RUN/adapter."
            )
        if name in adapters:
            raise MedcoreError(f"--adapter name '{name}' is given twice: give each adapter its own name.")
        adapters[name] = Path(folder).expanduser()
    return adapters


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a serving config file (YAML or JSON)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise MedcoreError(f"Serving config {path} not found: see configs/serving.yaml for an example.") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise MedcoreError(f"Serving config {path} is not valid YAML{where}: fix the syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MedcoreError(f"Serving config {path} must be a mapping of fields (see configs/serving.yaml).")
    return data


def load_serving_config(path: str | os.PathLike | None = None, **overrides: Any) -> ServingConfig:
    """The config in `path` (if any) with `overrides` applied (None values are ignored), every problem in one error.

    The API key falls back to $MEDCORE_SERVE_API_KEY. Relative adapter folders are relative to the working folder,
    as on the command line.
    """
    data = read_config_file(Path(path)) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None and v != {}})
    if data.get("api_key") is None and os.environ.get(API_KEY_ENV):
        data["api_key"] = os.environ[API_KEY_ENV]
    what = f"serving config ({Path(path).name})" if path else "serving settings"
    return validated(ServingConfig, data, what, help_hint="see ServingConfig in medcore/serve/config.py")
