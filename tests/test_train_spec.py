"""Run spec loading, validation before any process spawns, LoRA target resolution, run folder and launch command."""

from __future__ import annotations

import json
import os
import sys

import pytest
from train_datasets import write_dataset

from medcore.cli import main as medcore_main
from medcore.errors import MedcoreError
from medcore.phi.audit import read_audit_log
from medcore.rundir import read_json
from medcore.train import load_spec, prepare_run_dir, torchrun_command, validate_spec


@pytest.fixture
def cls_ws(workspace):
    write_dataset(workspace, "notes", "classification", n=60)
    write_dataset(workspace, "qa", "causal-lm", n=60)
    return workspace


def base_spec(**overrides):
    return load_spec(
        {
            "dataset": "notes",
            "task": "classification",
            "model": "minilm",
            "max_length": 64,
            "micro_batch": 4,
            **overrides,
        }
    )


def test_load_spec_yaml_with_typed_overrides(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("dataset: notes\ntask: classification\nlr: 0.001\n")
    spec = load_spec(path, ["lr=1e-4", "pack=false", "max_steps=7", "name=my run"])
    assert (spec.lr, spec.pack, spec.max_steps, spec.name) == (1e-4, False, 7, "my run")
    assert spec.zero == "single_node" and spec.lora == "default"


def test_unknown_field_gets_a_suggestion(tmp_path):
    with pytest.raises(MedcoreError, match="unknown field 'micro_batches'; did you mean 'micro_batch'"):
        load_spec({"dataset": "notes", "micro_batches": 4})


def test_invalid_fields_are_listed_together():
    with pytest.raises(MedcoreError) as err:
        load_spec({"task": "summarise", "lr": -1})
    message = str(err.value)
    assert "'dataset' is required" in message and "'task'" in message and "'lr'" in message
    assert "\n" not in message


def test_multi_node_needs_a_rendezvous():
    with pytest.raises(MedcoreError, match="rdzv_endpoint"):
        load_spec({"dataset": "notes", "nnodes": 2})
    with pytest.raises(MedcoreError, match="node_rank 2 must be below nnodes 2"):
        load_spec({"dataset": "notes", "nnodes": 2, "node_rank": 2, "rdzv_endpoint": "127.0.0.1:29500"})


def test_valid_spec_passes(cls_ws):
    validate_spec(base_spec(), cls_ws)
    validate_spec(load_spec({"dataset": "qa", "task": "causal-lm", "model": "tiny-llama", "max_length": 64}), cls_ws)


def _problem(spec, ws) -> str:
    with pytest.raises(MedcoreError) as err:
        validate_spec(spec, ws)
    message = str(err.value)
    assert "\n" not in message, "one clear line"
    return message


def test_bad_numbers_and_too_many_processes(cls_ws):
    assert "micro_batch is 0" in _problem(base_spec(micro_batch=0), cls_ws)
    assert "max_length is 4; it must be at least 8" in _problem(base_spec(max_length=4), cls_ws)
    too_many = (os.cpu_count() or 1) + 1
    assert f"nproc_per_node is {too_many}" in _problem(base_spec(nproc_per_node=too_many), cls_ws)


def test_missing_model_path(cls_ws, tmp_path):
    assert "does not exist" in _problem(base_spec(model=str(tmp_path / "no-such-model")), cls_ws)


def test_absent_target_modules_list_the_models_linear_layers(cls_ws, tmp_path):
    preset = tmp_path / "llama_only.yaml"
    preset.write_text("r: 8\nalpha: 16\ndropout: 0.0\ntarget_modules: [q_proj, v_proj]\n")
    message = _problem(base_spec(lora=str(preset)), cls_ws)
    assert "q_proj, v_proj not found in model 'minilm'" in message
    assert "query, key, value, dense" in message


def test_missing_columns_and_wrong_task(cls_ws):
    assert "maps no label column" in _problem(base_spec(dataset="qa"), cls_ws)
    assert "maps no prompt column" in _problem(base_spec(task="causal-lm", model="tiny-llama"), cls_ws)


def test_missing_text_column_is_named(cls_ws):
    manifest_path = cls_ws.datasets / "notes" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["mapping"]["text"] = "body"
    manifest_path.write_text(json.dumps(data))
    assert "text column 'body' is not in dataset 'notes'" in _problem(base_spec(), cls_ws)


def test_labels_outside_the_label_set(cls_ws):
    manifest_path = cls_ws.datasets / "notes" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["label_set"] = ["cardiology", "neurology"]
    manifest_path.write_text(json.dumps(data))
    message = _problem(base_spec(), cls_ws)
    assert "labels outside the label set" in message and "respiratory" not in message  # values are not echoed


def test_unredacted_dataset_is_refused_unless_overridden(cls_ws):
    write_dataset(cls_ws, "raw-notes", "classification", n=40, redacted=False)
    assert "has not been redacted" in _problem(base_spec(dataset="raw-notes"), cls_ws)
    spec = base_spec(dataset="raw-notes", allow_unredacted=True)
    validate_spec(spec, cls_ws)
    rd = prepare_run_dir(spec, cls_ws)
    records = [r for r in read_audit_log(cls_ws) if r["kind"] == "redaction_override"]
    assert len(records) == 1 and records[0]["dataset"] == "raw-notes" and records[0]["run_id"] == rd.run_id
    assert read_json(rd.path / "redaction_override.json")["audit_hash"] == records[0]["hash"]


def test_all_problems_reported_together(cls_ws):
    message = _problem(base_spec(micro_batch=0, max_length=2, dataset="nope", zero="single_nod"), cls_ws)
    assert message.startswith("Run spec has 4 problems")
    assert "Dataset 'nope' not found" in message and "Did you mean 'single_node'" in message


def test_prepare_run_dir_writes_resolved_spec_and_ds_config(cls_ws):
    spec = base_spec(nproc_per_node=2, grad_accum=3)
    rd = prepare_run_dir(spec, cls_ws)
    saved = read_json(rd.spec)
    assert saved["device"] == "cpu" and saved["precision"] == "fp32"  # auto resolved on this CPU machine
    ds = read_json(rd.ds_config)
    assert ds["train_batch_size"] == 4 * 3 * 2 and ds["zero_optimization"]["stage"] == 1
    assert rd.read_status()["state"] == "queued"


def test_torchrun_command_single_and_multi_node(cls_ws):
    rd = prepare_run_dir(base_spec(nproc_per_node=2), cls_ws)
    cmd = torchrun_command(base_spec(nproc_per_node=2), rd, master_port=29555)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in cmd and "--master-port=29555" in cmd
    assert cmd[-3:] == ["-m", "medcore.train", str(rd.path)]
    multi = base_spec(nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.5:29400")
    cmd = torchrun_command(multi, rd, resume=True, master_port=29401)
    assert "--rdzv-endpoint=10.0.0.5:29401" in cmd and "--rdzv-backend=c10d" in cmd and "--node-rank=1" in cmd
    assert cmd[-1] == "--resume"


def test_cli_bad_input_is_one_line_and_spawns_nothing(cls_ws, tmp_path, capsys):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("dataset: notes\ntask: classification\nmodel: minilm\n")
    code = medcore_main(["train", str(spec_file), "--nproc", "1", "micro_batch=0", "max_length=64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: Run spec problem: micro_batch is 0")
    assert list(cls_ws.runs.iterdir()) == []


def test_cli_dry_run_validates_without_creating_a_run(cls_ws, tmp_path, capsys):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"dataset": "notes", "model": "minilm", "max_length": 64}))
    assert medcore_main(["train", str(spec_file), "max_steps=3", "--dry-run"]) == 0
    assert "medcore.train" in capsys.readouterr().out
    assert list(cls_ws.runs.iterdir()) == []


def test_max_length_beyond_the_models_positions_is_refused_before_launch(cls_ws):
    message = _problem(base_spec(max_length=2048), cls_ws)
    assert "max_length 2048 is longer than minilm can read (512 positions); set max_length to 512 or less" in message
    validate_spec(base_spec(max_length=512), cls_ws)  # the limit itself is fine
