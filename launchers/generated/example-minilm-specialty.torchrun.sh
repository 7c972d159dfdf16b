#!/usr/bin/env bash
# MedCore run example-minilm-specialty: torchrun on this machine, logs in /srv/medcore/workspace/runs/example-minilm-specialty/train.log.
# Generated from minilm_classification.yaml by `medcore launch --target local` (medcore.cluster): regenerate, do not edit.
#   bash example-minilm-specialty.torchrun.sh
set -euo pipefail
export MEDCORE_HOME=/srv/medcore/workspace
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1
export PYTHONUNBUFFERED=1
# The run folder is made here, the spec checked against this workspace and machine (kept if it exists).
python -m medcore.cluster.prepare example-minilm-specialty --spec '{"dataset":"demo-notes-redacted","eval_interval":20,"grad_accum":1,"lora":"default","lr":0.0005,"max_length":256,"max_steps":60,"micro_batch":8,"model":"minilm","name":"minilm-specialty","nproc_per_node":2,"save_interval":20,"task":"classification","zero":"single_node"}'
echo 'training run example-minilm-specialty; log: /srv/medcore/workspace/runs/example-minilm-specialty/train.log'
exec python -m torch.distributed.run --nnodes=1 --nproc-per-node=2 --node-rank=0 --max-restarts=0 --master-addr=127.0.0.1 --master-port=29500 -m medcore.train /srv/medcore/workspace/runs/example-minilm-specialty --resume >>/srv/medcore/workspace/runs/example-minilm-specialty/train.log 2>&1
