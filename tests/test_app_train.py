"""Train page (AppTest): presets with explanations, the un-redacted refusal, spec errors as messages, launch."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from app_helpers import open_page, texts, widget
from train_datasets import certify_redacted

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, RedactionInfo


@pytest.fixture
def datasets(workspace):
    frame = pd.DataFrame({"text": [f"note {i} with a finding" for i in range(24)], "label": ["a", "b", "c"] * 8})
    mapping = ColumnMapping(text="text", label="label")
    import_dataset(workspace, frame, "notes", mapping)
    redacted = RedactionInfo(status="redacted", mode="safe-harbor", method="mask", parent="notes")
    import_dataset(workspace, frame, "notes-redacted", mapping, redaction=redacted)
    certify_redacted(workspace, "notes-redacted")  # synthetic notes: the audit record the training gate checks
    return workspace


def test_defaults_prefer_the_redacted_dataset(datasets):
    at = open_page("train")
    assert not at.exception and not at.error, texts(at, "error")
    assert widget(at.selectbox, "Dataset").value == "notes-redacted"
    task = widget(at.selectbox, "Task")
    assert task.value == "classification" and "token-classification" in task.options  # the RunSpec's tasks
    assert widget(at.selectbox, "Model").value == "minilm"
    assert not at.warning  # redacted and balanced: nothing to warn about
    assert [c.label for c in at.checkbox] == ["Weigh classes by their rarity (balanced)"]  # no override offered
    assert at.checkbox[0].value is False
    lora = widget(at.selectbox, "LoRA preset")
    assert lora.value == "default" and set(lora.options) >= {"small", "default", "large", "full"}
    assert "single_node" in widget(at.selectbox, "ZeRO preset").options
    captions = texts(at, "caption")
    assert any(c.startswith("Default LoRA: rank 16") for c in captions)  # the preset's own explanation
    assert any(c.startswith("ZeRO-1 on one machine") for c in captions)


def test_raw_dataset_needs_the_override(datasets):
    at = open_page("train")
    widget(at.selectbox, "Dataset").set_value("notes")
    at.run()
    assert any("has not been through PHI redaction" in w for w in texts(at, "warning"))
    override = widget(at.checkbox, "This data is already de-identified: train on it anyway")
    assert override.value is False
    assert at.json[0].value.count('"allow_unredacted"') == 0  # default False is not in the shown spec
    override.check()
    at.run()
    assert '"allow_unredacted": true' in at.json[0].value


def test_choices_reach_the_spec(datasets):
    at = open_page("train")
    widget(at.selectbox, "LoRA preset").set_value("small")
    widget(at.number_input, "Processes per node").set_value(2)
    widget(at.number_input, "Max steps (0: use epochs)").set_value(5)
    widget(at.number_input, "Micro-batch").set_value(4)
    at.run()
    spec = at.json[0].value
    for fragment in ('"lora": "small"', '"nproc_per_node": 2', '"max_steps": 5', '"micro_batch": 4'):
        assert fragment in spec, spec


def test_memory_estimate_shows_and_warns_when_it_cannot_fit(datasets):
    at = open_page("train")
    assert any(m.startswith("**Memory estimate:** ~") and "ZeRO-1" in m for m in texts(at, "markdown"))
    assert not any("not fit" in w for w in texts(at, "warning"))
    widget(at.number_input, "Micro-batch").set_value(1024)
    widget(at.number_input, "Max length (tokens)").set_value(4096)
    at.run()
    assert any("will probably not fit" in w and "gradient checkpointing" in w for w in texts(at, "warning"))


def test_invalid_topology_is_a_message(datasets):
    at = open_page("train")
    widget(at.number_input, "Nodes").set_value(2)
    at.run()
    assert not at.exception
    errors = texts(at, "error")
    assert len(errors) == 1 and "rdzv_endpoint" in errors[0], errors
    assert not at.button  # nothing to launch while the spec is invalid


def test_multi_node_form_shows_the_other_nodes_commands(datasets):
    from medcore.train import load_spec
    from medcore.train.launch import open_run_dir

    at = open_page("train")
    widget(at.number_input, "Nodes").set_value(3)
    at.run()
    widget(at.text_input, "Rendezvous HOST:PORT").set_value("10.0.0.1:29500")
    at.run()
    assert not at.exception and not at.error, texts(at, "error")
    run_id = widget(at.text_input, "Run id (the same on every node)").value
    assert run_id and f'"run_id": "{run_id}"' in at.json[0].value
    lines = at.code[0].value.splitlines()
    spec_json = datasets.runs / run_id / "spec.json"
    assert lines == [f"MEDCORE_HOME={datasets.root} medcore train {spec_json} node_rank={n}" for n in (1, 2)]
    at.run()
    assert widget(at.text_input, "Run id (the same on every node)").value == run_id  # chosen once, kept
    # What Launch creates, node 1 joins with exactly that command's spec file and override.
    open_run_dir(load_spec(json.loads(at.json[0].value)), datasets, run_id)
    assert open_run_dir(load_spec(spec_json, ["node_rank=1"]), datasets, run_id).path == spec_json.parent


def test_save_interval_reaches_the_spec(datasets):
    at = open_page("train")
    widget(at.number_input, "Checkpoint every N steps (0: none)").set_value(25)
    at.run()
    assert '"save_interval": 25' in at.json[0].value


def test_no_dataset_points_to_data(workspace):
    at = open_page("train")
    assert texts(at, "info") == ["No datasets yet: import one on the Data page, then redact it on the PHI page."]


def test_launch_refused_for_raw_data_shows_why(datasets):
    at = open_page("train")
    widget(at.selectbox, "Dataset").set_value("notes")
    at = widget(at.button, "Launch").click().run()
    assert not at.exception
    errors = texts(at, "error")
    assert len(errors) == 1 and "has not been redacted" in errors[0], errors
    assert at.title[0].value == "Train"  # stayed on the page
    assert not list(datasets.runs.iterdir())  # nothing was created


@pytest.mark.slow
def test_launch_opens_the_run_in_runs(datasets):
    from medcore.jobs import cancel_run, list_runs

    at = open_page("train")
    widget(at.number_input, "Max steps (0: use epochs)").set_value(2)
    at = widget(at.button, "Launch").click().run()
    try:
        assert not at.exception and not at.error, texts(at, "error")
        runs = list_runs(datasets)
        assert len(runs) == 1
        assert at.title[0].value == "Runs"  # st.switch_page took the user there
        assert widget(at.selectbox, "Run").value == runs[0].run_id == at.session_state["open_run"]
        spec = (datasets.runs / runs[0].run_id / "spec.json").read_text()
        assert '"max_steps": 2' in spec and '"dataset": "notes-redacted"' in spec
    finally:
        for run in list_runs(datasets):
            if run.state in ("queued", "starting", "running"):
                cancel_run(run.run_id, datasets, grace_s=2)
