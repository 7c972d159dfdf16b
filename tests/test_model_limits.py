"""A model's limits (positions, vocabulary, trained head) read from config.json, and the launch refused past them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from train_datasets import write_dataset

from medcore.cli import main as medcore_main
from medcore.data.manifest import dataset_dir, read_manifest, write_manifest
from medcore.errors import CLI_OPTIONS, MedcoreError
from medcore.model_limits import read_model_limits
from medcore.models import load_tokenizer
from medcore.train import load_spec, validate_spec


def config_folder(tmp_path, name: str, **config) -> str:
    """A model folder holding only config.json: enough for the limits (no weights are ever read)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def bert_folder(tmp_path, name: str, vocab_size: int = 30522, num_labels: int | None = None) -> str:
    """A tiny BERT saved with MiniLM's tokenizer (30522 tokens); with `num_labels`, a trained classification head."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    shape = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    if num_labels:
        model = BertForSequenceClassification(BertConfig(vocab_size=vocab_size, num_labels=num_labels, **shape))
    else:
        model = BertModel(BertConfig(vocab_size=vocab_size, **shape))
    folder = tmp_path / name
    model.save_pretrained(folder)
    load_tokenizer("minilm").save_pretrained(folder)
    return str(folder)


@pytest.fixture
def notes_ws(workspace):
    write_dataset(workspace, "notes", "classification", n=60)  # 3 classes
    return workspace


def spec(**overrides):
    return load_spec({"dataset": "notes", "task": "classification", "model": "minilm", "max_length": 64, **overrides})


def problem(run_spec, ws) -> MedcoreError:
    with pytest.raises(MedcoreError) as err:
        validate_spec(run_spec, ws)
    return err.value


def test_minilm_limits_come_from_its_config(workspace):
    limits = read_model_limits("minilm", workspace)
    assert (limits.positions, limits.vocab_size, limits.head_task, limits.head_labels) == (512, 30522, None, None)


def test_roberta_loses_its_padding_offset_and_gpt2_says_n_positions(tmp_path, workspace):
    roberta = config_folder(tmp_path, "roberta", model_type="roberta", max_position_embeddings=514, pad_token_id=1)
    gpt2 = config_folder(tmp_path, "gpt2", model_type="gpt2", n_positions=1024, vocab_size=50257)
    assert read_model_limits(roberta, workspace).positions == 512
    assert read_model_limits(gpt2, workspace).positions == 1024
    assert read_model_limits(gpt2, workspace).vocab_size == 50257


def test_a_trained_head_is_read_from_architectures_and_labels(tmp_path, workspace):
    folder = config_folder(
        tmp_path, "finetuned", model_type="bert", max_position_embeddings=512,
        architectures=["BertForTokenClassification"], id2label={"0": "O", "1": "B-NAME", "2": "I-NAME"},
    )  # fmt: skip
    limits = read_model_limits(folder, workspace)
    assert (limits.head_task, limits.head_labels) == ("token-classification", 3)


def test_a_hub_model_not_on_this_machine_has_no_known_limits(workspace):
    assert read_model_limits("nobody/not-cached-model", workspace) is None


def test_max_length_past_the_positions_names_the_setting_in_each_surface(notes_ws):
    err = problem(spec(max_length=2048), notes_ws)
    assert "max_length 2048 is longer than minilm can read (512 positions); set max_length to 512 or less" in str(err)
    assert err.render(CLI_OPTIONS).endswith("use max_length=512 or less.")
    validate_spec(spec(max_length=512), notes_ws)  # the limit itself is fine


def test_roberta_style_offset_is_enforced_at_launch(tmp_path, notes_ws):
    roberta = config_folder(
        tmp_path, "roberta", model_type="roberta", max_position_embeddings=514, pad_token_id=1, vocab_size=100,
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    )  # fmt: skip
    assert "(512 positions); set max_length to 512 or less" in str(
        problem(spec(model=roberta, max_length=513), notes_ws)
    )
    validate_spec(spec(model=roberta, max_length=512), notes_ws)


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tmp_path, notes_ws):
    small = bert_folder(tmp_path, "small-vocab", vocab_size=1000)
    message = str(problem(spec(model=small), notes_ws))
    assert "has 30522 tokens but its embedding matrix has 1000 rows" in message
    assert "use the tokenizer saved with the model" in message
    validate_spec(spec(model=bert_folder(tmp_path, "full-vocab")), notes_ws)


def test_a_trained_head_of_another_size_is_refused(tmp_path, notes_ws):
    two = bert_folder(tmp_path, "two-class-head", num_labels=2)
    message = str(problem(spec(model=two), notes_ws))
    assert (
        "ships a trained classification head with 2 outputs but classification on dataset 'notes' needs 3" in message
    )
    validate_spec(spec(model=bert_folder(tmp_path, "three-class-head", num_labels=3)), notes_ws)


def test_classification_needs_two_classes(notes_ws):
    folder = dataset_dir(notes_ws, "notes")
    manifest = read_manifest(notes_ws, "notes")
    for split in ("train", "validation", "test"):  # every row in one class
        frame = pd.read_parquet(folder / f"{split}.parquet").assign(specialty="cardiology")
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    manifest.label_set = ["cardiology"]
    write_manifest(folder, manifest)
    message = str(problem(spec(allow_unredacted=True), notes_ws))
    assert "has 1 class(es) in its label column; classification needs at least 2" in message


def test_cli_says_the_setting_as_its_own_argument(notes_ws, tmp_path, capsys):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("dataset: notes\ntask: classification\nmodel: minilm\n")
    assert medcore_main(["train", str(spec_file), "--nproc", "1", "max_length=1024"]) == 1
    err = capsys.readouterr().err
    assert "(512 positions); use max_length=512 or less" in err
    assert list(notes_ws.runs.iterdir()) == []
