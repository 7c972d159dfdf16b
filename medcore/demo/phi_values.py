"""Synthetic PHI for the demo notes: patients, clinicians and the many formats a real chart writes PHI in.

Everything is drawn from one `random.Random` and one seeded `Faker` passed in by the caller, never from
global random state, and never from "today" (Faker's relative-date helpers would change the output daily).
"""

from __future__ import annotations

import datetime as dt
import random
import string
from dataclasses import dataclass

from faker import Faker

# i2b2-2014 top-level categories. Subtypes follow i2b2 where it has one (DOCTOR, HOSPITAL, ...).
PHI_TYPES = ("NAME", "PROFESSION", "LOCATION", "AGE", "DATE", "CONTACT", "ID")

# First/last names that are also English words: the classic false-negative trap for a detector that
# only looks at capitalised dictionary words (and the false-positive trap when the word is a word).
WORD_FIRST_NAMES_BY_SEX = {
    "F": ("Rose", "Hope", "Faith", "Grace", "May", "Joy", "Dawn", "Sandy", "Penny", "Iris", "Amber", "Summer", "Ruby"),
    "M": ("Will", "Bill", "Mark", "Jack", "Frank", "Rich", "Art", "Cliff", "Pat", "Sandy", "Guy", "Bob", "Rusty"),
}
WORD_FIRST_NAMES = tuple(dict.fromkeys(WORD_FIRST_NAMES_BY_SEX["F"] + WORD_FIRST_NAMES_BY_SEX["M"]))
WORD_LAST_NAMES = (
    "Black",
    "White",
    "Green",
    "Brown",
    "Young",
    "King",
    "Banks",
    "Hall",
    "Wood",
    "Stone",
    "Rice",
    "Little",
    "Long",
    "Small",
    "Sharp",
    "Bell",
    "Cross",
    "Fox",
    "Hill",
    "Moody",
    "Love",
    "Church",
)
PROFESSIONS = (
    "teacher",
    "bus driver",
    "electrician",
    "software engineer",
    "farmer",
    "carpenter",
    "accountant",
    "nurse",
    "chef",
    "plumber",
    "librarian",
    "firefighter",
    "police officer",
    "pharmacist",
    "welder",
    "hairdresser",
    "truck driver",
    "architect",
    "cashier",
    "lawyer",
    "mechanic",
    "postal worker",
)
RELATIVE_ROLES = {
    "F": ("husband", "son", "daughter", "sister", "brother"),
    "M": ("wife", "son", "daughter", "sister", "brother"),
}
ROLE_SEX = {"husband": "M", "son": "M", "brother": "M", "wife": "F", "daughter": "F", "sister": "F"}
HOLIDAYS = (
    "Christmas",
    "Thanksgiving",
    "New Year's Day",
    "Easter",
    "Labor Day",
    "Memorial Day",
    "Halloween",
    "Independence Day",
)
HOSPITAL_SUFFIXES = (
    "Memorial Hospital",
    "General Hospital",
    "Medical Center",
    "Community Hospital",
    "University Hospital",
    "Regional Medical Center",
)
EMPLOYER_SUFFIXES = (
    "Logistics",
    "Foods",
    "Elementary School",
    "Manufacturing",
    "Bank",
    "Construction",
    "County Library",
    "Insurance",
)
AGE_BANDS = (("18-39", 18, 39, 0.25), ("40-64", 40, 64, 0.35), ("65-89", 65, 89, 0.28), ("90+", 90, 101, 0.12))


@dataclass(frozen=True)
class Phi:
    """One PHI value to place in a note; the note builder records its offsets."""

    value: str
    type: str
    subtype: str


@dataclass(frozen=True)
class Trap:
    """Text that looks like PHI but is not (eponyms, scores, ratios, words that are also names)."""

    value: str
    kind: str


@dataclass
class Clinician:
    first: str
    last: str
    pager: str
    license: str
    username: str


