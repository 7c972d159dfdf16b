"""The `vllm serve` command line and environment for a ServingConfig (vLLM's wheel is CUDA-only: GPU hosts).

    vllm serve BASE --served-model-name NAME --host H --port P --gpu-memory-utilization U --tensor-parallel-size T
        [--max-model-len L] --enable-lora --max-lora-rank R --max-loras N --lora-modules NAME=DIR ...

New adapters are loaded at run time through POST /v1/load_lora_adapter, which vLLM allows only with
VLLM_ALLOW_RUNTIME_LORA_UPDATING=True. The API key travels as VLLM_API_KEY (vLLM's own variable, the same as
--api-key), so it never shows in a process list or in the command MedCore records.
"""

from __future__ import annotations

from pathlib import Path

from medcore.serve.config import ServingConfig

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
API_KEY_ENV = "VLLM_API_KEY"


def build_vllm_command(config: ServingConfig, model_source: str | Path) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that start vLLM's OpenAI-compatible server for `config`.

    Args:
        config: the validated serving config (engine vllm).
        model_source: the base model as vLLM should load it: a local folder (registry names resolved) or a hub id.
    """
    argv = ["vllm", "serve", str(model_source), "--served-model-name", config.base_name]
    argv += ["--host", config.host, "--port", str(config.port)]
    argv += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    argv += ["--tensor-parallel-size", str(config.tensor_parallel_size)]
    if config.max_model_len is not None:
        argv += ["--max-model-len", str(config.max_model_len)]
    # LoRA is always on, even with no adapter yet: adapters trained later are loaded without a restart.
    argv += ["--enable-lora", "--max-lora-rank", str(config.max_lora_rank), "--max-loras", str(config.max_loras)]
    if config.adapters:
        argv += ["--lora-modules", *(f"{name}={Path(folder).resolve()}" for name, folder in config.adapters.items())]
    env = {RUNTIME_LORA_ENV: "True"}
    if config.key():
        env[API_KEY_ENV] = config.key()
    return argv, env
