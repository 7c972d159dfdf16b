"""The k8s targets: a Kubeflow PyTorchJob (training) and a vLLM Deployment + Service (serving), as YAML.

Manifests are built as plain data and written by yaml.safe_dump, so every value is quoted as YAML needs; names that
Kubernetes restricts are checked in medcore.cluster.checks. The training operator (kubeflow.org/v1) requires one
Master replica, a container named `pytorch`, and reads MASTER_PORT from that container's port named
`pytorchjob-port`; it names the master pod JOB-master-0 and gives it a headless Service of that name, which is
where the c10d rendezvous runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medcore import __version__
from medcore.cluster.checks import RUN_ID, kubernetes_name
from medcore.cluster.config import K8S_WORKSPACE, LaunchConfig
from medcore.cluster.files import LaunchFile, header
from medcore.cluster.job import JobLaunch, job_name
from medcore.errors import MedcoreError
from medcore.serve.config import ServingConfig
from medcore.serve.vllm import API_KEY_ENV, build_vllm_command

PYTORCH_CONTAINER = "pytorch"  # the operator refuses a PyTorchJob without a container of this name
PORT_NAME = "pytorchjob-port"  # ... and takes MASTER_PORT from this port
GPU = "nvidia.com/gpu"
APP_LABEL = "app.kubernetes.io/name"
RUN_LABEL = "medcore/run-id"
# The images run as user medcore (uid 1000, Dockerfile); fsGroup makes the workspace volume writable for it.
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# NCCL and DataLoader workers share tensors through /dev/shm, which is 64 MB in a pod unless given memory.
SHM_VOLUME = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
SHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}
API_KEY_SECRET_KEY = "api-key"


def render_pytorchjob(job: JobLaunch, cfg: LaunchConfig) -> LaunchFile:
    """`RUN_ID.pytorchjob.yaml`: Master (+ nnodes-1 Workers), each one torchrun of nproc_per_node processes."""
    name = job_name(job.run_id)
    steps = [
        f"kubectl apply -f FILE    (needs the training operator and the PVC {cfg.pvc} holding the workspace)",
        f"kubectl logs -f {name}-master-0    (also in {job.run_dir.log} on the volume)",
    ]
    what = f"MedCore run {job.run_id}: Kubeflow PyTorchJob, {job.spec.nnodes} pod(s) x {job.spec.nproc_per_node} process(es)."
    file_name = f"{job.run_id}.pytorchjob.yaml"
    text = dump_manifest([pytorchjob(job, cfg)], header(what, job.source, "k8s", file_name, steps))
    return LaunchFile(file_name, text, "kubectl apply -f FILE")


def pytorchjob(job: JobLaunch, cfg: LaunchConfig) -> dict[str, Any]:
    labels = {APP_LABEL: "medcore", "app.kubernetes.io/component": "training", RUN_LABEL: job.run_id}
    replicas = {"Master": replica(job, cfg, 1, labels, master=True)}
    if job.spec.nnodes > 1:
        replicas["Worker"] = replica(job, cfg, job.spec.nnodes - 1, labels, master=False)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata(job_name(job.run_id), cfg.namespace, labels),
        "spec": {
            "nprocPerNode": str(job.spec.nproc_per_node),
            # Pods stay after the job ends so their logs can be read; a failed pod restarts (and resumes) 3 times.
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 3},
            "pytorchReplicaSpecs": replicas,
        },
    }


def replica(job: JobLaunch, cfg: LaunchConfig, count: int, labels: dict, master: bool) -> dict[str, Any]:
    """One replica type. The master first runs `prepare` in an init container, with the same GPUs, so that device
    and precision are resolved on the hardware that trains."""
    image = cfg.image or (f"medcore-gpu:{__version__}" if job.gpus_per_node else f"medcore:{__version__}")
    command = job.torchrun_argv()
    if job.spec.nnodes > 1:  # c10d numbers the pods as they join: one command serves the master and every worker
        command = [arg for arg in command if not arg.startswith("--node-rank=")]
    trainer = container(PYTORCH_CONTAINER, image, command, job, cfg)
    trainer["ports"] = [{"name": PORT_NAME, "containerPort": job.rdzv_port}]
    pod: dict[str, Any] = {"securityContext": POD_SECURITY}
    if master:
        pod["initContainers"] = [container("prepare-run", image, job.prepare_argv(), job, cfg)]
    pod["containers"] = [trainer]
    pod["volumes"] = [{"name": "workspace", "persistentVolumeClaim": {"claimName": cfg.pvc}}, SHM_VOLUME]
    return {"replicas": count, "restartPolicy": "OnFailure", "template": {"metadata": {"labels": labels}, "spec": pod}}


def container(name: str, image: str, command: list[str], job: JobLaunch, cfg: LaunchConfig) -> dict[str, Any]:
    limits: dict[str, Any] = {"memory": cfg.memory}
    if job.gpus_per_node:
        limits[GPU] = job.gpus_per_node
    return {
        "name": name,
        "image": image,
        "command": command,
        # The operator sets PYTHONUNBUFFERED itself: a second definition would only draw a warning.
        "env": [{"name": key, "value": value} for key, value in job.env().items() if key != "PYTHONUNBUFFERED"],
        "resources": {"requests": {"cpu": cfg.cpu, "memory": cfg.memory}, "limits": limits},
        "volumeMounts": [{"name": "workspace", "mountPath": job.workspace}, SHM_MOUNT],
        "securityContext": CONTAINER_SECURITY,
    }


def render_vllm(serving: ServingConfig, cfg: LaunchConfig, source: str) -> LaunchFile:
    """`NAME.vllm.yaml`: a vLLM Deployment (LoRA on, adapters from the workspace volume) and its Service."""
    workspace = cfg.workspace or K8S_WORKSPACE
    name = kubernetes_name(f"medcore-vllm-{serving.base_name}", 50)
    steps = [
        f'kubectl create secret generic {cfg.api_key_secret} --from-literal={API_KEY_SECRET_KEY}="$KEY"',
        "kubectl apply -f FILE",
        f"vLLM listens on the pod's addresses for the Service {name} (port {serving.port}) and answers /v1 only with "
        "that key (Authorization: Bearer KEY).",
    ]
    what = f"vLLM serving {serving.base_name} with LoRA adapters from the MedCore workspace (PVC {cfg.pvc})."
    file_name = f"{name}.vllm.yaml"
    text = dump_manifest(
        vllm_objects(serving, cfg, name, workspace), header(what, source, "k8s-vllm", file_name, steps)
    )
    return LaunchFile(file_name, text, "kubectl apply -f FILE")


def vllm_objects(serving: ServingConfig, cfg: LaunchConfig, name: str, workspace: str) -> list[dict[str, Any]]:
    """[Deployment, Service]. The command is medcore.serve.vllm.build_vllm_command's, with paths as the pod sees
    them; the API key comes from a Secret, never from the serving config or this file."""
    model = container_model(serving.model, workspace)
    adapters = container_adapters(serving.adapters, workspace)
    pod_config = serving.model_copy(update={"host": "0.0.0.0", "api_key": None, "adapters": adapters})
    argv, env = build_vllm_command(pod_config, model)
    env_list: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in env.items()]
    env_list.append(
        {"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": cfg.api_key_secret, "key": API_KEY_SECRET_KEY}}}
    )
    env_list.append({"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"})
    if model.startswith("/"):
        env_list.append({"name": "HF_HUB_OFFLINE", "value": "1"})  # a hub id is the one thing vLLM may download
    labels = {APP_LABEL: "medcore-vllm", "app.kubernetes.io/instance": name}
    health = {"httpGet": {"path": "/health", "port": "http"}}
    server = {
        "name": "vllm",
        "image": cfg.image or f"medcore-gpu:{__version__}",
        "command": argv,
        "env": env_list,
        "ports": [{"name": "http", "containerPort": serving.port}],
        "resources": {
            "requests": {"cpu": cfg.cpu, "memory": cfg.memory},
            "limits": {"memory": cfg.memory, GPU: serving.tensor_parallel_size},
        },
        # Loading weights can take minutes: the startup probe allows 15 before liveness takes over.
        "startupProbe": {**health, "periodSeconds": 10, "failureThreshold": 90},
        "readinessProbe": {**health, "periodSeconds": 10},
        "livenessProbe": {**health, "periodSeconds": 30, "failureThreshold": 3},
        "volumeMounts": [{"name": "workspace", "mountPath": workspace, "readOnly": True}, SHM_MOUNT],
        "securityContext": CONTAINER_SECURITY,
    }
    volumes = [{"name": "workspace", "persistentVolumeClaim": {"claimName": cfg.pvc, "readOnly": True}}, SHM_VOLUME]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, cfg.namespace, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # a rolling update would need a second set of GPUs
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"securityContext": POD_SECURITY, "containers": [server], "volumes": volumes},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, cfg.namespace, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": serving.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [deployment, service]


def container_model(model: str, workspace: str) -> str:
    """The base model as the pod loads it: tiny-llama from the workspace volume, an absolute path, or a hub id."""
    if model == "tiny-llama":
        return f"{workspace}/models/tiny-llama"  # built there by the first MedCore job that used it
    if model == "minilm":
        raise MedcoreError(
            "minilm is an encoder packaged inside medcore; vLLM serves generative models here. Serve it with the "
            "embedded server (`medcore serve --model minilm`), or give a causal LM."
        )
    if model.startswith((".", "~")):
        raise MedcoreError(
            f"Model {model!r} is a relative path: in the pod give an absolute path (the workspace is mounted at "
            f"{workspace}) or a hub id."
        )
    return model


def container_adapters(adapters: dict[str, Path], workspace: str) -> dict[str, Path]:
    """NAME -> adapter folder in the pod: a run id becomes WORKSPACE/runs/RUN_ID/adapter; absolute paths stay."""
    mapped, bad = {}, []
    for name, folder in adapters.items():
        text = str(folder)
        if text.startswith("/"):
            mapped[name] = Path(text)
        elif RUN_ID.match(text):
            mapped[name] = Path(workspace) / "runs" / text / "adapter"
        else:
            bad.append(f"{name}={text}")
    if bad:
        raise MedcoreError(
            f"Adapters {', '.join(bad)}: in the pod give a run id (served from {workspace}/runs/RUN_ID/adapter) or "
            "an absolute path inside the container."
        )
    return mapped


def metadata(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {**meta, "labels": labels}


class ManifestDumper(yaml.SafeDumper):
    """yaml.safe_dump's dumper, writing a shared value out in full each time (no &anchors, as kubectl shows them)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_manifest(docs: list[dict[str, Any]], comments: list[str]) -> str:
    """The comment lines, then the documents as YAML (a safe dumper: every string quoted as YAML needs it)."""
    body = yaml.dump_all(
        docs, Dumper=ManifestDumper, sort_keys=False, default_flow_style=False, width=4096, explicit_start=True
    )
    return "\n".join(comments) + "\n" + body
