#!/usr/bin/env bash
# Serve a base model and its LoRA adapters with vLLM on a CUDA host, from a MedCore serving config.
# The `vllm serve` command line is built by medcore.serve.vllm.build_vllm_command (the same as
# `medcore serve --engine vllm`): --enable-lora, --lora-modules NAME=DIR ..., --max-lora-rank, host, port,
# --max-model-len, --gpu-memory-utilization, --tensor-parallel-size; VLLM_ALLOW_RUNTIME_LORA_UPDATING=True so
# adapters trained later load without a restart (POST /v1/load_lora_adapter {"lora_name", "lora_path"}).
#
#   launchers/serve_vllm.sh [CONFIG] [--adapter NAME=DIR ...] [--port P] [--dry-run]
#
# CONFIG defaults to configs/serving.yaml. The API key comes from $MEDCORE_SERVE_API_KEY (passed to vLLM as
# VLLM_API_KEY, never on the command line). --dry-run prints the command and starts nothing.
# Python is $MEDCORE_PYTHON (default: python on PATH). vLLM's wheel is CUDA-only: it does not run on CPU machines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config="$here/../configs/serving.yaml"
if [[ $# -gt 0 && "$1" != -* ]]; then
  config=$1
  shift
fi
python=${MEDCORE_PYTHON:-python}
export HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
exec "$python" -m medcore.serve --config "$config" --engine vllm "$@"
