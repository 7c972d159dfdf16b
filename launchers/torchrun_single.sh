#!/usr/bin/env bash
# Train a prepared MedCore run folder on this machine with plain torchrun (no queue, no supervisor).
# The console and `medcore train` do the same through medcore.jobs; use this to re-launch by hand.
#
#   launchers/torchrun_single.sh RUN_DIR [--resume]
#
# Reads RUN_DIR/spec.json (nproc_per_node); the rendezvous port is $MASTER_PORT or a free one.
# Python is $MEDCORE_PYTHON (default: python on PATH).
set -euo pipefail
usage="usage: $0 RUN_DIR [--resume]"
run_dir=$(cd "${1:?$usage}" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
python=${MEDCORE_PYTHON:-python}
if [[ ! -f "$run_dir/spec.json" ]]; then
  echo "error: $run_dir/spec.json not found: point at a run folder (workspace/runs/<run_id>)." >&2
  exit 1
fi
nproc=$("$python" "$here/_spec_field.py" "$run_dir/spec.json" nproc_per_node 1)
port=${MASTER_PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
exec "$python" -m torch.distributed.run --nnodes=1 --nproc-per-node="$nproc" \
  --master-addr=127.0.0.1 --master-port="$port" \
  -m medcore.train "$run_dir" "$@" >>"$run_dir/train.log" 2>&1
