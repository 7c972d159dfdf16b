"""Wide surrogate PHI for the register notes: multi-locale names, invented hospitals, towns, homes, phones, dates.

Values come from Faker in many locales (seeded from the caller's `random.Random` before every draw, so the
output depends on the seed only) plus name patterns built here, never from the small fixed lists of the
tidy demo generator (`medcore.demo.phi_values`) or the tests. Everything is folded to ASCII, as US charts are.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import unicodedata
from dataclasses import dataclass

from faker import Faker

# Locale weights for people: mostly English-speaking, with the surnames a US ICU census actually holds.
# en_CA and en_AU share en_US's name data but add their own places.
NAME_LOCALES = {
    "en_US": 30,
    "en_GB": 10,
    "en_IE": 8,
    "en_CA": 4,
    "en_AU": 4,
    "en_NZ": 4,
    "en_IN": 6,
    "es_MX": 8,
    "it_IT": 5,
    "pl_PL": 4,
    "de_DE": 4,
    "fr_FR": 4,
    "pt_BR": 3,
    "nl_NL": 2,
    "sv_SE": 2,
    "fi_FI": 1,
}
PLACE_LOCALES = ("en_US", "en_US", "en_GB", "en_CA", "en_AU", "en_NZ")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip
# Words that a surrogate must never be: the clinical trap words the notes use (a nurse called "Foley" would
# turn the catheter into a name and the trap tests into noise) and the unit and title abbreviations.
CLINICAL_WORDS = frozenset(
    "foley swan ganz coumadin lasix levophed neo heparin insulin propofol fentanyl versed ativan haldol amio "
    "cardiac afebrile draining neuro resp plan social skin heme endo micu sicu ccu csru icu osh ed er or pacu "
    "hr sbp bp map rr sat sats cv gi gu id pt ho np rn md do pa rt rrt dr drs ms mr mrs ns nc peep cpap kcl "
    "will may or in me ok hi sah cad chf dvt copd avr mvr ards uti htn esrd pna dka abg cxr ekg ecg cabg mri ct "
    "cpr tpn ngt ogt peg sob doe loc".split()
)
_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE", "đ": "d", "ı": "i"})
TOWN_SUFFIXES = ("ton", "ville", "field", "burg", "wood", "dale", "port", "ford", "bury", "mont", "land")
TOWN_PREFIXES = ("New", "North", "South", "East", "West", "Port", "Fort", "Mount", "Lake", "Glen", "Upper")
TOWN_FEATURES = ("Falls", "Heights", "Springs", "Hills", "Park", "Junction", "Creek", "Harbor", "Landing", "Mills")
RELATIVE_ROLES = (("wife", "F"), ("husband", "M"), ("daughter", "F"), ("son", "M"), ("sister", "F"),
                  ("brother", "M"), ("niece", "F"), ("nephew", "M"), ("granddaughter", "F"), ("mother", "F"),
                  ("friend", "M"), ("partner", "F"))  # fmt: skip


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    sex: str


@dataclass(frozen=True)
class Relative:
    role: str
    person: Person
    phone: str


@dataclass(frozen=True)
class Place:
    """A named place and the initials staff write for it ("Harlow General Hospital" / "HGH")."""

    name: str
    abbreviation: str


@dataclass(frozen=True)
class Cast:
    """One patient's PHI, fixed once so all of their notes agree."""

    patient: Person
    age: int
    mrn: str
    profession: str
    admitted: dt.date
    relatives: tuple[Relative, ...]
    doctors: tuple[Person, ...]
    nurses: tuple[Person, ...]
    hospital: Place
    outside: Place
    ward: str
    home: str
    town: str
    state: str
    street: str


@functools.cache
def locale_fakers() -> dict[str, Faker]:
    """One Faker per locale, built once per process (about 0.5 s); callers reseed before each draw."""
    return {locale: Faker(locale) for locale in dict.fromkeys([*NAME_LOCALES, *PLACE_LOCALES])}


