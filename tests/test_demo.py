"""The demo workspace: deterministic files, exact gold PHI spans, traps outside spans, learnable labels, QA."""

from __future__ import annotations

import collections
import csv
import json
import os
import re
import subprocess
import sys

import pytest

from medcore.cli import main
from medcore.demo import build_demo_workspace
from medcore.demo.notes import NOTE_KEYS, generate_notes
from medcore.demo.phi_values import PHI_TYPES, WORD_FIRST_NAMES, WORD_LAST_NAMES
from medcore.demo.qa import QA_KEYS, QUESTIONS, generate_qa

FILES = ("demo_notes.jsonl", "demo_notes.csv", "demo_qa.jsonl")
MAIN_SUBTYPES = {
    "NAME": {"PATIENT", "DOCTOR", "RELATIVE", "USERNAME"},
    "LOCATION": {"HOSPITAL", "ORGANIZATION", "STREET", "CITY", "STATE", "COUNTRY", "ZIP", "DEPARTMENT", "ROOM"},
    "CONTACT": {"PHONE", "FAX", "EMAIL", "URL", "IP"},
    "ID": {"MRN", "SSN", "HEALTHPLAN", "ACCOUNT", "LICENSE", "DEVICE", "VEHICLE", "IDNUM"},
    "AGE": {"AGE"},
    "DATE": {"DATE"},
    "PROFESSION": {"PROFESSION"},
}
# The non-PHI look-alikes the brief asks for, written out here (not taken from the generator).
TRAP_PHRASES = (
    "Parkinson disease",
    "Hodgkin lymphoma",
    "Crohn's disease",
    "Graves disease",
    "Foley catheter",
    "Wilson disease",
    "Apgar",
    "Glasgow Coma Scale",
    "5/10",
    "3/12",
    "132/82",
    "B12",
    "D5W",
    "T4",
    "COPD",
    "CHF",
    "NSTEMI",
    "a couple of months",
    "will",
    "hope",
    "rose",
)


@pytest.fixture(scope="module")
def notes() -> list[dict]:
    return generate_notes(seed=11, n=400, with_values=True)


def read_files(root) -> dict[str, bytes]:
    return {name: (root / "datasets" / name).read_bytes() for name in FILES}


def occurrences(text: str, phrase: str):
    """Whole-token occurrences ("T4" inside a VIN or an ID is part of that token, not the lab test)."""
    for match in re.finditer(rf"(?<![\w/]){re.escape(phrase)}(?![\w/])", text):
        yield match.start(), match.end()


def test_demo_command_is_byte_identical_per_seed_and_differs_across_seeds(tmp_path):
    args = ["demo", "--notes", "300", "--qa", "40"]
    assert main([*args, "--seed", "5", "--workspace", str(tmp_path / "a")]) == 0
    # A second process with another hash seed: set/dict-order bugs would show up as different bytes.
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    cmd = [sys.executable, "-m", "medcore", *args, "--seed", "5", "--workspace", str(tmp_path / "b")]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=120)
    assert main([*args, "--seed", "6", "--workspace", str(tmp_path / "c")]) == 0
    first, again, other = (read_files(tmp_path / name) for name in "abc")
    assert first == again
    assert all(first[name] != other[name] for name in FILES)


def test_demo_command_rejects_an_empty_corpus(tmp_path, capsys):
    assert main(["demo", "--notes", "0", "--workspace", str(tmp_path / "ws")]) == 1
    assert "--notes must be at least 1" in capsys.readouterr().err


def test_every_gold_span_indexes_its_placed_value_without_overlap(notes):
    for note in notes:
        assert set(NOTE_KEYS) <= set(note)
        spans = sorted(note["phi_spans"], key=lambda s: s["start"])
        for span in spans:
            assert note["text"][span["start"] : span["end"]] == span["value"] != ""
            assert span["type"] in PHI_TYPES
        for before, after in zip(spans, spans[1:], strict=False):
            assert before["end"] <= after["start"], f"overlapping spans in {note['note_id']}"
    # with_values only adds fields: the default output has the same spans.
    plain = generate_notes(seed=11, n=400)
    stripped = [[{k: s[k] for k in ("start", "end", "type", "subtype")} for s in n["phi_spans"]] for n in notes]
    assert [n["phi_spans"] for n in plain] == stripped


