"""`medcore eval run`: a classifier over a dataset split, in order, batch-size invariant, saved without text."""

from __future__ import annotations

import functools
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from medcore.cli import main as medcore_main
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, load_split, read_manifest
from medcore.demo.notes import generate_notes
from medcore.errors import MedcoreError
from medcore.evaluate.runner import MAX_LENGTH, evaluate_model, load_classifier, predict_split
from medcore.models import PAIR_TRUNCATION, load_model
from medcore.train import load_spec, prepare_run_dir
from medcore.train.lora import apply_lora
from medcore.train.presets import load_lora_preset

MAPPING = ColumnMapping(text="text", label="specialty", id="note_id", subgroups=["sex"])


@functools.lru_cache
def demo_notes() -> pd.DataFrame:
    return pd.DataFrame(generate_notes(seed=0, n=60))[["note_id", "text", "specialty", "sex"]]


def import_notes(ws, name: str = "notes", mapping: ColumnMapping = MAPPING, task="classification", labels=None):
    frame = demo_notes().copy()
    if labels is not None:
        frame["specialty"] = labels[: len(frame)]
    import_dataset(ws, frame, name, mapping, task=task, split=(0.6, 0.1, 0.3))
    return name


def reference_proba(net, tokenizer, texts: list[str]) -> np.ndarray:
    """Each text alone, unpadded: what a batch must reproduce."""
    out = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt")
            logits = net(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            out.append(torch.softmax(logits.double(), dim=-1)[0].numpy())
    return np.array(out)


def make_run(ws, task: str = "classification", model: str = "minilm"):
    spec = load_spec({"name": f"fake-{task}", "model": model, "task": task, "dataset": "notes", "max_length": 128})
    return prepare_run_dir(spec, ws)


def test_predict_split_scores_every_row_in_order(workspace):
    import_notes(workspace)
    split = load_split(workspace, "notes", "test")
    labels = read_manifest(workspace, "notes").label_set
    loaded = load_classifier("minilm", workspace, "notes")
    preds = predict_split("minilm", workspace, "notes", "test", loaded=loaded)
    assert list(preds.columns) == ["row", "y_true", "y_pred", *[f"p_{label}" for label in labels]]
    assert len(preds) == len(split) == read_manifest(workspace, "notes").rows["test"]
    np.testing.assert_array_equal(preds["row"], np.arange(len(split)))
    assert preds["y_true"].tolist() == split["specialty"].astype(str).tolist()
    proba = preds[[f"p_{label}" for label in labels]].to_numpy()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert preds["y_pred"].tolist() == [labels[i] for i in proba.argmax(axis=1)]
    # Row k of the output is split row k: scored alone, it gives the same probabilities.
    texts = split["text"].tolist()
    np.testing.assert_allclose(proba[[0, -1]], reference_proba(*loaded[:2], [texts[0], texts[-1]]), atol=1e-5)


def test_batch_size_does_not_change_predictions(workspace):
    import_notes(workspace)
    loaded = load_classifier("minilm", workspace, "notes")
    texts = load_split(workspace, "notes", "test")["text"].tolist()
    lengths = {len(ids) for ids in loaded[1](texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]}
    assert len(lengths) > 2 and min(lengths) < MAX_LENGTH  # texts of different lengths: batches hold padding
    one = predict_split("minilm", workspace, "notes", batch_size=1, loaded=loaded)
    many = predict_split("minilm", workspace, "notes", batch_size=16, loaded=loaded)
    p_columns = [c for c in one.columns if c.startswith("p_")]
    np.testing.assert_allclose(one[p_columns].to_numpy(), many[p_columns].to_numpy(), atol=1e-5, rtol=0)


def reference_pair_proba(net, tokenizer, texts: list[str], pairs: list[str]) -> np.ndarray:
    """Each pair alone, unpadded, with its segment ids: what a batch of pairs must reproduce."""
    out = []
    with torch.inference_mode():
        for text, pair in zip(texts, pairs, strict=True):
            enc = tokenizer(
                text, pair, truncation=PAIR_TRUNCATION, max_length=tokenizer.model_max_length, return_tensors="pt"
            )
            out.append(torch.softmax(net(**enc).logits.double(), dim=-1)[0].numpy())
    return np.array(out)


def test_pairs_are_scored_as_pairs_whatever_the_batch_size(workspace):
    frame = demo_notes().copy()
    frame["text"] = [" ".join(t.split()[: 8 + i % 30]) for i, t in enumerate(frame["text"])]  # short: a fast test
    frame["follow_up"] = [" ".join(t.split()[: 3 + i % 20]) for i, t in enumerate(frame["text"][::-1])]
    mapping = ColumnMapping(text="text", text_pair="follow_up", label="specialty")
    import_dataset(workspace, frame, "pairs", mapping, split=(0.6, 0.1, 0.3))
    loaded = load_classifier("minilm", workspace, "pairs")
    split = load_split(workspace, "pairs", "test")
    texts, pairs = split["text"].tolist(), split["follow_up"].tolist()
    assert len({len(ids) for ids in loaded[1](texts, pairs)["input_ids"]}) > 2  # batches of pairs hold padding
    one = predict_split("minilm", workspace, "pairs", batch_size=1, loaded=loaded)
    many = predict_split("minilm", workspace, "pairs", batch_size=16, loaded=loaded)
    p_columns = [c for c in one.columns if c.startswith("p_")]
    np.testing.assert_allclose(one[p_columns].to_numpy(), many[p_columns].to_numpy(), atol=1e-5, rtol=0)
    expected = reference_pair_proba(*loaded[:2], [texts[0], texts[-1]], [pairs[0], pairs[-1]])
    np.testing.assert_allclose(many[p_columns].to_numpy()[[0, -1]], expected, atol=1e-5)
    alone = reference_proba(*loaded[:2], [texts[0], texts[-1]])
    assert np.abs(expected - alone).max() > 1e-3  # the second text changed the scores: it was read


def test_evaluate_model_writes_an_eval_folder_without_text(workspace):
    import_notes(workspace)
    manifest = read_manifest(workspace, "notes")
    result = evaluate_model("minilm", workspace, "notes", resamples=200)
    assert re.fullmatch(r"eval-\d{8}-\d{6}-[0-9a-f]{6}", result["eval_id"])
    folder = workspace.evals / result["eval_id"]
    assert result["path"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "predictions.parquet", "result.json"]
    assert [p.name for p in workspace.evals.iterdir()] == [result["eval_id"]]  # no temp folder left behind
    saved = json.loads((folder / "result.json").read_text())
    assert set(saved) == {"n", "metrics", "per_class", "subgroups", "fairness"}
    assert saved == {k: v for k, v in result.items() if k not in ("eval_id", "path")}
    assert saved["n"] == manifest.rows["test"] and list(saved["per_class"]) == manifest.label_set
    assert set(saved["subgroups"]["sex"]) == set(load_split(workspace, "notes", "test")["sex"])
    config = json.loads((folder / "config.json").read_text())
    assert config["dataset_content_hash"] == manifest.content_hash and manifest.content_hash
    assert config["model_identity"]["kind"] == "base" and config["resamples"] == 200
    preds = pd.read_parquet(folder / "predictions.parquet")
    assert list(preds.columns[:3]) == ["row", "y_true", "y_pred"] and len(preds) == saved["n"]
    # No note text anywhere: distinctive slices of every note, in the raw bytes and in the parquet's cells.
    canaries = [t[len(t) // 2 : len(t) // 2 + 24] for t in demo_notes()["text"]]
    contents = [p.read_bytes().decode("latin-1") for p in folder.iterdir()] + [preds.to_csv()]
    leaks = [c for c in canaries if any(c in text for text in contents)]
    assert not leaks, leaks[:3]


def test_cli_prints_json_and_refuses_an_unknown_run(workspace, capsys):
    import_notes(workspace)
    assert medcore_main(["eval", "run", "minilm", "--dataset", "notes", "--resamples", "200", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"eval_id", "path", "n", "metrics", "per_class", "subgroups", "fairness"}
    assert medcore_main(["eval", "run", "minilm", "--dataset", "notes", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"accuracy\s+\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", out) and "result.json" in out
    assert medcore_main(["eval", "run", "no-such-run", "--dataset", "notes"]) == 1
    err = capsys.readouterr().err
    assert "No run 'no-such-run'" in err and "medcore runs list" in err
    assert medcore_main(["eval", "run", "minilm", "--dataset", "notes", "--batch-size", "0"]) == 1
    assert "batch_size" in capsys.readouterr().err


def test_other_tasks_and_unfinished_runs_are_refused(workspace):
    import_notes(workspace)
    import_notes(workspace, "plain", ColumnMapping(text="text"), task=None)
    causal = make_run(workspace, task="causal-lm", model="tiny-llama")
    with pytest.raises(MedcoreError, match="causal-lm run; `medcore eval run` supports classification today"):
        load_classifier(causal.run_id, workspace, "notes")
    with pytest.raises(MedcoreError, match="Dataset 'plain' is a text-only .* supports classification today"):
        load_classifier("minilm", workspace, "plain")
    pending = make_run(workspace)
    with pytest.raises(MedcoreError, match=f"Run '{pending.run_id}' has no adapter yet .*state: queued.*resume"):
        evaluate_model(pending.run_id, workspace, "notes")


def test_a_runs_adapter_is_merged_into_its_base(workspace):
    """An adapter saved without training (random LoRA and head weights) scores as the unmerged peft model does."""
    import_notes(workspace)
    rd = make_run(workspace)
    labels = read_manifest(workspace, "notes").label_set
    torch.manual_seed(1)
    base = load_model("minilm", "classification", id2label=dict(enumerate(labels)), workspace=workspace)
    peft_model = apply_lora(base, load_lora_preset("default"), "classification", "minilm")
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "classifier" in name:
                param.normal_(0, 0.2)  # lora_B starts at zero: make the adapter change the outputs
    peft_model.eval().save_pretrained(rd.adapter)
    texts = load_split(workspace, "notes", "test")["text"].tolist()
    loaded = load_classifier(rd.run_id, workspace, "notes")
    assert loaded[1].model_max_length == 128  # the run's max_length
    preds = predict_split(rd.run_id, workspace, "notes", batch_size=8, loaded=loaded)
    expected = reference_proba(peft_model, loaded[1], texts)
    np.testing.assert_allclose(preds[[f"p_{label}" for label in labels]].to_numpy(), expected, atol=1e-5)

    result = evaluate_model(rd.run_id, workspace, "notes", resamples=200)
    identity = json.loads((workspace.evals / result["eval_id"] / "config.json").read_text())["model_identity"]
    weights = (rd.adapter / "adapter_model.safetensors").read_bytes()
    assert identity["run_id"] == rd.run_id and identity["weights_sha256"] == hashlib.sha256(weights).hexdigest()

    import_notes(workspace, "relabelled", labels=["urgent", "routine", "cardiology"] * 20)
    with pytest.raises(MedcoreError, match=r"predicts the classes cardiology, .*'relabelled' has the labels .*urgent"):
        predict_split(rd.run_id, workspace, "relabelled")


def test_the_cls_only_last_layer_gives_the_models_own_logits():
    """Padding, pairs with segment ids, and a fine-tuned-looking head: the same logits as net(...) to 1e-5."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    from medcore.cls_only import cls_logits, supports_cls_only
    from medcore.models import minilm_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    net = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=3).eval()
    assert supports_cls_only(net)
    texts = [note[: 40 * (i + 1)] for i, note in enumerate(demo_notes()["text"].head(6))]
    pairs = list(reversed(texts))
    for encoded in (
        tokenizer(texts, padding=True, return_tensors="pt"),
        tokenizer(texts, pairs, padding=True, truncation="longest_first", max_length=96, return_tensors="pt"),
    ):
        with torch.inference_mode():
            expected = net(**encoded).logits
            got = cls_logits(net, encoded["input_ids"], encoded["attention_mask"], encoded.get("token_type_ids"))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    llama = LlamaForSequenceClassification(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                       num_hidden_layers=1, num_attention_heads=2, num_labels=2))  # fmt: skip
    assert not supports_cls_only(llama)