def seeded_faker(rng: random.Random, locale: str | None = None) -> Faker:
    """A Faker for `locale` (or one drawn by NAME_LOCALES weight), reseeded from `rng`."""
    if locale is None:
        locale = rng.choices(list(NAME_LOCALES), weights=list(NAME_LOCALES.values()))[0]
    fake = locale_fakers()[locale]
    fake.seed_instance(rng.getrandbits(32))
    return fake


def fold_ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def draw_word(rng: random.Random, draw, locale: str | None = None) -> str:
    """An ASCII value from `draw(fake)` that is not a clinical word; falls back to en_US after a few tries."""
    for attempt in range(8):
        value = fold_ascii(draw(seeded_faker(rng, locale if attempt < 6 else "en_US")))
        if value.isascii() and len(value) > 1 and not CLINICAL_WORDS.intersection(value.lower().split()):
            return value
    raise AssertionError("no usable surrogate after 8 draws")  # en_US names always pass; kept as an invariant


def draw_person(rng: random.Random, sex: str | None = None) -> Person:
    sex = sex or rng.choice("FM")
    locale = rng.choices(list(NAME_LOCALES), weights=list(NAME_LOCALES.values()))[0]
    first = draw_word(rng, lambda f: f.first_name_female() if sex == "F" else f.first_name_male(), locale)
    return Person(first=first, last=draw_word(rng, lambda f: f.last_name(), locale), sex=sex)


def draw_surname(rng: random.Random) -> str:
    return draw_word(rng, lambda f: f.last_name())