def test_every_category_and_main_subtype_occurs(notes):
    seen = collections.defaultdict(set)
    for note in notes:
        for span in note["phi_spans"]:
            seen[span["type"]].add(span["subtype"])
    assert set(seen) == set(PHI_TYPES)
    for phi_type, subtypes in MAIN_SUBTYPES.items():
        assert subtypes <= seen[phi_type], f"{phi_type} lacks {subtypes - seen[phi_type]}"


def test_hard_name_and_date_forms_occur(notes):
    values = collections.defaultdict(list)
    for note in notes:
        for span in note["phi_spans"]:
            values[span["subtype"]].append(span["value"])
    names = values["PATIENT"] + values["RELATIVE"] + values["DOCTOR"]
    assert any(v.split()[0] in WORD_FIRST_NAMES for v in names)
    assert any(v.split()[-1] in WORD_LAST_NAMES for v in names)
    assert any(v == v.lower() and " " in v for v in values["PATIENT"]), "no lower-case patient name"
    assert any(re.fullmatch(r"[A-Z]\. \S+", v) for v in values["DOCTOR"]), "no 'Dr. J. Smith' initials"
    dates = values["DATE"]
    for pattern in (
        r"\d{2}/\d{2}/\d{4}",
        r"\d{1,2}/\d{1,2}",
        r"\d{2}-[A-Z][a-z]{2}-\d{4}",
        r"[A-Z][a-z]+ \d{1,2}(st|nd|rd|th)",
        r"\d{4}-\d{2}-\d{2}",
        r"\d{1,2}(st|nd|rd|th)",
        r"Christmas( \d{4})?",
    ):
        assert any(re.fullmatch(pattern, d) for d in dates), f"no date like {pattern}"
    assert not any(re.fullmatch(r"\d{4}", d) for d in dates), "a year alone must not be a DATE span"


def test_ages_over_89_are_spans_and_younger_ages_are_not(notes):
    for note in notes:
        ages = [int(s["value"]) for s in note["phi_spans"] if s["type"] == "AGE"]
        assert all(age >= 90 for age in ages)
        if note["age_band"] != "90+":
            assert ages == []
    assert any(s["type"] == "AGE" for n in notes for s in n["phi_spans"])
    texts = "\n".join(n["text"] for n in notes if n["age_band"] != "90+")
    assert re.search(r"\b\d{2}-year-old\b", texts) and re.search(r"\baged \d{2}\b", texts)


def test_trap_phrases_occur_outside_every_gold_span(notes):
    found = collections.Counter()
    for note in notes:
        spans = [(s["start"], s["end"]) for s in note["phi_spans"]]
        for phrase in TRAP_PHRASES:
            for start, end in occurrences(note["text"], phrase):
                # A look-alike can be real PHI in its own context: "rose" inside the lower-case name
                # "rose black", "5/10" written as a date. Inside a span it is that PHI; straddling one is a bug.
                if any(s <= start and end <= e for s, e in spans):
                    continue
                assert not any(s < end and start < e for s, e in spans), f"trap '{phrase}' straddles a gold span"
                found[phrase] += 1
    assert set(found) == set(TRAP_PHRASES), f"missing traps: {set(TRAP_PHRASES) - set(found)}"


def test_generator_trap_records_match_the_text(notes):
    kinds = collections.Counter()
    for note in notes:
        spans = [(s["start"], s["end"]) for s in note["phi_spans"]]
        for trap in note["traps"]:
            assert note["text"][trap["start"] : trap["end"]] == trap["value"]
            assert not any(s < trap["end"] and trap["start"] < e for s, e in spans)
            kinds[trap["kind"]] += 1
    assert {"eponym", "pain_score", "blood_pressure", "lab_token", "abbreviation", "age_under_90", "word_name"} <= set(
        kinds
    )


