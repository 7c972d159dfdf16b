"""Deterministic synthetic clinical notes with exact gold PHI spans, specialty labels and subgroups.

Notes are built by appending pieces and recording offsets as they go, so every gold span is exact by
construction. Only `random.Random(seed)` and a seeded `Faker` are used: the same seed gives the same notes.

    from medcore.demo.notes import generate_notes
    notes = generate_notes(seed=0, n=2000)   # [{note_id, patient_id, style, specialty, sex, age_band, text, phi_spans}]
"""

from __future__ import annotations

import datetime as dt
import random
import re
from typing import Any

from faker import Faker

from medcore.demo import phi_values as pv
from medcore.demo.clinical import (
    COMORBIDITIES,
    SPECIALTIES,
    TRAP_SENTENCES,
    TRAP_SNIPPETS,
    VALUE_SENTENCES,
)
from medcore.demo.phi_values import Clinician, Patient, Phi, Trap
from medcore.demo.templates import ADMIN_LINES, STYLES
from medcore.errors import MedcoreError

Piece = str | Phi | Trap | tuple
SLOT = re.compile(r"\{(\w+)\}")
NOTE_KEYS = ("note_id", "patient_id", "style", "specialty", "sex", "age_band", "text", "phi_spans")

# Trap snippets found in any plain (non-PHI) text are recorded, wherever a template or vocabulary put them.
# Longest first so "Hodgkin lymphoma" wins over a shorter overlapping snippet; the look-arounds stop "2/7"
# matching inside "12/7" and "T4" inside "CT4". Case-sensitive: "Will" the name is not "will" the verb.
_TRAP_KIND = {value: kind for kind, values in TRAP_SNIPPETS.items() for value in values}
_TRAP_RE = re.compile(
    r"(?<![\w/])(" + "|".join(re.escape(v) for v in sorted(_TRAP_KIND, key=len, reverse=True)) + r")(?![\w/])"
)


