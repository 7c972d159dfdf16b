"""Experiment trackers (spec.report_to): a real one-rank run reports the same numbers metrics.jsonl holds to
TensorBoard, MLflow and W&B, all as files in the run folder, with no connection beyond this machine; nothing by
default; a tracker whose package is missing is refused before launch."""

from __future__ import annotations

import json
import socket

import pytest
from train_datasets import certify_redacted, classification_frame, train_in_process

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping
from medcore.errors import MedcoreError
from medcore.train import load_spec, validate_spec
from medcore.train import trackers as tracker_module
from medcore.train.trackers import TRACKER_DIR

SPEC = {
    "dataset": "notes", "task": "classification", "model": "minilm", "lr": 5e-3, "max_steps": 3, "micro_batch": 8,
    "max_length": 32, "eval_interval": 3, "warmup_ratio": 0.0, "device": "cpu", "precision": "fp32", "seed": 0,
    "evaluate_after": False,
}  # fmt: skip


@pytest.fixture
def notes(workspace):
    import_dataset(workspace, classification_frame(60, seed=0), "notes", ColumnMapping(text="note", label="specialty"))
    certify_redacted(workspace, "notes")
    return workspace


@pytest.fixture
def outbound(monkeypatch):
    """Connections this process tries beyond loopback (refused): trackers must make none."""
    tried, connect = [], socket.socket.connect

    def guarded(sock, address):
        if isinstance(address, tuple) and not str(address[0]).startswith(("127.", "::1", "localhost")):
            tried.append(address)
            raise OSError("blocked by the test")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return tried


def logged(rd, name: str) -> dict[int, float]:
    rows = [json.loads(line) for line in rd.metrics.read_text().splitlines()]
    return {row["step"]: row[name] for row in rows if name in row}


def test_every_tracker_gets_the_numbers_metrics_jsonl_holds_and_nothing_leaves(notes, outbound, monkeypatch):
    monkeypatch.setenv("HOME", str(notes.root.parent))  # W&B writes its settings under ~: keep them in the test
    rd = train_in_process(notes, {**SPEC, "report_to": ["tensorboard", "mlflow", "wandb"]})
    losses, accuracy = logged(rd, "loss"), logged(rd, "eval_accuracy")
    assert len(losses) == 3 and len(accuracy) == 1
    folder = rd.path / TRACKER_DIR

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("loss")} == pytest.approx(losses)
    assert {e.step: e.value for e in events.Scalars("eval_accuracy")} == pytest.approx(accuracy)

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the tracker reads it: a file store in the run folder
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(folder / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("medcore").experiment_id])
    assert run.info.run_name == rd.run_id and run.data.params["dataset"] == "notes"
    assert {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")} == pytest.approx(losses)

    (offline,) = (folder / "wandb").glob("offline-run-*")  # W&B's offline files, to `wandb sync` or not
    (record,) = offline.glob("*.wandb")  # its record log (protobuf): each logged value is in it as JSON text
    data = record.read_bytes()
    assert all(json.dumps(loss).encode() in data for loss in losses.values()) and b"eval_accuracy" in data
    captured = [p.name for p in (offline / "files").glob("*")] if (offline / "files").exists() else []
    assert "output.log" not in captured and "requirements.txt" not in captured  # no console or package capture
    assert outbound == []


def test_no_tracker_by_default(tmp_path):
    from medcore.train.metrics import MetricsWriter

    assert load_spec(SPEC).report_to == []
    writer = MetricsWriter(tmp_path / "metrics.jsonl", enabled=True)  # what a run without report_to gets
    writer.write({"step": 1, "loss": 1.0})
    writer.close()
    assert writer.trackers == {} and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_a_tracker_that_is_not_installed_is_refused_before_launch(notes, monkeypatch):
    monkeypatch.setattr(tracker_module.importlib.util, "find_spec", lambda name: None if name == "wandb" else True)
    with pytest.raises(MedcoreError, match=r"report_to names wandb, not installed here: pip install wandb"):
        validate_spec(load_spec({**SPEC, "report_to": ["wandb"]}), notes)
    with pytest.raises(MedcoreError, match="report_to"):
        load_spec({**SPEC, "report_to": ["comet"]})


def test_a_failing_tracker_is_dropped_and_training_goes_on(capsys):
    class Broken:
        def log(self, step, metrics):
            raise RuntimeError("disk gone")

        def close(self):
            raise RuntimeError("still gone")

    trackers = {"mlflow": Broken()}
    tracker_module.forward(trackers, {"step": 1, "loss": 2.0})
    assert trackers == {} and "tracker mlflow dropped (RuntimeError)" in capsys.readouterr().err
    tracker_module.forward({}, {"step": 2, "loss": 1.0})  # nothing open: nothing to do