@dataclass
class Patient:
    """A patient's PHI, fixed once so every one of their notes agrees."""

    patient_id: str
    sex: str
    age: int
    age_band: str
    specialty: str
    first: str
    last: str
    dob: dt.date
    mrn: str
    ssn: str
    healthplan: str
    account: str
    phone: str
    email: str
    username: str
    street: str
    city: str
    state: str
    state_abbr: str
    zip: str
    country: str
    profession: str
    employer: str
    relative_first: str
    relative_last: str
    relative_role: str
    vehicle: str
    device: str
    url: str
    ip: str
    hospital: str
    doctor: Clinician
    first_visit: dt.date


def draw_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def draw_letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(n))


def draw_first_name(rng: random.Random, fake: Faker, sex: str) -> str:
    if rng.random() < 0.25:
        return rng.choice(WORD_FIRST_NAMES_BY_SEX[sex])
    return fake.first_name_female() if sex == "F" else fake.first_name_male()


def draw_last_name(rng: random.Random, fake: Faker) -> str:
    return rng.choice(WORD_LAST_NAMES) if rng.random() < 0.2 else fake.last_name()


def draw_phone(rng: random.Random) -> str:
    area, exchange, line = f"{rng.randint(201, 989)}", f"{rng.randint(200, 989)}", draw_digits(rng, 4)
    formats = (
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"+1 {area} {exchange} {line}",
        f"{area}{exchange}{line}",
    )
    return rng.choice(formats)


def draw_ssn(rng: random.Random) -> str:
    # Area numbers 000, 666 and 900-999 are never issued; stay inside the valid range so validators accept it.
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def draw_mrn(rng: random.Random) -> str:
    return rng.choice(
        (
            draw_digits(rng, 8),
            draw_digits(rng, 7),
            f"MR{draw_digits(rng, 6)}",
            f"{draw_digits(rng, 3)}-{draw_digits(rng, 2)}-{draw_digits(rng, 2)}",
        )
    )


def draw_age(rng: random.Random) -> tuple[int, str]:
    pick, acc = rng.random(), 0.0
    for band, low, high, weight in AGE_BANDS:
        acc += weight
        if pick < acc:
            return rng.randint(low, high), band
    return rng.randint(90, 101), "90+"


def draw_date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randint(0, (end - start).days))


def format_date(rng: random.Random, day: dt.date) -> str:
    """One date in one of the formats clinicians write (the year may be dropped)."""
    suffix = "th" if 11 <= day.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10, "th")
    formats = (
        f"{day:%m/%d/%Y}",  # 03/14/1952
        f"{day.month}/{day.day}",  # 3/14
        f"{day:%d-%b-%Y}",  # 14-Mar-2023
        f"{day:%B} {day.day}{suffix}",  # March 14th
        f"{day:%Y-%m-%d}",  # 2023-03-14
        f"{day:%B} {day.day}, {day.year}",  # March 14, 2023
        f"{day.month}/{day.day}/{day:%y}",  # 3/14/23
        f"{day.day} {day:%b} {day.year}",  # 14 Mar 2023
    )
    return rng.choice(formats)


def ordinal_day(day: dt.date) -> str:
    suffix = "th" if 11 <= day.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10, "th")
    return f"{day.day}{suffix}"


def draw_clinician(rng: random.Random, fake: Faker) -> Clinician:
    sex = rng.choice("FM")
    first, last = draw_first_name(rng, fake, sex), draw_last_name(rng, fake)
    pager = rng.choice((f"{rng.randint(1, 9)}-{draw_digits(rng, 4)}", draw_digits(rng, 5), f"#{draw_digits(rng, 4)}"))
    license_id = rng.choice(
        (f"{draw_letters(rng, 2)}{draw_digits(rng, 7)}", f"MD{draw_digits(rng, 6)}", f"{draw_digits(rng, 10)}")
    )
    username = rng.choice((f"{first[0]}{last}".lower(), f"{first}.{last}".lower(), f"{last[:5]}{first[0]}".lower()))
    return Clinician(first=first, last=last, pager=pager, license=license_id, username=username)