def test_a_patient_has_several_notes_with_consistent_phi_and_labels(notes):
    by_patient = collections.defaultdict(list)
    for note in notes:
        by_patient[note["patient_id"]].append(note)
    assert len(notes) / len(by_patient) > 1.5
    for patient_notes in by_patient.values():
        for column in ("specialty", "sex", "age_band"):
            assert len({n[column] for n in patient_notes}) == 1
        for subtype in ("MRN", "SSN", "EMAIL", "HEALTHPLAN"):
            values = {s["value"] for n in patient_notes for s in n["phi_spans"] if s["subtype"] == subtype}
            assert len(values) <= 1, f"patient has {len(values)} different {subtype} values"


def test_specialty_is_learnable_from_vocabulary_not_style(notes):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    labels = [n["specialty"] for n in notes]
    assert 4 <= len(set(labels)) <= 6 and min(collections.Counter(labels).values()) >= len(notes) * 0.1
    assert {n["sex"] for n in notes} == {"F", "M"} and len({n["age_band"] for n in notes}) == 4
    train, test = notes[:300], notes[300:]

    def accuracy(feature) -> float:
        vectorizer = CountVectorizer(binary=True, min_df=2)
        model = LogisticRegression(max_iter=2000).fit(
            vectorizer.fit_transform([feature(n) for n in train]), [n["specialty"] for n in train]
        )
        predicted = model.predict(vectorizer.transform([feature(n) for n in test]))
        return sum(p == n["specialty"] for p, n in zip(predicted, test, strict=True)) / len(test)

    assert accuracy(lambda n: n["text"]) > 0.9
    assert accuracy(lambda n: n["style"]) < 0.4  # 5 classes: style alone is near chance


def test_qa_rows_answer_from_their_context(workspace):
    rows = generate_qa(seed=3, n=80)
    assert rows == generate_qa(seed=3, n=80) and rows != generate_qa(seed=4, n=80)
    assert collections.Counter(r["question"] for r in rows) == {q: 10 for q, _, _ in QUESTIONS.values()}
    for row in rows:
        assert list(row) == list(QA_KEYS)
        spans = [(s["start"], s["end"]) for s in row["phi_spans"]]
        assert spans and all(0 <= s < e <= len(row["context"]) for s, e in spans)
        if row["answer"] != row["specialty"]:
            start = row["context"].index(row["answer"])
            assert not any(s < start + len(row["answer"]) and start < e for s, e in spans), "answer is PHI"


def test_build_writes_jsonl_and_an_upload_csv_with_the_same_rows(workspace):
    summary = build_demo_workspace(workspace, seed=2, n_notes=120, n_qa=16)
    jsonl = [json.loads(line) for line in (workspace.datasets / "demo_notes.jsonl").read_text().splitlines()]
    with open(workspace.datasets / "demo_notes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert summary["notes"] == len(jsonl) == len(rows) == 120
    assert summary["patients"] == len({r["patient_id"] for r in rows})
    assert summary["phi_spans"] == sum(len(n["phi_spans"]) for n in jsonl)
    assert "phi_spans" not in rows[0] and list(rows[0]) == [k for k in NOTE_KEYS if k != "phi_spans"]
    assert [r["text"] for r in rows] == [n["text"] for n in jsonl]  # multi-line notes survive CSV quoting
    assert len((workspace.datasets / "demo_qa.jsonl").read_text().splitlines()) == summary["qa_rows"] == 16
    assert not list(workspace.datasets.glob(".*.tmp"))


def test_demo_cli_imports_notes_and_qa_as_raw_catalog_datasets(workspace):
    from medcore.cli import main
    from medcore.data.manifest import load_split, read_manifest

    assert main(["demo", "--notes", "60", "--qa", "40", "--workspace", str(workspace.root)]) == 0
    notes = read_manifest(workspace, "demo-notes")
    qa = read_manifest(workspace, "demo-qa")
    assert (notes.total_rows, qa.total_rows) == (60, 40)
    assert notes.redaction.status == "raw" and notes.task == "classification" and notes.mapping.label == "specialty"
    assert qa.task == "causal-lm" and (qa.mapping.prompt, qa.mapping.response) == ("question", "answer")
    assert "phi_spans" not in load_split(workspace, "demo-qa", "train").columns
