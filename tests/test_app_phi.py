"""PHI page (AppTest): highlighted preview with legend and counts, mode/method choices, redaction, audit log."""

from __future__ import annotations

import html
import json
import re
import time

import pytest
from app_helpers import open_page, texts, widget

from medcore.data.importer import import_dataset
from medcore.data.manifest import load_split, read_manifest
from medcore.data.readers import read_upload
from medcore.data.validate import suggest_mapping
from medcore.demo.build import NOTES_JSONL, build_demo_workspace

TIMEOUT = 120  # the first preview in a process loads spaCy and Presidio


@pytest.fixture
def notes(workspace):
    build_demo_workspace(workspace, seed=0, n_notes=60, n_qa=3)
    frame = read_upload(workspace.datasets / NOTES_JSONL)
    mapping = suggest_mapping(frame.drop(columns=["phi_spans"]))
    import_dataset(workspace, frame, "notes", mapping)
    return workspace


def note_panes(at) -> list[str]:
    return [m.value for m in at.markdown if 'class="phi-text"' in m.value or 'class="redacted-text"' in m.value]


def test_preview_highlights_gold_phi(notes):
    at = open_page("phi", timeout=TIMEOUT)
    assert not at.exception and not at.error, texts(at, "error")
    assert widget(at.selectbox, "Dataset").value == "notes"
    assert widget(at.selectbox, "Split").value == "train"
    panes = note_panes(at)
    assert len(panes) == 6  # 3 rows x (original, redacted)
    first = load_split(notes, "notes", "train").iloc[0]
    gold_values = {first["text"][s["start"] : s["end"]] for s in first["phi_spans"]}  # the demo's gold spans
    marked = [
        html.unescape(m).replace("<br>", "\n") for m in re.findall(r'<mark class="phi"[^>]*>(.*?)</mark>', panes[0])
    ]
    assert marked and len(set(marked) & gold_values) >= len(gold_values) // 2  # most gold PHI is highlighted
    assert "[" in panes[1] and 'class="mask"' in panes[1]  # safe harbor masks, tinted
    legend = next(m.value for m in at.markdown if 'class="phi-legend"' in m.value)
    chips = {t: int(n) for t, n in re.findall(r'data-type="([A-Z_]+)"[^>]*>[A-Z_]+ <b>(\d+)</b>', legend)}
    marks = re.findall(r'<mark class="phi" data-type="([A-Z_]+)"', "".join(panes[0::2]))
    assert chips and chips == {t: marks.count(t) for t in set(marks)}  # legend counts = highlights per type


def test_research_mode_offers_surrogates(notes):
    at = open_page("phi", timeout=TIMEOUT)
    assert widget(at.radio, "Method").options == ["mask", "remove"]  # Safe Harbor never surrogates
    widget(at.radio, "Mode").set_value("Research (limited data set)")
    at.run()
    method = widget(at.radio, "Method")
    assert method.options == ["surrogate", "mask", "remove"] and method.value == "surrogate"
    redacted = note_panes(at)[1]
    assert "[NAME]" not in redacted and not at.exception


def test_note_text_is_escaped(workspace):
    import pandas as pd

    from medcore.data.manifest import ColumnMapping

    hostile = '<script>alert("x")</script> Patient John Smith seen on 03/14/2023 <b>bold</b>'
    frame = pd.DataFrame({"text": [hostile] * 4 + ["plain note"] * 4, "label": ["a", "b"] * 4})
    import_dataset(workspace, frame, "hostile", ColumnMapping(text="text", label="label"), split=(1.0, 0.0, 0.0))
    at = open_page("phi", timeout=TIMEOUT)
    for pane in note_panes(at):
        assert "<script>" not in pane and "<b>" not in pane
    assert any("&lt;script&gt;" in pane for pane in note_panes(at))


def test_audit_log_verified_and_tampering_shown(notes):
    from medcore.phi.audit import append_audit_record, log_path

    append_audit_record(notes, "redaction", dataset="notes", entities={"NAME": 3})
    at = open_page("phi", timeout=TIMEOUT)
    assert any(s.startswith("Verified: 1 records") for s in texts(at, "success"))
    table = at.dataframe[-1].value
    assert table.columns[:3].tolist() == ["seq", "time", "kind"]
    assert table.loc[0, "kind"] == "redaction" and table.loc[0, "entities"] == '{"NAME": 3}'
    path = log_path(notes)
    record = json.loads(path.read_text())
    record["entities"]["NAME"] = 2  # an edit after the fact: the record no longer matches its hash
    path.write_text(json.dumps(record) + "\n")
    at.run()
    assert any("fails verification" in e and "record edited" in e for e in texts(at, "error"))


def test_no_dataset_points_to_data(workspace):
    at = open_page("phi")
    assert texts(at, "info") == ["No datasets yet: import one on the Data page first."]


def test_redact_whole_dataset(notes):
    at = open_page("phi", timeout=TIMEOUT)
    assert widget(at.text_input, "New dataset name").value == "notes-redacted"
    at = widget(at.button, "Redact dataset").click().run(timeout=TIMEOUT)
    # The redaction runs as its own process; the page polls it (a fragment every second) until it reports.
    deadline = time.monotonic() + 120
    while not any(s.startswith("Wrote ") for s in texts(at, "success")) and time.monotonic() < deadline:
        assert not at.exception and not at.error, texts(at, "error")
        time.sleep(0.5)
        at.run(timeout=TIMEOUT)
    assert any(s.startswith("Wrote 'notes-redacted' (60 records, safe-harbor, mask)") for s in texts(at, "success"))
    manifest = read_manifest(notes, "notes-redacted")
    assert (manifest.redaction.status, manifest.redaction.parent) == ("redacted", "notes")
    redacted = load_split(notes, "notes-redacted", "train")
    original = load_split(notes, "notes", "train")
    assert (redacted["text"] != original["text"]).all()
    # The next run shows the redacted copy, labelled, with nothing left to redact; the audit log has the run.
    at.run()
    assert widget(at.selectbox, "Dataset").value == "notes-redacted"
    assert any("is redacted (safe-harbor, mask) from 'notes'" in s for s in texts(at, "success"))
    assert widget(at.button, "Redact dataset").disabled is True
    assert at.dataframe[-1].value.loc[0, "output_dataset"] == "notes-redacted"


def test_redaction_error_is_a_message(notes):
    at = open_page("phi", timeout=TIMEOUT)
    widget(at.text_input, "New dataset name").set_value("Bad Name!")
    at = widget(at.button, "Redact dataset").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert any("Dataset name 'Bad Name!' is not allowed" in e for e in texts(at, "error"))
