"""spec.evaluate_after: a completed run scored on its test split, the outcome recorded in its status."""

from __future__ import annotations

import json

import pandas as pd
import torch
from test_eval_run import import_notes, make_run

from medcore.data.manifest import ColumnMapping, read_manifest
from medcore.evaluate.after_run import evaluate_run
from medcore.jobs import run_status
from medcore.models import load_model
from medcore.rundir import TEST_EVAL
from medcore.train.lora import apply_lora
from medcore.train.presets import load_lora_preset


def save_untrained_adapter(ws, rd) -> None:
    labels = read_manifest(ws, "notes").label_set
    torch.manual_seed(1)
    base = load_model("minilm", "classification", id2label=dict(enumerate(labels)), workspace=ws)
    apply_lora(base, load_lora_preset("default"), "classification", "minilm").save_pretrained(rd.adapter)


def test_a_completed_run_gets_its_test_split_scored(workspace):
    import_notes(workspace)
    rd = make_run(workspace)
    save_untrained_adapter(workspace, rd)
    rd.update_status(state="completed")  # as the supervisor leaves it before scoring
    record = evaluate_run(rd)
    assert record["state"] == "completed"
    assert rd.read_status()[TEST_EVAL] == record == run_status(rd.run_id, workspace).test_eval
    result = json.loads((workspace.evals / record["eval_id"] / "result.json").read_text())
    assert record["n"] == result["n"] == read_manifest(workspace, "notes").rows["test"]
    card = (rd.path / "MODEL_CARD.md").read_text()  # written after the scoring, with its figures
    assert record["eval_id"] in card
    accuracy = result["metrics"]["accuracy"]
    assert (record["value"], record["ci_low"], record["ci_high"]) == (
        accuracy["value"], accuracy["ci_low"], accuracy["ci_high"]
    )  # fmt: skip


def test_a_token_classification_run_is_scored_on_entity_f1(workspace):
    from test_eval_tasks import make_run as make_task_run

    from medcore.data.importer import import_dataset
    from medcore.demo.qa import generate_qa
    from medcore.token_windows import TAG_FILE, TagFile, bio_tags, default_stride

    frame = pd.DataFrame(generate_qa(seed=0, n=20))[["context", "phi_spans"]]
    import_dataset(workspace, frame, "ner", ColumnMapping(text="context", spans="phi_spans"), split=(0.6, 0.1, 0.3))
    rd = make_task_run(workspace, "token-classification", "minilm", "ner", max_length=64)
    tags = TagFile(bio_tags(read_manifest(workspace, "ner").label_set), 64, default_stride(64))
    base = load_model("minilm", "token-classification", id2label=dict(enumerate(tags.tags)), workspace=workspace)
    apply_lora(base, load_lora_preset("default"), "token-classification", "minilm").save_pretrained(rd.adapter)
    (rd.adapter / TAG_FILE).write_text(json.dumps(tags.as_json()))
    record = evaluate_run(rd)
    assert record["state"] == "completed" and record["metric"] == "f1"
    f1 = json.loads((workspace.evals / record["eval_id"] / "result.json").read_text())["metrics"]["f1"]
    assert (record["value"], record["ci_low"], record["ci_high"]) == (f1["value"], f1["ci_low"], f1["ci_high"])


def test_runs_it_cannot_score_are_skipped_with_the_reason(workspace):
    import_notes(workspace)
    causal = make_run(workspace, task="causal-lm", model="tiny-llama")  # trained on note text: no reference answers
    record = evaluate_run(causal)
    assert record["state"] == "skipped" and "maps no prompt and response columns" in record["reason"]
    assert causal.read_status()[TEST_EVAL] == record
    assert not workspace.evals.exists() or not list(workspace.evals.iterdir())


def test_a_dataset_without_test_rows_is_skipped(workspace):
    from test_eval_run import demo_notes

    from medcore.data.importer import import_dataset

    import_dataset(workspace, demo_notes(), "notes", ColumnMapping(text="text", label="specialty"),
                   task="classification", split=(0.9, 0.1, 0.0))  # fmt: skip
    rd = make_run(workspace)
    record = evaluate_run(rd)
    assert record["state"] == "skipped" and "no test rows" in record["reason"]


def test_a_failed_evaluation_is_recorded_and_does_not_raise(workspace):
    import_notes(workspace)
    rd = make_run(workspace)  # no adapter: the run never trained
    record = evaluate_run(rd)
    assert record["state"] == "failed" and "has no adapter yet" in record["error"]
    assert rd.read_status()[TEST_EVAL] == record


def test_without_scoring_the_completed_run_still_gets_its_card(workspace):
    from medcore.evaluate.after_run import main
    from medcore.train import load_spec, prepare_run_dir

    import_notes(workspace)
    spec = load_spec({"name": "no-eval", "model": "minilm", "task": "classification", "dataset": "notes",
                      "max_length": 128, "evaluate_after": False})  # fmt: skip
    rd = prepare_run_dir(spec, workspace)
    save_untrained_adapter(workspace, rd)
    rd.update_status(state="completed")
    assert main([str(rd.path)]) == 0
    assert (rd.path / "MODEL_CARD.md").exists() and TEST_EVAL not in rd.read_status()
    assert not workspace.evals.exists() or not list(workspace.evals.iterdir())  # nothing scored
