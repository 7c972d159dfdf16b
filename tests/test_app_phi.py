"""PHI page (AppTest): highlighted preview with legend and sources, the tagger threshold with its measured figures,
mode/method choices, every column's decision with overrides, redaction and its verification, the audit log."""

from __future__ import annotations

import html
import json
import re
import time

import pandas as pd
import pytest
from app_helpers import open_page, texts, widget

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, load_split, read_manifest, split_path
from medcore.data.readers import read_upload
from medcore.data.validate import suggest_mapping
from medcore.demo.build import NOTES_JSONL, build_demo_workspace
from medcore.errors import MedcoreError
from medcore.phi import console_info, detect, job
from medcore.phi.config import CATEGORIES, DEFAULT_TAGGER, FAST_TAGGER
from medcore.phi.tagger import TAGGER_RECORD, has_tagger, tagger_record

TIMEOUT = 120  # the first preview in a process loads spaCy and Presidio
REAL_TAGGER_FOR = detect.tagger_for
# A tagger record as bench/phi_cv.py --record writes it: figures per threshold of the grid, and the chosen one.
RECORD = {
    "trained_at": "2025-01-01T00:00:00Z",
    "threshold": 0.3,
    "cross_validation": {
        "folds": 5,
        "notes": 120,
        "threshold": 0.3,
        "by_threshold": {
            "0.1": {"recall": 0.995, "precision": 0.612, "per_category_recall": {"NAME": 0.998, "DATE": 0.993}},
            "0.3": {"recall": 0.991, "precision": 0.747, "per_category_recall": {"NAME": 0.994, "DATE": 0.99}},
            "0.5": {"recall": 0.978, "precision": 0.834, "per_category_recall": {"NAME": 0.981, "DATE": 0.975}},
        },
    },
}


@pytest.fixture(autouse=True)
def stand_in_tagger(monkeypatch, tmp_path) -> list:
    """The page sees a tagger with the record above while detection runs the rules alone: fast, and the same before
    and after the real tagger ships. Returns the thresholds detection was configured with."""
    folder = tmp_path / "tagger"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / TAGGER_RECORD).write_text(json.dumps(RECORD))
    monkeypatch.setattr(console_info, "DEFAULT_TAGGER", folder)
    thresholds = []

    def rules_alone(config):
        thresholds.append(config.threshold)
        return None, None

    monkeypatch.setattr(detect, "tagger_for", rules_alone)
    return thresholds


@pytest.fixture
def no_tagger(stand_in_tagger, monkeypatch, tmp_path):
    """No tagger has been built (the page falls back to the rules for its preview)."""
    monkeypatch.setattr(console_info, "DEFAULT_TAGGER", tmp_path / "no-tagger")


@pytest.fixture
def real_tagger(stand_in_tagger, monkeypatch):
    """The shipped tagger, for a redaction in its own process (skipped until `medcore phi train-tagger` built it)."""
    if not has_tagger(DEFAULT_TAGGER):
        pytest.skip(f"no PHI tagger at {DEFAULT_TAGGER} yet: build it with `medcore phi train-tagger`")
    monkeypatch.setattr(console_info, "DEFAULT_TAGGER", DEFAULT_TAGGER)
    monkeypatch.setattr(detect, "tagger_for", REAL_TAGGER_FOR)


@pytest.fixture
def notes(workspace):
    build_demo_workspace(workspace, seed=0, n_notes=60, n_qa=3)
    frame = read_upload(workspace.datasets / NOTES_JSONL)
    mapping = suggest_mapping(frame.drop(columns=["phi_spans"]))
    import_dataset(workspace, frame, "notes", mapping)
    return workspace


