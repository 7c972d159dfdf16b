"""Experiment trackers a run also reports to when its spec asks (`report_to`): TensorBoard, MLflow, Weights & Biases.

Never by default, and never anywhere but the run folder (runs/<id>/trackers/): TensorBoard event files, an MLflow
file store, W&B's offline files (`wandb sync` them yourself, if your site allows it). They get what metrics.jsonl
gets (numbers by step) and the run's settings (model, task, dataset name, presets, learning rate...): never note
text. MLflow's usage telemetry is switched off. A tracker that fails mid-run is dropped with one warning on stderr;
training goes on, and metrics.jsonl stays the record.

The packages are optional (`pip install medcore[trackers]`); validation refuses a spec naming one that is missing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Protocol

PIP_NAMES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}
TRACKER_DIR = "trackers"  # in the run folder
PARAMS = ("model", "task", "dataset", "lora", "zero", "lr", "epochs", "max_steps", "micro_batch", "grad_accum",
          "max_length", "precision", "seed", "nproc_per_node", "nnodes")  # fmt: skip
PROJECT = "medcore"


class Tracker(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def missing_trackers(names: list[str]) -> list[str]:
    """The trackers among `names` whose package (importable by the tracker's own name) is not installed."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def install_hint(names: list[str]) -> str:
    return f"pip install {' '.join(PIP_NAMES[n] for n in names)} (or `pip install medcore[trackers]`)"


class TensorBoardTracker:
    def __init__(self, folder: Path, run_id: str, params: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        self.writer.add_text("run", f"{run_id}: " + ", ".join(f"{k}={v}" for k, v in params.items()))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    def __init__(self, folder: Path, run_id: str, params: dict[str, Any]):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before mlflow loads: no usage reports
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # a folder in the run, no database server
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=(folder / "mlruns").resolve().as_uri())
        found = self.client.get_experiment_by_name(PROJECT)
        experiment = found.experiment_id if found else self.client.create_experiment(PROJECT)
        self.run_id = self.client.create_run(experiment, run_name=run_id).info.run_id
        for name, value in params.items():
            self.client.log_param(self.run_id, name, value)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.client.log_metric(self.run_id, name, value, step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker:
    def __init__(self, folder: Path, run_id: str, params: dict[str, Any]):
        os.environ["WANDB_MODE"] = "offline"  # files only; the user syncs them, or not
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        quiet = wandb.Settings(  # the metrics and settings only: no console capture, code, git, package list or
            console="off", save_code=False, disable_code=True, disable_git=True, disable_job_creation=True,
            x_save_requirements=False, x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True,
        )  # fmt: skip  # system metrics (whose collectors may query cloud metadata endpoints)
        self.run = wandb.init(project=PROJECT, name=run_id, id=run_id, dir=str(folder), config=params, mode="offline",
                              settings=quiet)  # fmt: skip

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


OPENERS = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}


def open_trackers(names: list[str], run_folder: Path, run_id: str, spec_data: dict[str, Any]) -> dict[str, Tracker]:
    """The trackers `names` asks for, writing under run_folder/trackers/; one that cannot start is reported and
    left out (the run trains on, recording metrics.jsonl as always)."""
    params = {k: spec_data[k] for k in PARAMS if spec_data.get(k) is not None}
    opened: dict[str, Tracker] = {}
    for name in names:
        try:
            opened[name] = OPENERS[name](run_folder / TRACKER_DIR, run_id, params)
        except Exception as exc:  # noqa: BLE001 - a tracker is optional: say which and why (type only), train on
            print(f"[medcore.train] tracker {name} not started ({type(exc).__name__})", file=sys.stderr, flush=True)
    return opened


def forward(trackers: dict[str, Tracker], record: dict[str, Any]) -> None:
    """Send one metrics.jsonl record (its numbers, by step) to every open tracker; drop one that fails."""
    step = record.get("step")
    metrics = {k: float(v) for k, v in record.items() if k not in ("step", "time") and isinstance(v, int | float)}
    if step is None or not metrics:
        return
    for name in list(trackers):
        try:
            trackers[name].log(int(step), metrics)
        except Exception as exc:  # noqa: BLE001 - see open_trackers
            print(f"[medcore.train] tracker {name} dropped ({type(exc).__name__})", file=sys.stderr, flush=True)
            del trackers[name]


def close_trackers(trackers: dict[str, Tracker]) -> None:
    for name, tracker in list(trackers.items()):
        try:
            tracker.close()
        except Exception as exc:  # noqa: BLE001 - see open_trackers
            print(f"[medcore.train] tracker {name} did not close ({type(exc).__name__})", file=sys.stderr, flush=True)
    trackers.clear()