def draw_town(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        return draw_word(rng, lambda f: f.city(), rng.choice(PLACE_LOCALES))
    stem = draw_word(rng, lambda f: f.last_name(), rng.choice(PLACE_LOCALES))
    if pick < 0.6:
        suffix = rng.choice(TOWN_SUFFIXES)
        return stem if stem.lower().endswith(suffix) else stem + suffix
    if pick < 0.8:
        return f"{rng.choice(TOWN_PREFIXES)} {stem}"
    return f"{stem} {rng.choice(TOWN_FEATURES)}"


def initials(name: str) -> str:
    words = name.replace("-", " ").replace(".", "").split()
    letters = "".join(word[0] for word in words if word[0].isupper())
    # Two-letter initials such as "ED" or "GI" would collide with ward and section words.
    return letters if len(letters) > 2 and letters.lower() not in CLINICAL_WORDS else letters + "H"


def draw_hospital(rng: random.Random) -> Place:
    town, surname = draw_town(rng), draw_surname(rng)
    saint = draw_word(rng, lambda f: f.first_name(), rng.choice(("en_IE", "en_GB", "it_IT", "fr_FR", "es_MX")))
    state = seeded_faker(rng, "en_US").state()
    name = rng.choice(
        (
            f"{town} General Hospital",
            f"{town} General",
            f"St. {saint}'s Hospital",
            f"Saint {saint} Medical Center",
            f"{surname} Memorial Hospital",
            f"{surname} Memorial",
            f"{town} Regional Medical Center",
            f"{town} Community Hospital",
            f"University of {state} Medical Center",
            f"{surname} Hospital Center",
            f"{town} Valley Hospital",
        )
    )
    return Place(name=name, abbreviation=initials(name))


def draw_home(rng: random.Random) -> str:
    """A nursing home, rehab or assisted-living facility."""
    town, surname = draw_town(rng), draw_surname(rng)
    saint = draw_word(rng, lambda f: f.first_name(), "en_IE")
    return rng.choice(
        (
            f"{town} Rehab",
            f"{surname} Manor",
            f"{town} Nursing and Rehabilitation Center",
            f"St. {saint}'s Home",
            f"{surname} House",
            f"{town} Health Care Center",
            f"{surname} Gardens",
            f"{town} Hospice",
        )
    )


def draw_street(rng: random.Random) -> str:
    fake = seeded_faker(rng, rng.choice(("en_US", "en_US", "en_CA", "en_AU")))
    return fold_ascii(f"{fake.building_number()} {fake.street_name()}")


def draw_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def draw_phone(rng: random.Random) -> str:
    area, exchange, line = str(rng.randint(201, 989)), str(rng.randint(200, 989)), draw_digits(rng, 4)
    return rng.choice(
        (
            f"{area}-{exchange}-{line}",
            f"({area}) {exchange}-{line}",
            f"({area}){exchange}-{line}",
            f"{area} {exchange}-{line}",
            f"{area}/{exchange}/{line}",
            f"{area}.{exchange}.{line}",
            f"{exchange}-{line}",
            f"{area} {exchange} {line}",
            f"1-{area}-{exchange}-{line}",
        )
    )


def draw_pager(rng: random.Random) -> str:
    """Pager or extension digits; the "#" or "pager" before it is written by the template, outside the span."""
    return rng.choice(
        (draw_digits(rng, 5), draw_digits(rng, 4), f"{rng.randint(1, 9)}-{draw_digits(rng, 4)}", f"x{draw_digits(rng, 5)}",
         f"x{rng.randint(1, 9)}-{draw_digits(rng, 4)}")
    )  # fmt: skip


def draw_mrn(rng: random.Random) -> str:
    return rng.choice(
        (draw_digits(rng, 7), draw_digits(rng, 8), f"{draw_digits(rng, 3)}-{draw_digits(rng, 2)}-{draw_digits(rng, 2)}",
         f"MR{draw_digits(rng, 6)}", f"00{draw_digits(rng, 6)}")
    )  # fmt: skip


def draw_profession(rng: random.Random) -> str:
    """A plain job title from Faker's long lists ("Engineer, civil (contracting)" and the like are skipped)."""
    for _ in range(8):
        job = fold_ascii(seeded_faker(rng, rng.choice(("en_US", "en_GB"))).job())
        if job.isascii() and not any(mark in job for mark in ",()/") and len(job.split()) <= 3:
            return job.lower()
    return "mail carrier"


def draw_state(rng: random.Random) -> str:
    """A state abbreviation that is not also a chart word ("ID", "PA", "MD", "OR" are skipped)."""
    fake = seeded_faker(rng, "en_US")
    draws = (fake.state_abbr(include_territories=False, include_freely_associated_states=False) for _ in range(20))
    return next(state for state in draws if state.lower() not in CLINICAL_WORDS)


def draw_age(rng: random.Random) -> int:
    # One patient in six is over 89, the only ages Safe Harbor counts as PHI: enough for the tagger to see them.
    return rng.randint(90, 103) if rng.random() < 0.17 else rng.randint(24, 89)


def draw_relative(rng: random.Random, patient: Person) -> Relative:
    role, sex = rng.choice(RELATIVE_ROLES)
    person = draw_person(rng, sex)
    if role in ("wife", "husband", "daughter", "son") and rng.random() < 0.6:
        person = Person(first=person.first, last=patient.last, sex=sex)
    return Relative(role=role, person=person, phone=draw_phone(rng))


def draw_cast(rng: random.Random) -> Cast:
    patient = draw_person(rng)
    return Cast(
        patient=patient,
        age=draw_age(rng),
        mrn=draw_mrn(rng),
        profession=draw_profession(rng),
        admitted=dt.date(2004, 1, 1) + dt.timedelta(days=rng.randint(0, 20 * 365)),
        relatives=tuple(draw_relative(rng, patient) for _ in range(rng.randint(1, 3))),
        doctors=tuple(draw_person(rng) for _ in range(rng.randint(3, 6))),
        nurses=tuple(draw_person(rng) for _ in range(rng.randint(2, 4))),
        hospital=draw_hospital(rng),
        outside=draw_hospital(rng),
        ward=draw_surname(rng),
        home=draw_home(rng),
        town=draw_town(rng),
        state=draw_state(rng),
        street=draw_street(rng),
    )
