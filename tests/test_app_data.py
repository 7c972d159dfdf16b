"""Data page (AppTest): upload -> suggested mapping -> validation report -> import -> catalog; errors as messages."""

from __future__ import annotations

import base64
import io
import secrets

import pandas as pd
import pytest
from app_helpers import open_page, texts, widget

from medcore.data import encryption
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, read_manifest
from medcore.demo.build import NOTES_CSV, build_demo_workspace


@pytest.fixture
def demo_csv(workspace) -> bytes:
    build_demo_workspace(workspace, seed=3, n_notes=60, n_qa=5)
    return (workspace.datasets / NOTES_CSV).read_bytes()


def upload(at, name: str, data: bytes, mime: str = "text/csv"):
    at.file_uploader[0].set_value((name, data, mime))
    return at.run()


def test_upload_suggests_mapping_validates_and_imports(workspace, demo_csv):
    at = upload(open_page("data"), "demo_notes.csv", demo_csv)
    assert not at.exception, at.exception
    assert widget(at.selectbox, "Text").value == "text"
    assert widget(at.selectbox, "Label").value == "specialty"
    assert widget(at.selectbox, "Patient id").value == "patient_id"
    assert widget(at.multiselect, "Subgroups").value == ["sex", "age_band"]
    assert any("Valid for task: classification" in s for s in texts(at, "success"))
    assert widget(at.text_input, "Dataset name").value == "demo_notes"
    assert widget(at.button, "Import").disabled is False

    widget(at.text_input, "Dataset name").set_value("notes")
    at = widget(at.button, "Import").click().run()
    assert not at.exception and not at.error, texts(at, "error")
    manifest = read_manifest(workspace, "notes")
    assert manifest.total_rows == 60 and manifest.mapping.label == "specialty"
    assert manifest.mapping.subgroups == ["sex", "age_band"]
    assert any(s.startswith("Imported 'notes'") for s in texts(at, "success"))
    catalog = next(d.value for d in reversed(at.dataframe) if "name" in d.value.columns)
    assert catalog["name"].tolist() == ["notes"] and catalog["redaction"].tolist() == ["raw"]


def test_changed_mapping_and_split_reach_the_import(workspace, demo_csv):
    at = upload(open_page("data"), "demo_notes.csv", demo_csv)
    widget(at.selectbox, "Label").set_value("style")
    widget(at.multiselect, "Subgroups").set_value(["sex"])
    widget(at.number_input, "Train %").set_value(50)
    widget(at.number_input, "Validation %").set_value(25)
    widget(at.number_input, "Test %").set_value(25)
    at = widget(at.button, "Import").click().run()
    assert not at.error, texts(at, "error")
    manifest = read_manifest(workspace, "demo_notes")
    assert manifest.mapping.label == "style" and manifest.mapping.subgroups == ["sex"]
    assert manifest.rows["train"] < 40 and manifest.rows["test"] > 6  # 50/25/25, not the 80/10/10 default


def test_a_name_clash_is_explained_in_the_pages_words_not_cli_flags(workspace, demo_csv, capsys):
    from medcore.cli import main

    at = upload(open_page("data"), "demo_notes.csv", demo_csv)
    widget(at.text_input, "Dataset name").set_value("notes")
    at = widget(at.button, "Import").click().run()
    at = widget(at.button, "Import").click().run()  # the same name again
    error = " ".join(texts(at, "error"))
    assert "already exists" in error and 'tick "Replace a dataset with this name"' in error
    assert "--overwrite" not in error and "overwrite=True" not in error
    widget(at.checkbox, "Replace a dataset with this name").check()
    at = widget(at.button, "Import").click().run()
    assert not at.error, texts(at, "error")
    path = workspace.root / "notes.csv"
    path.write_bytes(demo_csv)
    assert main(["data", "import", str(path), "--name", "notes"]) == 1  # the CLI says it as a flag
    assert "pick another name or pass --overwrite" in capsys.readouterr().err


def test_tasks_come_from_the_engine_and_not_phi_reaches_the_import(workspace):
    from typing import get_args

    from medcore.models import Task

    frame = pd.DataFrame({"text": [f"Seen on day {i}." for i in range(12)], "ward": ["ICU", "CCU"] * 6})
    at = upload(open_page("data"), "ward.csv", frame.to_csv(index=False).encode())
    assert widget(at.selectbox, "Task").options[1:] == list(get_args(Task))  # token-classification included
    widget(at.multiselect, "Not PHI").set_value(["ward"])
    at = widget(at.button, "Import").click().run()
    assert not at.error, texts(at, "error")
    assert read_manifest(workspace, "ward").mapping.not_phi == ["ward"]


def test_spans_role_reaches_the_import(workspace):
    frame = pd.DataFrame(
        {
            "text": [f"Seen by Dr. Hall on day {i}." for i in range(12)],
            "spans": [[{"start": 12, "end": 16, "type": "NAME"}] for _ in range(12)],
        }
    )
    data = frame.to_json(orient="records", lines=True).encode()
    at = upload(open_page("data"), "ner.jsonl", data, "application/json")
    widget(at.selectbox, "Spans").set_value("spans")
    at.run()
    assert any("Valid for task: token-classification" in s for s in texts(at, "success")), texts(at, "error")
    at = widget(at.button, "Import").click().run()
    assert read_manifest(workspace, "ner").mapping.spans == "spans"