def planted_frame(n: int = 20) -> pd.DataFrame:
    """Notes beside columns a redaction must not copy: a record number, a patient's name, a date of birth."""
    names = ["John Smith", "Mary Jones", "Ahmed Khan", "Rose Hall", "Li Wei"]
    return pd.DataFrame(
        {
            "text": [f"Seen by Dr. Rose Hall on 03/{i + 1:02d}/2023, stable." for i in range(n)],
            "mrn": [f"MRN{4400000 + 37 * i}" for i in range(n)],
            "patient_name": [names[i % len(names)] for i in range(n)],
            "dob": [f"19{40 + i}-0{1 + i % 9}-1{i % 10}" for i in range(n)],
            "ward": ["ICU", "CCU"] * (n // 2),
            "label": ["a", "b"] * (n // 2),
        }
    )


@pytest.fixture
def planted(workspace):
    import_dataset(workspace, planted_frame(), "planted", ColumnMapping(text="text", label="label"))
    return workspace


def decisions(at) -> pd.DataFrame:
    """The column-decision table on the page (by its header), indexed by column."""
    tables = [t.value for t in at.dataframe if "recognised as" in t.value.columns]
    assert len(tables) == 1, [t.value.columns.tolist() for t in at.dataframe]
    return tables[0].set_index("column")


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
    assert list(chips)[: len(CATEGORIES)] == list(CATEGORIES)  # every category the engine knows, in its order
    marks = re.findall(r'<mark class="phi" data-type="([A-Z_]+)"', "".join(panes[0::2]))
    found = {t: n for t, n in chips.items() if n}
    assert found and found == {t: marks.count(t) for t in set(marks)}  # legend counts = highlights per type


def test_each_span_says_what_found_it(notes):
    at = open_page("phi", timeout=TIMEOUT)
    titles = re.findall(
        r'<mark class="phi" data-type="([A-Z]+)" data-source="([^"]+)" title="([^"]+)"', note_panes(at)[0]
    )
    assert titles and all(title.startswith(f"{kind}: {source} (") for kind, source, title in titles)
    spans = next(t.value for t in at.dataframe if "source" in t.value.columns)
    assert spans.columns.tolist() == ["record", "start", "end", "category", "source", "found by", "score"]
    assert set(spans["source"]) <= {"rule", "tagger"} and set(spans["category"]) <= set(CATEGORIES)
    first = load_split(notes, "notes", "train").iloc[0]
    cells = {str(v) for v in spans.to_numpy().ravel()}
    assert not any(first["text"][s["start"] : s["end"]] in cells for s in first["phi_spans"])  # no note text


def test_research_mode_offers_surrogates(notes):
    at = open_page("phi", timeout=TIMEOUT)
    assert widget(at.radio, "Method").options == ["mask", "remove"]  # Safe Harbor never surrogates
    widget(at.radio, "Mode").set_value("Research (limited data set)")
    at.run()
    method = widget(at.radio, "Method")
    assert method.options == ["surrogate", "mask", "remove"] and method.value == "surrogate"
    redacted = note_panes(at)[1]
    assert "[NAME]" not in redacted and not at.exception
    # Every surrogate is highlighted like a mask would be: as many marks as spans, per category.
    panes = note_panes(at)
    for original, replaced in zip(panes[0::2], panes[1::2], strict=True):
        found = re.findall(r'<mark class="phi" data-type="([A-Z_]+)"', original)
        swapped = re.findall(r'<mark class="mask" title="([A-Z_]+)"', replaced)
        assert sorted(found) == sorted(swapped) and found


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
    at = open_page("phi", timeout=TIMEOUT)  # showing raw records appends a phi_previewed record (rows, no text)
    assert any(s.startswith("Verified: 2 records") for s in texts(at, "success"))
    table = at.dataframe[-1].value
    assert table.columns[:3].tolist() == ["seq", "time", "kind"]
    assert sorted(table["kind"]) == ["phi_previewed", "redaction"]
    assert table.loc[table["kind"] == "redaction", "entities"].tolist() == ['{"NAME": 3}']
    path = log_path(notes)
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["entities"]["NAME"] = 2  # an edit after the fact: the record no longer matches its hash
    path.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    at.run()
    assert any("fails verification" in e and "record edited" in e for e in texts(at, "error"))


def test_no_dataset_points_to_data(workspace):
    at = open_page("phi")
    assert texts(at, "info") == ["No datasets yet: import one on the Data page first."]


def test_redact_whole_dataset(notes, real_tagger):
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
    # The next run shows the redacted copy, labelled and verified, with nothing left to redact; the audit log has it.
    at.run()
    assert widget(at.selectbox, "Dataset").value == "notes-redacted"
    assert any("is redacted (safe-harbor, mask) from 'notes'" in s for s in texts(at, "success"))
    assert any(s.startswith("Verified: audit record") for s in texts(at, "success"))
    assert not [b for b in at.button if b.label == "Redact dataset"]
    assert decisions(at).loc["text", "action"] == "redact"
    audit = at.dataframe[-1].value
    assert audit.loc[audit["kind"] == "redaction", "output_dataset"].tolist() == ["notes-redacted"]


def test_redaction_error_is_a_message(notes):
    at = open_page("phi", timeout=TIMEOUT)
    widget(at.text_input, "New dataset name").set_value("Bad Name!")
    at = widget(at.button, "Redact dataset").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert any("Dataset name 'Bad Name!' is not allowed" in e for e in texts(at, "error"))


def test_every_column_is_decided_before_redaction(planted):
    at = open_page("phi", timeout=TIMEOUT)
    assert not at.exception and not at.error, texts(at, "error")
    table = decisions(at)
    assert set(table.index) >= {"text", "mrn", "patient_name", "dob", "ward", "label"}
    assert table.loc["text", "action"] == "redact"
    assert (table.loc["mrn", "action"], table.loc["mrn", "recognised as"]) == ("pseudonymise", "identifier")
    assert table.loc["patient_name", "action"] == "drop"  # Safe Harbor: a name column leaves
    assert table.loc["dob", "action"] == "year_only" and table.loc["dob", "recognised as"] == "date"
    assert table["reason"].str.len().gt(0).all() and table["what it does"].str.len().gt(0).all()
    # Research mode shifts dates by the patient's offset and surrogates names instead.
    widget(at.radio, "Mode").set_value("Research (limited data set)")
    at.run()
    table = decisions(at)
    assert (table.loc["dob", "action"], table.loc["patient_name", "action"]) == ("shift_dates", "surrogate")


def test_column_overrides_are_previewed_and_reach_the_job(planted, monkeypatch):
    requests = []

    def start_redaction(ws, name, mode, method, out_name=None, actor=None, **overrides):
        assert actor.role == "admin"  # the console's user (local mode), checked and audited by the engine
        requests.append({"name": name, "mode": mode, **overrides})
        raise MedcoreError("Recorded; no job started in this test.")

    monkeypatch.setattr(job, "start_redaction", start_redaction)
    at = open_page("phi", timeout=TIMEOUT)
    assert "text" not in widget(at.multiselect, "Drop").options  # the notes are always redacted
    widget(at.multiselect, "Drop").set_value(["ward"])
    widget(at.multiselect, "Not PHI").set_value(["patient_name"])
    at.run()
    table = decisions(at)
    assert (table.loc["ward", "action"], table.loc["ward", "recognised as"]) == ("drop", "user_drop")
    assert (table.loc["patient_name", "action"], table.loc["patient_name", "recognised as"]) == ("keep", "not_phi")
    at = widget(at.button, "Redact dataset").click().run(timeout=TIMEOUT)
    expected = {"name": "planted", "mode": "safe-harbor", "keep": [], "drop": ["ward"], "not_phi": ["patient_name"]}
    threshold = widget(at.slider, "Tagger threshold").value
    assert requests == [{**expected, "threshold": threshold, "tagger": console_info.DEFAULT_TAGGER}]
    widget(at.multiselect, "Keep unchanged").set_value(["ward"])  # both kept and dropped: refused, with why
    at.run()
    assert any("both kept and dropped" in e for e in texts(at, "error"))
    assert widget(at.button, "Redact dataset").disabled is True


def test_threshold_shows_its_measured_figures_and_reaches_detection(notes, stand_in_tagger):
    at = open_page("phi", timeout=TIMEOUT)
    assert not at.exception and not at.error, texts(at, "error")
    slider = widget(at.slider, "Tagger threshold")
    assert slider.value == pytest.approx(0.3)  # the threshold cross-validation chose
    figures = {m.label: m.value for m in at.metric}
    assert figures == {"Recall (cross-validated)": "0.991", "Precision (cross-validated)": "0.747"}
    assert stand_in_tagger[-1] == pytest.approx(0.3)
    slider.set_value(0.1)
    at.run()
    figures = {m.label: m.value for m in at.metric}
    assert figures == {"Recall (cross-validated)": "0.995", "Precision (cross-validated)": "0.612"}
    assert stand_in_tagger[-1] == pytest.approx(0.1)  # the preview detected at the chosen threshold
    widget(at.slider, "Tagger threshold").set_value(0.44)
    at.run()
    assert {m.label: m.value for m in at.metric}["Recall (cross-validated)"] == "0.978"
    assert any("nearest measured threshold 0.5" in c for c in texts(at, "caption"))


def test_figures_measured_on_an_earlier_build_are_marked_stale(notes, stand_in_tagger):
    folder = console_info.DEFAULT_TAGGER
    at = open_page("phi", timeout=TIMEOUT)
    assert not [w for w in texts(at, "warning") if "earlier build" in w]  # no weights hash recorded: not judged
    record = {**RECORD, "cross_validation": {**RECORD["cross_validation"], "tagger_sha256": "0" * 64}}
    (folder / TAGGER_RECORD).write_text(json.dumps(record))  # measured on other weights than the folder holds
    at = open_page("phi", timeout=TIMEOUT)
    assert not at.exception, texts(at, "exception")
    assert any("earlier build" in w and "bench/phi_cv.py --record" in w for w in texts(at, "warning"))
    assert {m.label: m.value for m in at.metric}["Recall (cross-validated)"] == "0.991"  # still shown, flagged


def test_the_fast_tagger_can_be_chosen_with_its_own_figures_and_reaches_the_job(planted, stand_in_tagger, monkeypatch):
    if not has_tagger(FAST_TAGGER):
        pytest.skip(f"no fast tagger at {FAST_TAGGER}: build it with `medcore phi train-student`")
    requests = []

    def start_redaction(ws, name, mode, method, out_name=None, actor=None, **settings):
        requests.append(settings)
        raise MedcoreError("Recorded; no job started in this test.")

    monkeypatch.setattr(job, "start_redaction", start_redaction)
    at = open_page("phi", timeout=TIMEOUT)
    choice = widget(at.radio, "Tagger")
    assert choice.value == choice.options[0] == "Encoder tagger (default)" and "Fast tagger" in choice.options
    assert widget(at.slider, "Tagger threshold").value == pytest.approx(0.3)  # the default's (the stand-in record)
    choice.set_value("Fast tagger")
    at.run()
    assert not at.exception and not at.error, texts(at, "error")
    record = tagger_record(FAST_TAGGER)
    assert widget(at.slider, "Tagger threshold").value == pytest.approx(record["threshold"])  # its own default
    figures = record["cross_validation"]["by_threshold"][str(record["threshold"])]
    assert {m.label: m.value for m in at.metric}["Precision (cross-validated)"] == f"{figures['precision']:.3f}"
    assert any("distilled from the encoder tagger" in c for c in texts(at, "caption"))
    assert stand_in_tagger[-1] == pytest.approx(record["threshold"])  # the preview detected with it
    widget(at.button, "Redact dataset").click().run(timeout=TIMEOUT)
    assert requests[-1]["tagger"] == FAST_TAGGER and requests[-1]["threshold"] == pytest.approx(record["threshold"])


def test_page_works_without_a_tagger(notes, no_tagger):
    at = open_page("phi", timeout=TIMEOUT)
    assert not at.exception
    errors = texts(at, "error")
    assert len(errors) == 1 and errors[0].startswith("No PHI tagger at") and "medcore phi train-tagger" in errors[0]
    assert not at.slider and not at.metric
    assert len(note_panes(at)) == 6  # the preview runs on the rules alone
    assert decisions(at).loc["text", "action"] == "redact"
    assert widget(at.button, "Redact dataset").disabled is True


def test_redacted_dataset_shows_its_decisions_and_verification(planted):
    from medcore.phi.datasets import redact_dataset

    redact_dataset(planted, "planted", "safe-harbor", drop=["ward"])
    at = open_page("phi", timeout=TIMEOUT, state={"phi_dataset": "planted-redacted"})
    assert not at.exception and not at.error, texts(at, "error")
    assert any(s.startswith("Verified: audit record") for s in texts(at, "success"))
    table = decisions(at)
    assert table.loc["ward", "action"] == "drop" and table.loc["mrn", "action"] == "pseudonymise"
    assert not [b for b in at.button if b.label == "Redact dataset"]
    # A split edited after the redaction no longer matches its audit record: the page says so.
    path = split_path(planted, "planted-redacted", "train")
    pd.read_parquet(path).iloc[1:].to_parquet(path)
    at.run()
    assert any(
        e.startswith("Not verified:") and "changed after its audited redaction" in e for e in texts(at, "error")
    )
