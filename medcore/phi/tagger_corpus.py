"""The PHI tagger's training notes: MedCore's register generator, presidio-research's synthetic sentences and
real development notes (PhysioNet deid), all as {text, spans, patient, source} with MedCore's categories.

Only Safe Harbor identifiers are labelled: a year alone and ages under 90 stay outside (tag O), so the tagger
learns to leave them, as the redaction rules do. Corpus files are read from where the user keeps them and
never copied into the package; the tagger record stores their names, row counts and hashes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.phi.surrogates import is_over_89

# PhysioNet deid gold types -> MedCore categories; DateYear is not a Safe Harbor identifier.
PHYSIONET_CATEGORY = {
    "Age": "AGE",
    "Date": "DATE",
    "HCPName": "NAME",
    "PTName": "NAME",
    "PTNameInitial": "NAME",
    "RelativeProxyName": "NAME",
    "Location": "LOCATION",
    "Phone": "CONTACT",
    "Other": "ID",
}
NOT_SAFE_HARBOR = {"DateYear"}
# presidio-research synthetic labels -> MedCore categories (the rest are not identifiers here).
SYNTH_CATEGORY = {
    "PERSON": "NAME",
    "STREET_ADDRESS": "LOCATION",
    "GPE": "LOCATION",
    "ZIP_CODE": "LOCATION",
    "ORGANIZATION": "LOCATION",
    "DATE_TIME": "DATE",
    "PHONE_NUMBER": "CONTACT",
    "EMAIL_ADDRESS": "CONTACT",
    "DOMAIN_NAME": "CONTACT",
    "IP_ADDRESS": "CONTACT",
    "US_SSN": "ID",
    "US_DRIVER_LICENSE": "ID",
    "AGE": "AGE",
}
YEAR_ONLY = re.compile(r"(?:in |the )?(?:19|20)\d\d")
TAGGER_TYPES = ("AGE", "CONTACT", "DATE", "ID", "LOCATION", "NAME", "PROFESSION")


def register_notes(n: int, seed: int) -> list[dict]:
    """MedCore's generated notes in real registers (ALL CAPS, lower case, telegraphic, vitals-only)."""
    from medcore.demo.registers import generate_register_notes

    out = []
    for note in generate_register_notes(seed=seed, n=n):
        spans = [dict(s) for s in note["phi_spans"] if s["type"] in TAGGER_TYPES]
        spans = [s for s in spans if s["type"] != "AGE" or is_over_89(note["text"][s["start"] : s["end"]])]
        out.append({"text": note["text"], "spans": spans, "patient": f"gen-{note['patient']}", "source": "register"})
    return out


def read_physionet(path: Path, exclude_patients: Iterable[str] = ()) -> list[dict]:
    """PhysioNet deid notes (JSONL: id, patient, text, spans), less the excluded patients (a held-out fold)."""
    excluded = set(map(str, exclude_patients))
    out = []
    for number, line in enumerate(read_lines(path), start=1):
        try:
            record = json.loads(line)
            text, patient = record["text"], str(record["patient"])
            spans = [
                {"start": int(s["start"]), "end": int(s["end"]), "type": PHYSIONET_CATEGORY[s["type"]]}
                for s in record["spans"]
                if s["type"] not in NOT_SAFE_HARBOR
            ]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise MedcoreError(
                f"{path.name} row {number} is not a development note (JSON with text, patient and spans whose "
                f"types are {', '.join(sorted(PHYSIONET_CATEGORY | dict.fromkeys(NOT_SAFE_HARBOR)))})."
            ) from None
        if patient not in excluded:
            out.append({"text": text, "spans": spans, "patient": f"physionet-{patient}", "source": "physionet"})
    return out


def read_synth(path: Path, every_other: bool = True) -> list[dict]:
    """presidio-research's synthetic PII sentences (a JSON list with full_text and spans).

    every_other: only the even-index sentences, so the odd half stays a held-out test set (bench/phi_bench.py).
    """
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise MedcoreError(f"{path} is not a readable JSON list of synthetic sentences.") from None
    out = []
    for index, item in enumerate(items):
        if every_other and index % 2:
            continue
        spans = []
        for s in item.get("spans", []):
            category = SYNTH_CATEGORY.get(s.get("entity_type"))
            value = str(s.get("entity_value", ""))
            if category is None or (category == "AGE" and not is_over_89(value)):
                continue
            if category == "DATE" and YEAR_ONLY.fullmatch(value.strip()):
                continue  # a year alone is not a Safe Harbor date element
            spans.append({"start": int(s["start_position"]), "end": int(s["end_position"]), "type": category})
        out.append({"text": item["full_text"], "spans": spans, "patient": f"synth-{index}", "source": "synth"})
    return out


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise MedcoreError(f"Development notes {path} do not exist. Pass --dev-notes with the JSONL file, or omit it.")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def physionet_patients(path: Path) -> list[str]:
    """The development notes' patient ids, in first-seen order (for grouped folds)."""
    seen: dict[str, None] = {}
    for line in read_lines(path):
        seen.setdefault(str(json.loads(line)["patient"]), None)
    return list(seen)