class NoteBuilder:
    """Accumulates text and the offsets of the PHI (and trap) pieces placed in it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[dict[str, Any]] = []
        self.traps: list[dict[str, Any]] = []

    def add(self, piece: Piece) -> None:
        if isinstance(piece, tuple):
            for part in piece:
                self.add(part)
            return
        if isinstance(piece, Phi):
            self.spans.append(
                {
                    "start": self.length,
                    "end": self.length + len(piece.value),
                    "type": piece.type,
                    "subtype": piece.subtype,
                    "value": piece.value,
                }
            )
            self._append(piece.value)
        elif isinstance(piece, Trap):
            self.traps.append(
                {"start": self.length, "end": self.length + len(piece.value), "kind": piece.kind, "value": piece.value}
            )
            self._append(piece.value)
        else:
            self._add_plain(piece)

    def _add_plain(self, text: str) -> None:
        for match in _TRAP_RE.finditer(text):
            self.traps.append(
                {
                    "start": self.length + match.start(),
                    "end": self.length + match.end(),
                    "kind": _TRAP_KIND[match.group(1)],
                    "value": match.group(1),
                }
            )
        self._append(text)

    def _append(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def fill(self, template: str, slots: dict[str, Piece]) -> None:
        """Append `template` with every `{slot}` replaced by its piece."""
        position = 0
        for match in SLOT.finditer(template):
            self.add(template[position : match.start()])
            self.add(slots[match.group(1)])
            position = match.end()
        self.add(template[position:])

    @property
    def text(self) -> str:
        return "".join(self.parts)


def draw_trap_sentences(rng: random.Random, k: int) -> str:
    """`k` sentences, each carrying one non-PHI trap (eponym, score, ratio, word that is also a name...)."""
    sentences = []
    for kind in rng.sample(list(TRAP_SENTENCES), k):
        value = rng.choice(TRAP_SNIPPETS[kind])
        sentences.append(VALUE_SENTENCES.get(value, TRAP_SENTENCES[kind]).format(x=value))
    return " ".join(sentences)


def name(value: str, subtype: str) -> Phi:
    return Phi(value, "NAME", subtype)


def place(value: str, subtype: str) -> Phi:
    return Phi(value, "LOCATION", subtype)


def date(rng: random.Random, day: dt.date) -> Phi:
    return Phi(pv.format_date(rng, day), "DATE", "DATE")


def age_pieces(rng: random.Random, age: int) -> tuple[Piece, Piece]:
    """(age_phrase, age): ages over 89 are PHI under HIPAA; younger ages are traps, not spans."""
    value = Phi(str(age), "AGE", "AGE") if age > 89 else Trap(str(age), "age_under_90")
    return (value, rng.choice(("-year-old", " year old", "-yo"))), value


def patient_slots(rng: random.Random, p: Patient) -> dict[str, Piece]:
    full = f"{p.first} {p.last}"
    title = "Ms." if p.sex == "F" else "Mr."
    rel_full = name(f"{p.relative_first} {p.relative_last}", "RELATIVE")
    state = p.state_abbr if rng.random() < 0.6 else p.state
    age_phrase, age = age_pieces(rng, p.age)
    return {
        "pt_full": name(full, "PATIENT"),
        "pt_formal": name(rng.choice((f"{p.last}, {p.first}", f"{p.last.upper()}, {p.first}", full)), "PATIENT"),
        "pt_ref": rng.choice(
            ((f"{title} ", name(p.last, "PATIENT")), name(p.first, "PATIENT"), name(full, "PATIENT"))
        ),
        "pt_lower": name(full.lower(), "PATIENT"),
        "pt_first": name(p.first, "PATIENT"),
        "rel": rng.choice((rel_full, name(p.relative_first, "RELATIVE"))),
        "rel_first": name(p.relative_first, "RELATIVE"),
        "rel_role": p.relative_role,
        "age_phrase": age_phrase,
        "age": age,
        "sex_word": "woman" if p.sex == "F" else "man",
        "Pronoun": "She" if p.sex == "F" else "He",
        "possessive": "her" if p.sex == "F" else "his",
        "possessive_cap": "Her" if p.sex == "F" else "His",
        "profession": Phi(p.profession, "PROFESSION", "PROFESSION"),
        "employer": place(p.employer, "ORGANIZATION"),
        "country": place(p.country, "COUNTRY"),
        "street": place(p.street, "STREET"),
        "city": place(p.city, "CITY"),
        "state": place(state, "STATE"),
        "zip": place(p.zip, "ZIP"),
        "address": (
            place(p.street, "STREET"),
            ", ",
            place(p.city, "CITY"),
            ", ",
            place(state, "STATE"),
            " ",
            place(p.zip, "ZIP"),
        ),
        "mrn": Phi(p.mrn, "ID", "MRN"),
        "ssn": Phi(p.ssn, "ID", "SSN"),
        "healthplan": Phi(p.healthplan, "ID", "HEALTHPLAN"),
        "account": Phi(p.account, "ID", "ACCOUNT"),
        "vehicle": Phi(p.vehicle, "ID", "VEHICLE"),
        "device": Phi(p.device, "ID", "DEVICE"),
        "phone": Phi(p.phone, "CONTACT", "PHONE"),
        "email": Phi(p.email, "CONTACT", "EMAIL"),
        "url": Phi(p.url, "CONTACT", "URL"),
        "ip": Phi(p.ip, "CONTACT", "IP"),
        "username": name(p.username, "USERNAME"),
    }


def staff_slots(
    rng: random.Random, p: Patient, other: Clinician, nurse: Clinician, hospitals: list[str], wards: list[str]
) -> dict[str, Piece]:
    doc = p.doctor
    return {
        "dr": name(rng.choice((f"{doc.first[0]}. {doc.last}", doc.last, f"{doc.first} {doc.last}")), "DOCTOR"),
        "dr2": name(rng.choice((other.last, f"{other.first[0]}. {other.last}")), "DOCTOR"),
        "dr_full": name(f"{doc.first} {doc.last}", "DOCTOR"),
        "dr_user": name(doc.username, "USERNAME"),
        "nurse": name(rng.choice((nurse.first, f"{nurse.first} {nurse.last}")), "DOCTOR"),
        "nurse_user": name(nurse.username, "USERNAME"),
        "pager": Phi(doc.pager, "CONTACT", "PHONE"),
        "license": Phi(doc.license, "ID", "LICENSE"),
        "fax": Phi(pv.draw_phone(rng), "CONTACT", "FAX"),
        "hospital": place(p.hospital, "HOSPITAL"),
        "hospital2": place(rng.choice([h for h in hospitals if h != p.hospital] or hospitals), "HOSPITAL"),
        "ward": place(rng.choice(wards), "DEPARTMENT"),
        "room": place(f"{rng.randint(1, 9)}{rng.randint(0, 40):02d}{rng.choice(('', 'A', 'B'))}", "ROOM"),
        "idnum": Phi(f"S{rng.randint(10, 24)}-{pv.draw_digits(rng, 5)}", "ID", "IDNUM"),
    }


def date_slots(rng: random.Random, p: Patient) -> dict[str, Piece]:
    visit = p.first_visit + dt.timedelta(days=rng.randint(0, 540))
    admit = visit - dt.timedelta(days=rng.randint(1, 12))
    other = visit - dt.timedelta(days=rng.randint(20, 400))
    holiday = rng.choice(pv.HOLIDAYS)
    return {
        "visit": date(rng, visit),
        "admit": date(rng, admit),
        "discharge": date(rng, visit),
        "transfer_date": date(rng, admit),
        "scan_date": date(rng, visit - dt.timedelta(days=rng.randint(0, 3))),
        "followup": date(rng, visit + dt.timedelta(days=rng.randint(14, 120))),
        "dob": Phi(
            rng.choice(
                (
                    f"{p.dob:%m/%d/%Y}",
                    f"{p.dob:%Y-%m-%d}",
                    f"{p.dob:%d-%b-%Y}",
                    f"{p.dob:%B} {p.dob.day}, {p.dob.year}",
                )
            ),
            "DATE",
            "DATE",
        ),
        "month_day": Phi(
            rng.choice((f"{other.month}/{other.day}", f"{other:%B} {pv.ordinal_day(other)}")), "DATE", "DATE"
        ),
        "ordinal": Phi(pv.ordinal_day(admit), "DATE", "DATE"),
        # A holiday is a date element; with its year it is one span (like 03/14/1952), a year alone is not PHI.
        "holiday": Phi(rng.choice((holiday, f"{holiday} {other.year}")), "DATE", "DATE"),
    }


def clinical_slots(rng: random.Random, specialty: str) -> dict[str, Piece]:
    vocab = SPECIALTIES[specialty]
    problems, symptoms = rng.sample(vocab["problems"], 2), rng.sample(vocab["symptoms"], 2)
    findings, meds = rng.sample(vocab["findings"], 2), rng.sample(vocab["meds"], 2)
    return {
        "problem": problems[0],
        "problem2": problems[1],
        "symptom": symptoms[0],
        "symptom2": symptoms[1],
        "finding": findings[0],
        "finding2": findings[1],
        "med": meds[0],
        "med2": meds[1],
        "test": rng.choice(vocab["tests"]),
        "procedure": rng.choice(vocab["procedures"]),
        "comorbid": rng.choice(COMORBIDITIES),
        "duration": rng.choice(TRAP_SNIPPETS["duration"]),
        "traps": draw_trap_sentences(rng, rng.randint(1, 2)),
        "traps2": draw_trap_sentences(rng, rng.randint(0, 2)),
    }


def compose_note(rng: random.Random, style: str, slots: dict[str, Piece]) -> NoteBuilder:
    """Draw one template per section of `style`, and splice one or two admin lines in at random places."""
    sections = [rng.choice(options) for options in STYLES[style]]
    for line in rng.sample(ADMIN_LINES, rng.randint(1, 2)):
        sections.insert(rng.randint(1, len(sections)), line)
    builder = NoteBuilder()
    for template in sections:
        builder.fill(template, slots)
    return builder


def draw_cast(rng: random.Random, fake: Faker, n: int) -> tuple[list[str], list[str], list[Clinician]]:
    """Hospitals, wards and clinicians shared by all patients (sized to the corpus)."""
    hospitals = [pv.draw_hospital(rng, fake) for _ in range(max(3, min(12, n // 150)))]
    wards = [pv.draw_ward(rng, fake) for _ in range(max(4, min(20, n // 100)))]
    staff = [pv.draw_clinician(rng, fake) for _ in range(max(6, min(60, n // 30)))]
    return hospitals, wards, staff


def generate_notes(seed: int = 0, n: int = 2000, *, with_values: bool = False) -> list[dict]:
    """`n` notes from `seed`: same seed, same notes. Patients have 1-5 notes each and one specialty.

    Args:
        with_values: also return each span's placed `value` and a `traps` list ({start, end, kind, value}) of
            the non-PHI look-alikes in the text; for tests and redaction-precision measurement.
    """
    if n < 1:
        raise MedcoreError(f"generate_notes needs n >= 1 notes (got {n}); pass e.g. --notes 2000.")
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    hospitals, wards, staff = draw_cast(rng, fake, n)
    specialties, styles = list(SPECIALTIES), list(STYLES)
    notes: list[dict] = []
    index = 0
    while len(notes) < n:
        patient = pv.draw_patient(rng, fake, index, rng.choice(specialties), hospitals, staff)
        index += 1
        for _ in range(min(rng.randint(1, 5), n - len(notes))):
            # Style is drawn independently of specialty so the label is carried by clinical vocabulary only.
            style = rng.choice(styles)
            others = [c for c in staff if c is not patient.doctor]
            slots = {
                **patient_slots(rng, patient),
                **staff_slots(rng, patient, rng.choice(others), rng.choice(staff), hospitals, wards),
                **date_slots(rng, patient),
                **clinical_slots(rng, patient.specialty),
            }
            builder = compose_note(rng, style, slots)
            spans = (
                builder.spans
                if with_values
                else [{k: s[k] for k in ("start", "end", "type", "subtype")} for s in builder.spans]
            )
            note = {
                "patient_id": patient.patient_id,
                "style": style,
                "specialty": patient.specialty,
                "sex": patient.sex,
                "age_band": patient.age_band,
                "text": builder.text,
                "phi_spans": spans,
            }
            if with_values:
                note["traps"] = builder.traps
            notes.append(note)
    # Interleave patients (a real export is not sorted by patient); ids follow the final order.
    rng.shuffle(notes)
    return [{"note_id": f"N{i:06d}", **note} for i, note in enumerate(notes)]
