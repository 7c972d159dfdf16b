#!/usr/bin/env bash
# Train one MedCore run folder across several machines: run this once per node, node 0 first.
# Every node needs the same run folder (shared filesystem) and must reach HEAD_ADDR:PORT.
#
#   launchers/torchrun_multinode.sh RUN_DIR NODE_RANK HEAD_ADDR[:PORT] [--resume]
#
# nnodes and nproc_per_node come from RUN_DIR/spec.json; PORT defaults to 29500. The c10d
# rendezvous is hosted by node 0; on two local shells (HEAD_ADDR=127.0.0.1) it forms a real
# two-node job on one machine.
set -euo pipefail
usage="usage: $0 RUN_DIR NODE_RANK HEAD_ADDR[:PORT] [--resume]"
run_dir=$(cd "${1:?$usage}" && pwd)
node_rank=${2:?$usage}
endpoint=${3:?$usage}
shift 3
[[ "$endpoint" == *:* ]] || endpoint="$endpoint:29500"
here=$(cd "$(dirname "$0")" && pwd)
python=${MEDCORE_PYTHON:-python}
if [[ ! -f "$run_dir/spec.json" ]]; then
  echo "error: $run_dir/spec.json not found: point at a run folder (workspace/runs/<run_id>)." >&2
  exit 1
fi
nnodes=$("$python" "$here/_spec_field.py" "$run_dir/spec.json" nnodes 1)
nproc=$("$python" "$here/_spec_field.py" "$run_dir/spec.json" nproc_per_node 1)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
# One log per node: nodes may share the run folder, and interleaved writers would garble one file.
log="$run_dir/train.log"
[[ "$node_rank" == 0 ]] || log="$run_dir/train.node$node_rank.log"
exec "$python" -m torch.distributed.run --nnodes="$nnodes" --node-rank="$node_rank" --nproc-per-node="$nproc" \
  --rdzv-id="medcore-$(basename "$run_dir")" --rdzv-backend=c10d --rdzv-endpoint="$endpoint" \
  -m medcore.train "$run_dir" "$@" >>"$log" 2>&1