def draw_hospital(rng: random.Random, fake: Faker) -> str:
    if rng.random() < 0.3:
        return f"St. {fake.first_name()}'s Hospital"
    return f"{fake.last_name()} {rng.choice(HOSPITAL_SUFFIXES)}"


def draw_ward(rng: random.Random, fake: Faker) -> str:
    return rng.choice(
        (
            f"Ward {rng.randint(1, 12)}{rng.choice('ABCD')}",
            f"{fake.last_name()} {rng.randint(2, 14)}",
            f"{fake.last_name()} Wing",
        )
    )


def draw_vehicle(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.randint(1, 9)}{draw_letters(rng, 3)}{draw_digits(rng, 3)}"
    # VINs never use I, O or Q (confusable with 1 and 0).
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    return "".join(rng.choice(alphabet) for _ in range(17))


def draw_patient(
    rng: random.Random, fake: Faker, index: int, specialty: str, hospitals: list[str], doctors: list[Clinician]
) -> Patient:
    sex = rng.choice("FM")
    age, band = draw_age(rng)
    first, last = draw_first_name(rng, fake, sex), draw_last_name(rng, fake)
    if rng.random() < 0.02:
        first, last, sex = "Bill", "Black", "M"  # the name every redactor should still catch
    first_visit = draw_date(rng, dt.date(2016, 1, 1), dt.date(2024, 6, 30))
    dob = first_visit - dt.timedelta(days=age * 365 + rng.randint(30, 330))
    role = rng.choice(RELATIVE_ROLES[sex])
    relative_last = last if role in ("son", "daughter", "husband", "wife") else draw_last_name(rng, fake)
    username = rng.choice((f"{first[0]}{last}{rng.randint(1, 99)}", f"{first}_{last}", f"{last}{first[0]}"))
    slug = last.lower().replace("'", "")
    return Patient(
        patient_id=f"P{index:05d}",
        sex=sex,
        age=age,
        age_band=band,
        specialty=specialty,
        first=first,
        last=last,
        dob=dob,
        mrn=draw_mrn(rng),
        ssn=draw_ssn(rng),
        healthplan=f"{draw_letters(rng, 3)}{draw_digits(rng, 9)}",
        account=rng.choice(
            (draw_digits(rng, 9), f"{draw_digits(rng, 8)}-{rng.randint(0, 9)}", f"A{draw_digits(rng, 7)}")
        ),
        phone=draw_phone(rng),
        email=f"{first}.{last}{rng.randint(1, 99)}@{fake.free_email_domain()}".lower(),
        username=username.lower(),
        street=fake.street_address(),
        city=fake.city(),
        state=fake.state(),
        state_abbr=fake.state_abbr(),
        zip=fake.zipcode() if rng.random() < 0.7 else fake.zipcode_plus4(),
        country=rng.choice(("Portugal", "Vietnam", "Nigeria", "Ireland", "Mexico", "Poland", "India", "Haiti")),
        profession=rng.choice(PROFESSIONS),
        employer=f"{fake.last_name()} {rng.choice(EMPLOYER_SUFFIXES)}",
        relative_first=draw_first_name(rng, fake, ROLE_SEX[role]),
        relative_last=relative_last,
        relative_role=role,
        vehicle=draw_vehicle(rng),
        device=rng.choice(
            (
                f"{draw_letters(rng, 3)}-{draw_digits(rng, 7)}",
                f"SN {draw_digits(rng, 4)}{draw_letters(rng, 2)}{draw_digits(rng, 4)}",
            )
        ),
        url=rng.choice(
            (
                f"https://portal.{slug}-family.org/p/{draw_digits(rng, 6)}",
                f"www.{slug}{rng.randint(1, 99)}.com",
                f"http://carebridge.example.net/u/{username.lower()}",
            )
        ),
        ip=f"{rng.choice((10, 172, 192, 68, 98))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        hospital=rng.choice(hospitals),
        doctor=rng.choice(doctors),
        first_visit=first_visit,
    )
