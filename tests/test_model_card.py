"""Model cards: a real tiny run's card holds its lineage, settings, metrics and evaluations, and no note text."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from train_datasets import certify_redacted, one_rank_world

from medcore.cli import main as medcore_main
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, read_manifest
from medcore.errors import MedcoreError
from medcore.evaluate.after_run import evaluate_run
from medcore.evaluate.model_card import CLINICAL_CAUTION, MODEL_CARD, estimate_text, render_model_card
from medcore.evaluate.runner import evaluate_model
from medcore.train import load_spec, prepare_run_dir, validate_spec
from medcore.workspace import get_workspace

# Planted in every note: none of it may reach a card.
CANARIES = ("Zebulon Quartermaine", "MRN 99887766", "Quartermaine")
FINDINGS = ("chest pain", "new seizure", "productive cough")


def canary_notes(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"Zebulon Quartermaine, MRN 99887766, note {i}: {FINDINGS[i % 3]}." for i in range(n)],
            "label": [("cardiology", "neurology", "respiratory")[i % 3] for i in range(n)],
            "sex": ["F", "M"] * (n // 2),
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One completed `python -m medcore.train RUN_DIR` run (in this process, a world of one), scored on its test
    split as `evaluate_after` does, and an eval of the untuned base that is not the run's."""
    from medcore.train.__main__ import main

    root = tmp_path_factory.mktemp("card") / "workspace"
    with one_rank_world() as mp:  # rank 0 of a world of one, one thread; restored afterwards
        mp.setenv("MEDCORE_HOME", str(root))
        ws = get_workspace(root)
        mapping = ColumnMapping(text="text", label="label", subgroups=["sex"])
        import_dataset(ws, canary_notes(), "notes", mapping, task="classification", split=(0.5, 0.2, 0.3))
        certify_redacted(ws, "notes")  # synthetic notes: the audit record the training gate checks
        spec = load_spec(
            {
                "name": "card", "dataset": "notes", "task": "classification", "model": "minilm", "lr": 5e-3,
                "max_steps": 4, "micro_batch": 8, "max_length": 32, "eval_interval": 2, "warmup_ratio": 0.0,
                "device": "cpu", "precision": "fp32", "seed": 0,
            }
        )  # fmt: skip
        validate_spec(spec, ws)
        rd = prepare_run_dir(spec, ws)
        assert main([str(rd.path)]) == 0, rd.status.read_text()
        record = evaluate_run(rd)
        base = evaluate_model("minilm", ws, "notes", "test", resamples=200)
        assert record["state"] == "completed", record
        yield ws, rd, record["eval_id"], base["eval_id"]


def test_the_card_holds_lineage_settings_metrics_and_evaluations(trained):
    ws, rd, eval_id, base_eval_id = trained
    card = render_model_card(rd.run_id, ws)
    manifest = read_manifest(ws, "notes")
    assert "| Base model | minilm |" in card and "| Task | classification |" in card
    assert manifest.content_hash in card and manifest.redaction.audit_hash in card
    assert "redacted, mode safe-harbor, method mask" in card and "| Audit log check | proven" in card
    assert "| lr | 0.005 |" in card and "| max_steps | 4 |" in card and "r 16, alpha 32" in card
    assert "| ZeRO stage | 1 |" in card
    rows = [json.loads(line) for line in rd.metrics.read_text().splitlines()]
    assert f"| Final training loss | {rows[-1]['loss']:.4f} (step 4) |" in card
    assert f"| Validation accuracy | {rows[-1]['eval_accuracy']:.4f} |" in card
    result = json.loads((ws.evals / eval_id / "result.json").read_text())
    assert f"### {eval_id}: notes / test, {result['n']} examples" in card
    assert f"| accuracy | {estimate_text(result['metrics']['accuracy'])} |" in card
    assert "(95% CI " in estimate_text(result["metrics"]["accuracy"])
    assert "- `sex`: accuracy gap" in card
    assert base_eval_id not in card  # the base model's eval is not this run's
    assert CLINICAL_CAUTION in card


def test_no_note_text_reaches_the_card(trained):
    ws, rd, _, _ = trained
    card = render_model_card(rd.run_id, ws)
    for canary in CANARIES:
        assert canary not in card
    for finding in FINDINGS:
        assert finding not in card


def test_the_cli_writes_the_card_into_the_run_folder(trained, monkeypatch, capsys):
    ws, rd, eval_id, _ = trained
    monkeypatch.setenv("MEDCORE_HOME", str(ws.root))
    assert medcore_main(["card", rd.run_id]) == 0
    path = rd.path / MODEL_CARD
    assert str(path) in capsys.readouterr().out
    assert path.read_text().startswith(f"# Model card: {rd.run_id}") and eval_id in path.read_text()


def test_a_run_that_has_not_completed_gets_no_card(workspace, capsys):
    import_dataset(workspace, canary_notes(12), "raw", ColumnMapping(text="text", label="label"), split=(0.5, 0, 0.5))
    rd = prepare_run_dir(load_spec({"dataset": "raw", "allow_unredacted": True}), workspace)
    with pytest.raises(MedcoreError, match="a model card describes a completed run"):
        render_model_card(rd.run_id, workspace)
    assert medcore_main(["card", rd.run_id]) == 1
    assert "medcore runs status" in capsys.readouterr().err
    assert not (rd.path / MODEL_CARD).exists()


def test_a_card_says_what_is_missing_and_unproven(workspace):
    """A completed run whose dataset was never redacted, that logged nothing and has no evaluation."""
    import_dataset(workspace, canary_notes(12), "raw", ColumnMapping(text="text", label="label"), split=(0.5, 0, 0.5))
    rd = prepare_run_dir(load_spec({"dataset": "raw", "allow_unredacted": True}), workspace)
    rd.update_status(state="completed")
    card = render_model_card(rd.run_id, workspace)
    assert "| Redaction | not redacted |" in card and "| Audit log check | not proven: " in card
    override = json.loads((rd.path / "redaction_override.json").read_text())  # the audited override of the launch
    assert f"trained with allow_unredacted on unproven data, audit record {override['audit_hash']}" in card
    assert "No metrics were logged." in card and "no adapter folder" in card
    assert f"None yet. Score the run with `medcore eval run {rd.run_id} --dataset DATASET`." in card
    assert not any(canary in card for canary in CANARIES)
