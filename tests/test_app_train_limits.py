"""Train page (AppTest): a max length past the chosen model's position limit is refused before Launch, in the page's
words, and Launch is disabled."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from app_helpers import open_page, texts, widget
from train_datasets import certify_redacted

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, RedactionInfo


@pytest.fixture
def notes(workspace):
    frame = pd.DataFrame({"text": [f"note {i} with a finding" for i in range(24)], "label": ["a", "b", "c"] * 8})
    redacted = RedactionInfo(status="redacted", mode="safe-harbor", method="mask", parent="notes")
    import_dataset(workspace, frame, "notes-redacted", ColumnMapping(text="text", label="label"), redaction=redacted)
    certify_redacted(workspace, "notes-redacted")
    return workspace


def test_max_length_past_the_models_positions_is_refused_before_launch(notes):
    at = open_page("train")
    assert widget(at.selectbox, "Model").value == "minilm"
    widget(at.number_input, "Max length (tokens)").set_value(2048)
    at.run()
    assert '"max_length": 2048' in at.json[0].value  # the form shows what would be launched
    errors = texts(at, "error")  # before Launch: the page says so and Launch is disabled
    assert widget(at.button, "Launch").disabled is True
    assert len(errors) == 1, errors
    assert "max_length 2048 is longer than minilm can read (512 positions)" in errors[0]
    assert 'set "Max length (tokens)" to 512 or less' in errors[0]  # the box's label, not a CLI flag
    assert "--" not in errors[0] and "max_length=" not in errors[0]
    assert at.title[0].value == "Train"  # stayed on the page
    assert not notes.runs.exists() or not list(notes.runs.iterdir())  # nothing was launched


def test_the_limit_itself_passes_validation(notes):
    from medcore.train import load_spec, validate_spec

    at = open_page("train")
    widget(at.number_input, "Max length (tokens)").set_value(512)
    at.run()
    assert not at.error, texts(at, "error")
    validate_spec(load_spec(json.loads(at.json[0].value)), notes)  # what Launch would validate: accepted
