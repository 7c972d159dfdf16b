"""Register notes: byte-identical per seed, exact non-overlapping gold spans, every register and category, about
15% negatives, capitalised PHI in ALL-CAPS notes, and clinical look-alikes left outside every span."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys

import pytest

from medcore.demo.registers import REGISTER_PHI_TYPES, REGISTERS, generate_register_notes, write_register_notes
from medcore.errors import MedcoreError

# The non-PHI look-alikes the brief lists, written out here (not taken from the generator). Case-insensitive.
TRAPS = {
    "heart rate": r"\bHR \d+'?S?\b",
    "systolic pressure": r"\bSBP \d+",
    "volume": r"\b\d+ ?CC\b",
    "times two": r"\bX ?2\b(?!-)",
    "strength": r"\b5/5 STRENGTH",
    "sitter": r"\b1:1\b",
    "blood pressure": r"\b1\d\d/\d\d\b",
    "respiratory rate": r"\bRR \d+",
    "clock time": r"\bOFF AT \d{4}\b",
    "age under 90": r"\b[2-8]\d ?(?:YO|Y/O|YR OLD)\b",
    "Foley": r"\bFOLEY\b",
    "Swan": r"\bSWAN\b",
    "Coumadin": r"\bCOUMADIN\b",
    "Lasix": r"\bLASIX\b",
    "Levophed": r"\bLEVOPHED\b",
    "NEO": r"\bNEO\b",
    "CARDIAC": r"\bCARDIAC\b",
    "AFEBRILE": r"\bAFEBRILE\b",
    "DRAINING": r"\bDRAINING\b",
    "unit MICU": r"\bMICU\b",
    "unit CCU": r"\bCCU\b",
    "outside hospital": r"\bOSH\b",
}


@pytest.fixture(scope="module")
def notes() -> list[dict]:
    return generate_register_notes(seed=3, n=500, with_values=True)


def test_same_seed_gives_the_same_bytes_across_hash_seeds_and_n_is_a_prefix(tmp_path):
    first = write_register_notes(tmp_path / "a.jsonl", seed=5, n=120)
    write_register_notes(tmp_path / "b.jsonl", seed=5, n=120)
    # Another process with another hash seed: set or dict-order bugs would show up as different bytes.
    script = "import sys; from medcore.demo.registers import write_register_notes as w; w(sys.argv[1], seed=5, n=120)"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.jsonl")], check=True, env=env, timeout=120)
    write_register_notes(tmp_path / "d.jsonl", seed=6, n=120)
    a, b, c, d = ((tmp_path / f"{name}.jsonl").read_bytes() for name in "abcd")
    assert a == b == c
    assert a != d
    assert first["notes"] == 120 and first["register"].keys() <= REGISTERS.keys()
    rows = [json.loads(line) for line in a.decode().splitlines()]
    assert [list(row) for row in rows[:1]] == [["id", "patient", "register", "text", "phi_spans"]]
    assert generate_register_notes(seed=5, n=40) == rows[:40]


def test_every_span_indexes_its_placed_value_without_overlap(notes):
    for note in notes:
        text, end = note["text"], 0
        for span in sorted(note["phi_spans"], key=lambda s: s["start"]):
            assert end <= span["start"] < span["end"] <= len(text), note["id"]
            assert text[span["start"] : span["end"]] == span["value"], note["id"]
            assert span["value"] == span["value"].strip()
            assert span["type"] in REGISTER_PHI_TYPES
            end = span["end"]
    plain = generate_register_notes(seed=3, n=20)
    assert all(set(span) == {"start", "end", "type"} for note in plain for span in note["phi_spans"])


def test_every_register_and_category_occurs_in_500_notes(notes):
    registers = collections.Counter(note["register"] for note in notes)
    assert set(registers) == set(REGISTERS)
    assert min(registers.values()) > 0.08 * len(notes), registers
    types = collections.Counter(span["type"] for note in notes for span in note["phi_spans"])
    assert set(types) == set(REGISTER_PHI_TYPES), types
    subtypes = {span["subtype"] for note in notes for span in note["phi_spans"]}
    assert {
        "PATIENT",
        "DOCTOR",
        "RELATIVE",
        "HOSPITAL",
        "CITY",
        "STREET",
        "PHONE",
        "PAGER",
        "EMAIL",
        "MRN",
    } <= subtypes


def test_about_15_percent_of_notes_have_no_phi_and_they_are_the_vitals_notes(notes):
    negatives = [note for note in notes if not note["phi_spans"]]
    assert 0.10 <= len(negatives) / len(notes) <= 0.20
    assert {note["register"] for note in negatives} == {"vitals_only"}
    assert all(not note["phi_spans"] for note in notes if note["register"] == "vitals_only")


def test_all_caps_notes_have_upper_case_phi_and_lower_case_notes_lower_text(notes):
    caps = [note for note in notes if note["register"] == "icu_caps"]
    assert caps and all(note["text"] == note["text"].upper() for note in caps)
    assert all(span["value"].isupper() for note in caps for span in note["phi_spans"] if span["type"] == "NAME")
    for note in (note for note in notes if note["register"] == "icu_lower"):
        outside, position = [], 0
        for span in note["phi_spans"]:
            outside.append(note["text"][position : span["start"]])
            position = span["end"]
        outside.append(note["text"][position:])
        assert "".join(outside) == "".join(outside).lower(), note["id"]


def test_trap_tokens_occur_outside_every_gold_span(notes):
    for label, pattern in TRAPS.items():
        hits = 0
        for note in notes:
            for match in re.finditer(pattern, note["text"], flags=re.IGNORECASE):
                hits += 1
                overlapping = [s for s in note["phi_spans"] if s["start"] < match.end() and match.start() < s["end"]]
                assert not overlapping, f"{label} {match.group()!r} inside a span in {note['id']}"
        assert hits, f"no {label} in 500 notes"


def test_surrogates_are_drawn_widely_and_consistently_per_patient(notes):
    names = {span["value"].lower() for note in notes for span in note["phi_spans"] if span["type"] == "NAME"}
    places = {span["value"].lower() for note in notes for span in note["phi_spans"] if span["type"] == "LOCATION"}
    assert len(names) > 400 and len(places) > 200
    by_patient = collections.defaultdict(set)
    for note in notes:
        for span in note["phi_spans"]:
            if span["subtype"] == "MRN":
                by_patient[note["patient"]].add(span["value"])
    assert by_patient and all(len(mrns) == 1 for mrns in by_patient.values())


def test_an_empty_corpus_is_refused():
    with pytest.raises(MedcoreError, match="n >= 1"):
        generate_register_notes(seed=0, n=0)