def test_second_text_role_is_guessed_or_mapped_and_reaches_the_import(workspace):
    from medcore.data.manifest import ColumnMapping

    pairs = pd.DataFrame({"question1": [f"Is chest pain {i} serious?" for i in range(12)],
                          "question2": [f"Should I worry about pain {i % 5}?" for i in range(12)],
                          "label": ["same", "different"] * 6})  # fmt: skip
    at = upload(open_page("data"), "pairs.csv", pairs.to_csv(index=False).encode())
    second = widget(at.selectbox, "Second text (pairs)")
    assert second.value == "question2" and widget(at.selectbox, "Text").value == "question1"
    assert second.help == ColumnMapping.model_fields["text_pair"].description
    neutral = pairs.rename(columns={"question1": "asked", "question2": "asked_later"})
    at = upload(open_page("data"), "neutral.csv", neutral.to_csv(index=False).encode())
    assert widget(at.selectbox, "Second text (pairs)").value == "(none)"  # no pair-like names: nothing guessed
    widget(at.selectbox, "Text").set_value("asked")
    widget(at.selectbox, "Second text (pairs)").set_value("asked_later")
    at.run()
    assert any("Valid for task: classification" in s for s in texts(at, "success")), texts(at, "error")
    at = widget(at.button, "Import").click().run()
    assert not at.error, texts(at, "error")
    mapping = read_manifest(workspace, "neutral").mapping
    assert (mapping.text, mapping.text_pair, mapping.label) == ("asked", "asked_later", "label")


def test_row_problems_listed_and_import_disabled(workspace):
    frame = pd.DataFrame({"text": ["note one", "", "note three", "note four"], "label": ["a", "b", "a", "b"]})
    at = upload(open_page("data"), "bad.csv", frame.to_csv(index=False).encode())
    errors = texts(at, "error")
    assert any("empty text in column 'text'" in e for e in errors), errors
    problems = at.dataframe[-2].value if len(at.dataframe) > 1 else at.dataframe[0].value
    assert {"row": 2, "column": "text", "problem": "empty or missing text"} in problems.to_dict("records")
    assert widget(at.button, "Import").disabled is True
    assert not at.exception


def test_unreadable_upload_is_a_message_not_a_traceback(workspace):
    at = upload(open_page("data"), "notes.jsonl", b'{"text": "ok"}\n{"text": broken\n', "application/json")
    assert not at.exception
    errors = texts(at, "error")
    assert len(errors) == 1 and "line 2" in errors[0], errors
    assert "broken" not in errors[0]  # the message never quotes the upload's content


def test_folder_path_source(workspace, tmp_path):
    path = workspace.root / "imports" / "notes.parquet"  # the default import root (tests/test_import_roots.py)
    path.parent.mkdir(exist_ok=True)
    pd.DataFrame({"text": [f"note {i}" for i in range(12)], "label": ["x", "y"] * 6}).to_parquet(path)
    at = open_page("data")
    widget(at.radio, "Source").set_value("File or folder on this machine")
    at.run()
    widget(at.text_input, "Path").set_value(str(path))
    at.run()
    assert widget(at.selectbox, "Label").value == "label"
    widget(at.text_input, "Dataset name").set_value("pq")
    at = widget(at.button, "Import").click().run()
    assert read_manifest(workspace, "pq").total_rows == 12


def test_missing_path_is_explained(workspace, tmp_path):
    at = open_page("data")
    widget(at.radio, "Source").set_value("File or folder on this machine")
    at.run()
    widget(at.text_input, "Path").set_value(str(workspace.root / "imports" / "nope.csv"))
    at.run()
    assert any("does not exist" in e for e in texts(at, "error"))
    assert not at.exception


def test_catalog_lists_existing_datasets(workspace):
    from medcore.data.importer import import_dataset
    from medcore.data.manifest import ColumnMapping

    frame = pd.read_csv(io.StringIO("text,label\n" + "\n".join(f"n{i},{'ab'[i % 2]}" for i in range(10))))
    import_dataset(workspace, frame, "small", ColumnMapping(text="text", label="label"))
    at = open_page("data")
    catalog = at.dataframe[0].value
    assert catalog.loc[0, "name"] == "small" and catalog.loc[0, "rows"] == 10


def test_catalog_says_which_datasets_are_encrypted_at_rest(workspace, monkeypatch):
    frame = pd.DataFrame({"text": [f"Seen on day {i}." for i in range(10)], "label": ["a", "b"] * 5})
    mapping = ColumnMapping(text="text", label="label")
    monkeypatch.setenv(encryption.ENCRYPT_ENV, "1")
    monkeypatch.setenv(encryption.KEY_ENV, base64.b64encode(secrets.token_bytes(32)).decode())
    assert import_dataset(workspace, frame, "sealed", mapping).encrypted
    monkeypatch.setenv(encryption.ENCRYPT_ENV, "0")
    assert not import_dataset(workspace, frame, "open", mapping).encrypted
    at = open_page("data")
    assert not at.exception and not at.error, texts(at, "error")
    catalog = at.dataframe[0].value
    assert dict(zip(catalog["name"], catalog["encrypted at rest"], strict=True)) == {"open": "no", "sealed": "yes"}


def test_go_to_phi_opens_the_dataset_just_imported(workspace, demo_csv):
    from medcore.demo.register import register_demo_datasets

    register_demo_datasets(workspace)  # demo-notes: a raw dataset the PHI page would otherwise pick first
    at = upload(open_page("data"), "demo_notes.csv", demo_csv)
    widget(at.text_input, "Dataset name").set_value("my-icu-notes-2024")
    at = widget(at.button, "Import").click().run()
    assert not at.exception and not at.error, texts(at, "error")
    at = at.switch_page("views/phi.py").run()
    assert widget(at.selectbox, "Dataset").value == "my-icu-notes-2024"
