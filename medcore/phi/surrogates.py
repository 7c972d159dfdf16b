"""Replace detected PHI: mask with a tag, remove, or swap in consistent, format-preserving surrogates.

Surrogates are keyed by HMAC-SHA256 over a secret salt, so the same original always gets the same
fake within a dataset (and across runs with the same salt) while nobody without the salt can map a
fake back. Dates move by one offset per patient, so intervals between a patient's dates survive.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import hmac
import re
import string

AGE_OVER_89 = "90+"  # Safe Harbor: ages over 89 are aggregated into a single category
MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
MONTHS["sept"] = 9
MONTH_RE = r"(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
DATE_FORMS = [
    re.compile(r"(?P<m>\d{1,2})(?P<sep>[/\-.])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"),
    re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"),
    re.compile(
        rf"(?P<d>\d{{1,2}})(?P<ord>st|nd|rd|th)?(?P<of> of)?(?P<sep>[ \-]){MONTH_RE}(?P<dot>\.?)(?:(?P<ysep>[ \-,]+)(?P<y>\d{{4}}))?",
        re.I,
    ),
    re.compile(rf"{MONTH_RE}(?P<dot>\.?) (?P<d>\d{{1,2}})(?P<ord>st|nd|rd|th)?(?:(?P<ysep>,? )(?P<y>\d{{4}}))?", re.I),
    re.compile(rf"{MONTH_RE}(?P<dot>\.?) (?P<of>of )?(?P<y>\d{{4}})", re.I),
    re.compile(r"(?P<m>\d{1,2})/(?P<d>\d{1,2})"),
]


def is_over_89(value: str) -> bool:
    """The age written in `value` is over 89 (Safe Harbor aggregates only those); False when it holds no digits."""
    digits = "".join(c for c in value if c.isdigit())
    return bool(digits) and int(digits[:3]) > 89


def keyed_int(salt: bytes, *parts: str) -> int:
    """A stable integer from the salt and `parts` (HMAC-SHA256): the root of every surrogate choice."""
    message = "\x1f".join(parts).encode("utf-8")
    return int.from_bytes(hmac.new(salt, message, hashlib.sha256).digest()[:8], "big")


def date_offset_days(salt: bytes, patient_key: str) -> int:
    """Per-patient shift: 1 to 365 days into the past, never zero."""
    return -(1 + keyed_int(salt, "date-offset", patient_key) % 365)


def match_case(template: str, value: str) -> str:
    if template.isupper() and len(template) > 1:
        return value.upper()
    if template.islower():
        return value.lower()
    return value


def substitute_characters(value: str, salt: bytes, scope: str, keep: int = 0) -> str:
    """Digits -> digits, letters -> letters (same case), punctuation kept: "MR123456" -> "QX804213"."""
    out = list(value)
    stream = keyed_int(salt, scope, value.lower())
    for i, ch in enumerate(value):
        if i < keep:
            continue
        stream = keyed_int(salt, scope, value.lower(), str(i), str(stream))
        if ch.isdigit():
            out[i] = string.digits[stream % 10]
        elif ch.isalpha() and ch.isascii():
            letter = string.ascii_lowercase[stream % 26]
            out[i] = letter.upper() if ch.isupper() else letter
    return "".join(out)


def shift_date(value: str, days: int) -> str | None:
    """`value` moved by `days`, written in its own format; None when it is not a date we can parse."""
    for form in DATE_FORMS:
        match = form.fullmatch(value.strip())
        if match:
            return render_shifted(match, days)
    return None


def render_shifted(match: re.Match, days: int) -> str | None:
    g = match.groupdict()
    month = int(g["m"]) if g.get("m") else MONTHS.get((g.get("mon") or "").lower().rstrip("."))
    year_text = g.get("y")
    year = int(year_text) if year_text else 2000  # a leap year, so "2/29" without a year still parses
    if year_text and len(year_text) == 2:
        year += 2000 if year < 50 else 1900
    try:
        # A month-year date has no day: shift its 15th so the month moves the way the patient's days do.
        new = dt.date(year, month, int(g["d"]) if g.get("d") else 15) + dt.timedelta(days=days)
    except (TypeError, ValueError):
        return None
    # 2023-03-14, 03/14/2023: a numeric date written with two-digit fields keeps two-digit fields (14 -> 04).
    padded = len(g.get("m") or "") == 2 and len(g.get("d") or "") == 2
    parts = sorted(
        (*match.span(name), render_part(name, g[name], new, padded)) for name in ("y", "m", "d", "mon") if g.get(name)
    )
    pieces, position = [], match.start()
    for start, end, part in parts:
        pieces += [match.string[position:start], part]
        position = end
    pieces.append(match.string[position : match.end()])
    text = "".join(pieces)
    if g.get("ord"):
        text = re.sub(r"(\d{1,2})(st|nd|rd|th)", lambda m: m.group(1) + ordinal_suffix(int(m.group(1))), text, count=1)
    return text


def render_part(name: str, old: str, new: dt.date, padded: bool = False) -> str:
    if name == "y":
        return f"{new.year % 100:02d}" if len(old) == 2 else str(new.year)
    if name == "m":
        return f"{new.month:02d}" if len(old) == 2 else str(new.month)
    if name == "d":
        return f"{new.day:02d}" if len(old) == 2 and (padded or old.startswith("0")) else str(new.day)
    full = calendar.month_name[new.month]
    abbr = "Sept" if new.month == 9 and old.lower().startswith("sept") else calendar.month_abbr[new.month]
    return match_case(old, full if len(old.rstrip(".")) > 4 or old.lower() in ("june", "july") else abbr)


def ordinal_suffix(day: int) -> str:
    return "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
