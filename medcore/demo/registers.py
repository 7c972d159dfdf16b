"""Synthetic notes in the registers of real charts (ALL-CAPS ICU shorthand, sloppy lower case, telegraphic nursing,
physician headers, vitals-only), with exact gold PHI spans, for training a PHI tagger that transfers to real notes.

    from medcore.demo.registers import generate_register_notes, write_register_notes
    notes = generate_register_notes(seed=0, n=2000)   # [{id, patient, register, text, phi_spans}]
    write_register_notes("register_notes.jsonl", seed=0, n=2000)

Span types are MedCore's categories (NAME, PROFESSION, LOCATION, AGE, DATE, CONTACT, ID) plus YEAR: a year on its
own ("CABG '84", "quit in 1998") is not a Safe Harbor identifier, so it is kept apart for the trainer to learn or
ignore. Only ages over 89 are AGE spans; younger ages are written the same way ("74 YO") and are not PHI. Times,
doses, vitals, unit names (MICU, CCU, OSH) and eponyms are never spans.

Text is built from pieces and each PHI piece's offsets are recorded as it is appended (already cased for the
register), so every span is exact by construction. Each note draws from its own `random.Random` seeded by
(seed, patient, visit) strings, and Faker is reseeded from it before every draw: the output depends on the seed
only, `n` notes are a prefix of `n + k`, and no set or dict is iterated in hash order.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
import re
from collections.abc import Callable
from pathlib import Path

from medcore.demo import register_phrases as rp
from medcore.demo.build import render_jsonl, write_text_atomic
from medcore.demo.phi_values import Phi
from medcore.demo.surrogate_pool import MONTHS, Cast, Person, draw_cast, draw_pager, draw_phone
from medcore.errors import MedcoreError

REGISTER_PHI_TYPES = ("NAME", "PROFESSION", "LOCATION", "AGE", "DATE", "CONTACT", "ID", "YEAR")
RECORD_KEYS = ("id", "patient", "register", "text", "phi_spans")
# About 15% negatives (vitals_only never holds PHI; every other register always does); the rest roughly equal.
REGISTERS = {"icu_caps": 0.2, "icu_lower": 0.15, "nursing_progress": 0.25, "physician": 0.25, "vitals_only": 0.15}
SLOT = re.compile(r"\{(\w+)\}")

Piece = str | Phi | tuple
Slots = dict[str, Callable[[], Piece]]


class NoteText:
    """Appends pieces in the register's case and records each PHI piece's offsets as it goes."""

    def __init__(self, rng: random.Random, casing: str) -> None:
        self.rng, self.casing = rng, casing
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[dict] = []

    def add(self, piece: Piece) -> None:
        if isinstance(piece, tuple):
            for part in piece:
                self.add(part)
        elif isinstance(piece, Phi):
            value = self.case_phi(piece)
            assert value and value == value.strip(), "a PHI piece must be non-empty and unpadded"
            self.spans.append(
                {
                    "start": self.length,
                    "end": self.length + len(value),
                    "type": piece.type,
                    "subtype": piece.subtype,
                    "value": value,
                }
            )
            self.append(value)
        else:
            self.append(self.case_text(piece))

    def fill(self, template: str, slots: Slots) -> None:
        position = 0
        for match in SLOT.finditer(template):
            self.add(template[position : match.start()])
            self.add(slots[match.group(1)]())
            position = match.end()
        self.add(template[position:])

    def append(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def case_text(self, text: str) -> str:
        if self.casing == "upper":
            return text.upper()
        if self.casing == "lower":
            # Sloppy punctuation: full stops become commas, double spaces or nothing.
            return re.sub(r"\. ", lambda _: self.rng.choice((". ", ". ", ".  ", "  ", ", ", " ")), text.lower())
        return text

    def case_phi(self, phi: Phi) -> str:
        if self.casing == "upper":
            return phi.value.upper()
        lower_share = {"lower": 0.6, "mixed": 0.08}[self.casing] if phi.type in ("NAME", "LOCATION") else 0.0
        return phi.value.lower() if self.rng.random() < lower_share else phi.value

    @property
    def text(self) -> str:
        return "".join(self.parts)


def name(value: str, subtype: str = "DOCTOR") -> Phi:
    return Phi(value, "NAME", subtype)


def place(value: str, subtype: str) -> Phi:
    return Phi(value, "LOCATION", subtype)


def format_date(rng: random.Random, day: dt.date, style: str) -> Phi:
    """`day` as nurses and physicians write it: "8/30", "10-3", "3/14/21", "March 14, 2021", "Jan 5th", "20th Oct"."""
    m, d, y, month = day.month, day.day, day.year, MONTHS[day.month - 1]
    nth = f"{d}{'th' if 11 <= d <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"
    forms = {
        "short": (f"{m}/{d}", f"{m}/{d}", f"{m}-{d}", f"{m:02d}/{d:02d}"),
        "full": (f"{m}/{d}/{y % 100:02d}", f"{m}-{d}-{y % 100:02d}", f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}",
                 f"{month} {d}, {y}", f"{d} {month[:3]} {y}", f"{d}-{month[:3]}-{y}", f"{m}/{d}/{y}"),
        "month": (f"{month[:3]} {d}", f"{month[:3]} {nth}", f"{month} {nth}", f"{nth} {month[:3]}", f"{d} {month}",
                  f"{nth} of {month}", f"{month[:3]}. {d}"),
    }  # fmt: skip
    return Phi(rng.choice(forms[style]), "DATE", "DATE")


def age_phrase(rng: random.Random, age: int) -> Piece:
    """ "74 YO", "91 y/o", "age 91": only ages over 89 are PHI (Safe Harbor), so only they become spans."""
    value = Phi(str(age), "AGE", "AGE") if age > 89 else str(age)
    if rng.random() < 0.15:
        return "age ", value
    return value, rng.choice((" yo", "yo", " y/o", "y/o", " yr old", " year old", "-year-old", " YO"))


def full_name(person: Person) -> str:
    return f"{person.first} {person.last}"


def email_address(person: Person, domain: str) -> str:
    return re.sub(r"[^a-z.@]", "", f"{person.first[0]}{person.last}@{domain}.org".lower())


def fill_values(rng: random.Random, template: str) -> str:
    return SLOT.sub(lambda match: rp.VALUE_SLOTS[match.group(1)](rng), template)


def doctor_slots(rng: random.Random, cast: Cast) -> Slots:
    def doctor() -> Person:
        return rng.choice(cast.doctors)

    def titled() -> Piece:
        d = doctor()
        title = rng.choice(("Dr. ", "Dr. ", "Dr ", "Dr.", "dr "))
        value = rng.choices((d.last, f"{d.first} {d.last}", f"{d.first[0]}. {d.last}"), weights=(7, 2, 1))[0]
        return title, name(value)

    def signature() -> Piece:
        n = rng.choice(cast.nurses)
        value = rng.choice((f"{n.first} {n.last}", f"{n.first[0]}. {n.last}", n.first, f"{n.first} {n.last[0]}"))
        return name(value), rng.choice((", RN", " RN", " RRT", ", RRT", " SN"))

    return {
        "doc": lambda: name(doctor().last),
        "dr": titled,
        "dr_full": lambda: name(full_name(doctor())),
        "md_sig": lambda: (name(full_name(doctor())), rng.choice((", MD", " MD", ", M.D."))),
        "nurse": lambda: name(rng.choice(cast.nurses).first),
        "nurse_full": lambda: name(full_name(rng.choice(cast.nurses))),
        "sig": signature,
        "email": lambda: Phi(email_address(doctor(), cast.hospital.abbreviation), "CONTACT", "EMAIL"),
    }


def family_slots(rng: random.Random, cast: Cast) -> Slots:
    def relative_phrase() -> Piece:
        r = rng.choice(cast.relatives)
        role = "dtr" if r.role == "daughter" and rng.random() < 0.3 else r.role
        full = name(full_name(r.person), "RELATIVE")
        first = name(r.person.first, "RELATIVE")
        return rng.choices(((role, " ", first), (role, " ", full), (first, " (", role, ")")), weights=(6, 3, 1))[0]

    def relative_contact() -> Piece:
        r = rng.choice(cast.relatives)
        phone = Phi(r.phone, "CONTACT", "PHONE")
        return rng.choice(
            (
                (r.role, " ", name(r.person.first, "RELATIVE"), " (", phone, ")"),
                (r.role, ", ", name(full_name(r.person), "RELATIVE"), ", tel ", phone),
            )
        )

    p = cast.patient
    return {
        "rel": relative_phrase,
        "rel_name": lambda: name(rng.choice(cast.relatives).person.first, "RELATIVE"),
        "rel_contact": relative_contact,
        "pt": lambda: rng.choices(
            ((("Mrs. " if p.sex == "F" else "Mr. "), name(p.last, "PATIENT")), name(p.first, "PATIENT")),
            weights=(9, 1),
        )[0],
        "pt_formal": lambda: name(rng.choice((f"{p.last}, {p.first}", f"{p.last.upper()}, {p.first}")), "PATIENT"),
        "age": lambda: age_phrase(rng, cast.age),
        "sex": lambda: rng.choice(("F", "female", "woman") if p.sex == "F" else ("M", "male", "man")),
        "sx": lambda: p.sex,
        "job": lambda: Phi(cast.profession, "PROFESSION", "PROFESSION"),
        "mrn": lambda: Phi(cast.mrn, "ID", "MRN"),
    }


def place_slots(rng: random.Random, cast: Cast) -> Slots:
    def hospital(h) -> Piece:
        return place(rng.choice((h.name, h.abbreviation)), "HOSPITAL")

    return {
        "hosp": lambda: hospital(cast.hospital),
        # "transferred from Harlowton hosp": the town names the hospital, so it is a HOSPITAL span too.
        "osh": lambda: rng.choice((hospital(cast.outside), (place(cast.town, "HOSPITAL"), " hosp"))),
        "ward": lambda: (place(cast.ward, "DEPARTMENT"), rng.choice((f" {rng.randint(2, 8)}", " campus"))),
        "town": lambda: rng.choice(
            (place(cast.town, "CITY"), (place(cast.town, "CITY"), ", ", place(cast.state, "STATE")))
        ),
        "street": lambda: place(cast.street, "STREET"),
        "home": lambda: place(cast.home, "ORGANIZATION"),
    }


def time_slots(rng: random.Random, cast: Cast, today: dt.date) -> Slots:
    def recent() -> dt.date:
        return today - dt.timedelta(days=rng.randint(0, 14))

    def year() -> int:
        return today.year - rng.randint(1, 30)

    dob = cast.admitted - dt.timedelta(days=cast.age * 365 + rng.randint(1, 360))
    return {
        "today": lambda: format_date(rng, today, "short"),
        "date": lambda: format_date(rng, recent(), "short"),
        "fdate": lambda: format_date(rng, recent(), "full"),
        "mdate": lambda: format_date(rng, recent(), "month"),
        "dob": lambda: format_date(rng, dob, "full"),
        "year": lambda: Phi(str(year()), "YEAR", "YEAR"),
        "yy": lambda: Phi(f"{year() % 100:02d}", "YEAR", "YEAR"),
        "phone": lambda: Phi(draw_phone(rng), "CONTACT", "PHONE"),
        "pager": lambda: Phi(draw_pager(rng), "CONTACT", "PAGER"),
    }


def clinical_slots(rng: random.Random) -> Slots:
    slots: Slots = {key: (lambda draw=draw: draw(rng)) for key, draw in rp.VALUE_SLOTS.items()}
    courses = rng.sample(rp.PHYSICIAN_COURSE, len(rp.PHYSICIAN_COURSE))  # drawn without replacement per note
    return {
        **slots,
        "dx": lambda: rng.choice(rp.ICU_DIAGNOSES),
        "problem": lambda: rng.choice(rp.PHYSICIAN_PROBLEMS),
        "pmh": lambda: ", ".join(rng.sample(rp.PHYSICIAN_HISTORY, rng.randint(2, 4))),
        "exam": lambda: "\n".join(rng.sample(rp.PHYSICIAN_EXAM, rng.randint(3, 6))),
        "course": lambda: fill_values(rng, courses.pop()),
        "service": lambda: rng.choice(("MEDICINE", "CARDIOLOGY", "CARDIOTHORACIC SURGERY", "NEUROLOGY")),
        "unit": lambda: rng.choice(("MICU", "CCU", "SICU", "CSRU")),
        "kind": lambda: rng.choice(("Physical Therapy", "Rehabilitation services/physical therapy", "PT note")),
    }


def draw_slots(rng: random.Random, cast: Cast, today: dt.date) -> Slots:
    return {
        **doctor_slots(rng, cast),
        **family_slots(rng, cast),
        **place_slots(rng, cast),
        **time_slots(rng, cast, today),
        **clinical_slots(rng),
    }


# Chance that a system section carries one PHI fact ("DR SMITH AWARE", "EXTUBATED 8/30", "WIFE MARY CALLED").
ICU_PHI_SHARE = {"NEURO": 0.12, "CV": 0.25, "RESP": 0.15, "GI": 0.1, "GU": 0.1, "ID": 0.12, "SKIN": 0.0, "HEME": 0.0,
                 "SOCIAL": 0.75, "PLAN": 0.35}  # fmt: skip


def compose_icu(rng: random.Random, slots: Slots, note: NoteText) -> None:
    """System-by-system ICU nursing note: header, optional one-line history, NEURO/CV/RESP/GI/GU..., PLAN."""
    newline = " " if rng.random() < 0.15 else rng.choice(("\n", " \n \n", "\n\n"))  # some notes are one run-on block
    if rng.random() < 0.25:
        note.fill("{today} ", slots)
    note.add(rng.choice(rp.ICU_HEADERS) + newline)
    if rng.random() < 0.55:
        note.fill(rng.choice(rp.ICU_OPENERS), slots)
        note.add(newline)
    sections = ["NEURO", "CV", "RESP", "GI", "GU"]
    if rng.random() < 0.3:
        rng.shuffle(sections)
    sections += [s for s in ("ID", "SKIN", "HEME") if rng.random() < 0.4]
    sections += [s for s, share in (("SOCIAL", 0.7), ("PLAN", 0.85)) if rng.random() < share]
    separator = rng.choice((": ", ": ", "- ", ":", "="))
    for section in sections:
        pool = rp.ICU_SECTIONS[section]
        facts = rng.sample(pool, rng.randint(1, min(5, len(pool))))
        if rng.random() < ICU_PHI_SHARE[section]:
            facts.insert(rng.randint(0, len(facts)), rng.choice(rp.ICU_PHI_FACTS[section]))
        note.add(rng.choice(rp.SECTION_ALIASES[section]) + separator)
        note.fill(" ".join(facts), slots)
        note.add(newline)
    if not note.spans or rng.random() < 0.3:
        note.fill("{sig}", slots)


def compose_nursing(rng: random.Random, slots: Slots, note: NoteText) -> None:
    """Telegraphic mixed-case notes: resp care, nursing progress, addenda, therapy and social-work notes."""
    pick = rng.random()
    if pick < 0.12:
        note.fill(rp.THERAPY_NOTE, slots)
        return
    if pick < 0.22:
        note.fill(rp.SOCIAL_WORK_NOTE, slots)
        return
    facts = rng.sample(rp.NURSING_FACTS, rng.randint(2, 6))
    for phi_fact in rng.sample(rp.NURSING_PHI, rng.randint(1, 2)):
        facts.insert(rng.randint(0, len(facts)), phi_fact)
    note.add(rng.choice(rp.NURSING_HEADERS) + rng.choice((" ", "\n", " \n \n")))
    note.fill(rng.choice((" ", "  ", "\n")).join(facts), slots)
    if rng.random() < 0.5:
        note.add(rng.choice(("  ", "\n")))
        note.fill("{sig}", slots)


def compose_physician(rng: random.Random, slots: Slots, note: NoteText) -> None:
    """Discharge summary or attending progress note, with headers; later lines are each dropped now and then."""
    lines = rp.DISCHARGE_LINES if rng.random() < 0.5 else rp.PROGRESS_LINES
    for index, line in enumerate(lines):
        if index < 2 or rng.random() < 0.85:
            note.fill(line if isinstance(line, str) else rng.choice(line), slots)


def compose_vitals(rng: random.Random, slots: Slots, note: NoteText) -> None:
    """A short vitals-and-drips note with no PHI at all: the negative examples."""
    note.add(rng.choice(rp.ICU_HEADERS + rp.NURSING_HEADERS) + rng.choice(("\n", " ")))
    note.fill(rng.choice((" ", "\n")).join(rng.sample(rp.VITALS_ONLY_LINES, rng.randint(2, 6))), slots)


COMPOSERS = {
    "icu_caps": (compose_icu, "upper"),
    "icu_lower": (compose_icu, "lower"),
    "nursing_progress": (compose_nursing, "mixed"),
    "physician": (compose_physician, "mixed"),
    "vitals_only": (compose_vitals, None),
}


def compose_note(rng: random.Random, cast: Cast, today: dt.date) -> tuple[str, NoteText]:
    register = rng.choices(list(REGISTERS), weights=list(REGISTERS.values()))[0]
    compose, casing = COMPOSERS[register]
    note = NoteText(rng, casing or rng.choice(("upper", "lower", "mixed")))
    compose(rng, draw_slots(rng, cast, today), note)
    return register, note


def generate_register_notes(seed: int = 0, n: int = 2000, *, with_values: bool = False) -> list[dict]:
    """`n` notes from `seed` (same seed, same notes), 1-5 per patient, each patient's PHI consistent.

    Args:
        with_values: also give each span its placed `value` and a `subtype` (DOCTOR, RELATIVE, HOSPITAL, ...).

    Returns:
        Records {id, patient, register, text, phi_spans: [{start, end, type}]}, offsets in characters, end exclusive.
    """
    if n < 1:
        raise MedcoreError(f"generate_register_notes needs n >= 1 notes (got {n}); pass e.g. n=2000.")
    keys = ("start", "end", "type", "subtype", "value") if with_values else ("start", "end", "type")
    notes: list[dict] = []
    patient = 0
    while len(notes) < n:
        patient_rng = random.Random(f"registers:{seed}:{patient}")
        cast = draw_cast(patient_rng)
        today = cast.admitted
        for visit in range(min(patient_rng.randint(1, 5), n - len(notes))):
            rng = random.Random(f"registers:{seed}:{patient}:{visit}")
            today += dt.timedelta(days=rng.randint(0, 3))
            register, note = compose_note(rng, cast, today)
            notes.append(
                {
                    "id": f"RN{len(notes):06d}",
                    "patient": f"RP{patient:05d}",
                    "register": register,
                    "text": note.text,
                    "phi_spans": [{key: span[key] for key in keys} for span in note.spans],
                }
            )
        patient += 1
    return notes


def write_register_notes(path: str | Path, seed: int = 0, n: int = 2000) -> dict:
    """Write `n` register notes from `seed` to `path` as JSONL (one record a line, RECORD_KEYS); returns a summary."""
    notes = generate_register_notes(seed=seed, n=n)
    sha256 = write_text_atomic(Path(path), render_jsonl(notes, RECORD_KEYS))
    return {
        "path": str(path),
        "seed": seed,
        "notes": len(notes),
        "patients": len({note["patient"] for note in notes}),
        "without_phi": sum(not note["phi_spans"] for note in notes),
        "register": dict(sorted(collections.Counter(note["register"] for note in notes).items())),
        "phi_by_type": dict(sorted(collections.Counter(s["type"] for n_ in notes for s in n_["phi_spans"]).items())),
        "sha256": sha256,
    }
