"""Clinical context that vetoes a PHI guess: vital signs, doses, volumes, lab values, scores and times are not dates,
and clinical vocabulary is not a person or a place. ALL-CAPS is a register, not a signal, so nothing here looks at case.

These filters apply to guesses (the tagger's and shape-only rules'); a cue word or an unambiguous format
(`Dr.`, a full date, a phone number) outranks them, which is decided in medcore.phi.ensemble.
"""

from __future__ import annotations

import functools
import itertools
import re

from medcore.phi.config import DEFAULT_LEXICON, AllowList, load_lexicon

UNITS = (
    r"cc|ml|l|mg|mcg|ug|g|gm|kg|lb|lbs|oz|units?|u|meq|mmol|mmhg|cm|mm|cmh2o|mcg/kg/min|mcg/min|mg/hr|mg/h|"
    r"units?/hr|u/hr|cc/hr|ml/hr|cc/h|ml/h|l/min|lpm|bpm|%|hrs?|h|min|mins|sec|x|gtt|mg/dl|mmol/l|k"
)
# A span made only of a measurement: "10cc", "80s", "80's", "x2", "1:1", "90-110", "40 MG", "2a", "0800", "100%".
MEASURE = re.compile(
    rf"(?ix)"
    rf"(?:[<>~]?\d+(?:\.\d+)?\s*(?:{UNITS})(?![a-z]))"  # a number with a unit
    r"|(?:\d0'?s)"  # decades of a vital sign: 80s, 90's
    r"|(?:x\s?\d+)"  # times: x2
    r"|(?:\d+:\d+)"  # ratios and IABP settings: 1:1, 1:2
    r"|(?:\d{1,2}(?::\d\d)?\s?(?:a|p|am|pm))"  # clock times: 2a, 10pm
    r"|(?:\d{3,4}\s?(?:a|p|am|pm))"  # and 515PM, 1030am
    r"|(?:\d{1,2}:\d\d(?:\s?-\s?\d{1,2}:\d\d)?)"  # clock times and spans of them: 10:25 - 10:35
    r"|(?:[0-2]\d[0-5]\d)"  # 24-hour clock: 0800, 1600
    r"|(?:[0-2]\d[0-5]\d\s?-\s?[0-2]\d[0-5]\d)"  # a shift: 1900-0700, 0330 - 0630
    r"|(?:\d{1,4}\s?(?:noon|midnight|mn))"  # 12noon, 1200noon
    r"|(?:\d+(?:\.\d+)?)"  # a bare number
    r"|(?:\d+(?:\.\d+)?\s?-\s?\d+(?:\.\d+)?\s*(?:" + UNITS + r"))"  # a range with a unit: 30-50cc (not 10-3)
)
# A measurement's cue right before a span: "HR 80", "SBP 90-110", "TMAX 101.2", "K 3.6", "UO 30".
VITAL_CUE = re.compile(
    r"(?ix)\b(?:hr|bp|sbp|dbp|map|maps|rr|resp|t|tmax|temp|spo2|sao2|o2\s?sat|sats?|cvp|pap|pcwp|ci|co|svr|uo|u/o|"
    r"i/o|peep|tv|vt|fio2|ps|psv|ip|ipap|epap|cpap|bipap|simv|imv|ac|vent|ventilation|plateau|settings|"
    r"k|na|cl|hco3|bun|cr|creat|hct|hgb|inr|ptt|wbc|plt|glu|glucose|fs|fsbs|bs|lactate|"
    r"mg|ca|phos|abg|ph|pco2|po2|cpk|ck|trop|ast|alt|gcs|rass|cpot|scale|score|grade|strength|apgar|pain|dose|rate|pa|pcw|pad|ra|rv|@|x)\s*[:=(]?\s*$"
)
DIGITS_ONLY = re.compile(r"[\d\s./:\-]+")
# A time after "at" or "@": "CK DRAWN AT 1515", "@ 0800".
CLOCK_AFTER_AT = re.compile(r"(?i)(?:\bat|@)\s*$")
CLOCK = re.compile(r"(?:[01]\d|2[0-3])[0-5]\d")
# What follows a fraction that is a dose, score or grade: "1/4 NS", "5/5 strength", "2/6 SEM", "7/10 pain".
MEASURE_AFTER = re.compile(
    r"(?i)\s*(?:ns|nss|strength|str|power|motor|grip|tab|tabs|amp|amps|cc|ml|mg|pain|murmur|sem|hsm|dm|"
    r"systolic|diastolic|holosystolic|bilat|b/l|bue|ble|rue|lue|rle|lle|throughout|x\s?\d|"
    r"l|lpm|liters?|nc|np|units?|u|mcg|hrs?|hours?|days?|min|mins|minutes?|times|"
    r"cp|on\s+pain|way|rate|gallons?|bottles?|assist|pillows?|peep|psv|ps|cpap|bipap|fio2|imv|simv)\b"
    r"|\s*%"  # vent and oxygen settings: "5/30%"
)
# A ventilator mode or setting right before: "PSV of 15/5", "BIPAP 10/5", "PS - 5/5", "settings of 15/5".
VENT_BEFORE = re.compile(
    r"(?i)\b(?:psv|ps|ips|cpap|bipap|peep|a/c|ac|imv|simv|prvc|vent|settings?)\b[\s,:/\-]*"
    r"(?:(?:of|to|at|on|down|back|from|with|via|is|was|now|currently|remains)\s+)*$"
)
# A pain score: "CP 4/10", "chest pressure 6/10", "discomfort #4/10" (ten is the scale, not October's day).
PAIN_SCORE = re.compile(r"\d{1,2}\s?[/-]\s?10")
PAIN_BEFORE = re.compile(r"(?i)(?:\b(?:pain|cp|discomfort|pressure|ache|aching)\b[^.\n]{0,24}|#\s*)$")
SLASH_CHAIN = re.compile(r"[\d.]+(?:[/\-][\d.]*)+")
# Before a fraction that is a quantity: a mixed number "1 1/2", "upper 1/3", "q 1/2", "~ 1/3", vent "50% 5/5".
QUANTITY_BEFORE = re.compile(r"(?i)(?:\b\d+|\b(?:upper|lower|mid|middle|q|about|approx|over|under)|[~%])\s*$")
# After a fraction that is a quantity: "1/3 of", "1/2-1 hrs", "1/3 up".
QUANTITY_AFTER = re.compile(r"(?i)(?:\s+(?:of|up|down)\b|-\d)")
WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
LATERALITY = {"l", "r", "lt", "rt"}
VOCABULARY = "clinical vocabulary"
# Words beside a name that are not part of it: titles, roles, relatives by role, and what the notes say of
# them ("DR JONES AWARE", "DTR PHILOMENA", "s. roberto rrt").
NAME_EDGE_WORDS = frozenset(
    "dr doctor mr mrs ms miss prof md rn np pa rrt ho do pt dtr daughter son wife husband mother father sister "
    "brother neice niece nephew proxy hcp aware notified updated informed paged called".split()
)


# Words at a place's edge that name no place: what kind of place it is ("Kernan hospital", "Baltimore Rehab",
# "Carpenter Assisted living"), the joining words and a unit's number ("Quartermain 2"). Inside a name they stay
# ("U OF MD"); at its edge they identify no one, and the text keeps its sense: "[LOCATION] hospital".
LOCATION_EDGE_WORDS = frozenset(
    "hospital hospitals hosp hsp rehab rehabilitation center centre ctr cntr medical med clinic clinics facility "
    "house home nursing assisted living campus area ward unit floor the of at in on with and to from".split()
)
UNIT_NUMBER = re.compile(r"\d")  # "Quartermain 2"; longer numbers may be a house number ("Villacher Strasse 89")


PERSONAL_TITLE = re.compile(r"(?i)\b(?:dr|doctor|mr|mrs|ms|miss|mx|prof|professor)\.?\s*$")


def after_title(text: str, start: int) -> bool:
    """A personal title right before: "DR R. SMITH" has an initial, not a side; "Dr. Bell" is a person."""
    return bool(PERSONAL_TITLE.search(text[max(0, start - 12) : start]))


def span_words(value: str) -> list[str]:
    """The span's words, lower case, edge punctuation stripped (how vocabulary and stop-word checks see them)."""
    words = [w.strip(".,;:'()").lower() for w in value.split()]
    return [w for w in words if w]


@functools.lru_cache(maxsize=4096)
def is_name_edge_word(word: str) -> bool:
    """A title, role, relative or status word (NAME_EDGE_WORDS), or one letter from a long one ("notifed")."""
    return word in NAME_EDGE_WORDS or any(len(edge) >= 6 and one_edit_apart(word, edge) for edge in NAME_EDGE_WORDS)


def is_location_edge_word(word: str, number: bool = True) -> bool:
    """A kind of place or a joining word at a place's edge (LOCATION_EDGE_WORDS), or (number) a unit's number."""
    return word in LOCATION_EDGE_WORDS or (number and bool(UNIT_NUMBER.fullmatch(word)))


def is_misspelt_vocabulary(value: str, allow: AllowList) -> bool:
    """Every word is clinical vocabulary, written correctly or misspelt ("amiodaronee", "DUCOLAX", "patinet").

    A misspelling is one edit (a letter added, dropped, changed, or two swapped) from a vocabulary word of 6 or more
    letters, or two edits from one of 8 or more, with the same first letter: nurses type fast, and a misspelt drug
    is no more a person than the drug.
    """
    words = [w for w in span_words(value) if not w.isdigit()]
    return bool(words) and all(w in allow.vocabulary or near_vocabulary_word(w, allow.vocabulary) for w in words)


@functools.lru_cache(maxsize=8192)
def near_vocabulary_word(word: str, vocabulary: frozenset[str]) -> bool:
    if len(word) < 6 or not word.isalpha():
        return False
    index = deletion_index(vocabulary)
    candidates = set().union(*(index.get(key, ()) for key in deletions(word, 2 if len(word) >= 8 else 1)))
    return any(
        known[0] == word[0] and edit_distance(word, known) <= allowed_edits(word, known) for known in candidates
    )


def allowed_edits(word: str, known: str) -> int:
    return 2 if min(len(word), len(known)) >= 8 else 1


@functools.lru_cache(maxsize=4)
def deletion_index(vocabulary: frozenset[str]) -> dict[str, frozenset[str]]:
    """Each string reached by deleting up to two letters of a vocabulary word (6+ letters), to the words it came from.
    Two words within two edits share such a string, so a lookup replaces a scan of the whole vocabulary."""
    index: dict[str, set[str]] = {}
    for known in vocabulary:
        if len(known) >= 6 and known.isalpha():
            for key in deletions(known, 2 if len(known) >= 8 else 1):
                index.setdefault(key, set()).add(known)
    return {key: frozenset(words) for key, words in index.items()}


def deletions(word: str, depth: int) -> set[str]:
    found, frontier = {word}, {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


def edit_distance(a: str, b: str) -> int:
    """Letters added, dropped or changed, and neighbours swapped (optimal string alignment distance)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def one_edit_apart(a: str, b: str) -> bool:
    """One letter inserted, dropped, changed, or two neighbours swapped."""
    return abs(len(a) - len(b)) <= 1 and edit_distance(a, b) == 1


def is_lone_letter(text: str, start: int, end: int) -> bool:
    """ "L rad aline", "MAE X 4", "D/W team": one letter with no period, so not an initial ("W. Marotta")."""
    return end - start == 1 and text[start].isalpha() and not text.startswith(".", end)


def is_measure(value: str) -> bool:
    """The whole span is a measurement, a time or a bare number (never PHI on its own)."""
    return bool(MEASURE.fullmatch(value.strip()))


def follows_vital_cue(text: str, start: int) -> bool:
    """A number right after a vital-sign or lab cue on the same line ("HR 80", "SBP 90-110") is a measurement."""
    line_start = text.rfind("\n", 0, start) + 1
    return bool(VITAL_CUE.search(text[max(line_start, start - 16) : start]))


def is_clinical_vocabulary(value: str, allow: AllowList) -> bool:
    """Every word is a clinical term or eponym/drug name ("CARDIAC", "NEO", "Abd", "Foley", "Rate 22")."""
    words = [w for w in span_words(value) if not w.isdigit()]
    return bool(words) and all(w in allow.vocabulary for w in words)


def is_relative_time(value: str, allow: AllowList) -> bool:
    """A weekday, a duration, "last", "tonight", a year: not a Safe Harbor date element on its own."""
    words = [w.strip(".,;:'()") for w in value.split()]
    words = [w for w in words if w]
    if not words or any(any(c.isdigit() for c in w) and "/" in w for w in words):
        return False
    relative = {"last", "next", "this", "past", "prior", "previous", "early", "late", "eve", "evening", "night"}
    return all(
        w.lower() in WEEKDAYS | relative
        or w.lower() in allow.common_words
        or any(p.fullmatch(w) for p in allow.compiled)
        for w in words
    )


@functools.lru_cache(maxsize=1)
def states_and_countries() -> frozenset[str]:
    lexicon = load_lexicon(DEFAULT_LEXICON)
    extra = ["europe", "asia", "africa", "america", "usa", "us", "u.s.", "uk", "canada", "mexico"]
    return frozenset(w.lower() for w in [*lexicon.states, *lexicon.countries, *extra])


def is_state_or_country(value: str) -> bool:
    return value.strip(" .,").lower() in states_and_countries()


def slash_chain(text: str, start: int, end: int) -> str:
    """The whole run of slash- or hyphen-separated numbers around a span ("7.42/56/96" around "56/96")."""
    left = start
    while left > 0 and (text[left - 1].isdigit() or text[left - 1] in "./-"):
        left -= 1
    right = end
    while right < len(text) and (text[right].isdigit() or text[right] in "./-"):
        right += 1
    match = SLASH_CHAIN.search(text, left, right)
    return match.group() if match else text[start:end]


def is_lab_chain(text: str, start: int, end: int) -> bool:
    """Blood gases ("7.34/73/201", "7.37-49-247"), not dates or ids: a decimal among slash-separated numbers.
    (Four plain numbers may be two dates: "10/03/10/04".)"""
    chain = slash_chain(text, start, end)
    numbers = [n for n in re.split(r"[/\-]", chain) if n]
    return len(numbers) >= 2 and any(DECIMAL.search(n) for n in numbers)


DECIMAL = re.compile(r"\d\.\d|^\.\d")  # 7.42, and FiO2 written .40


def could_be_date(value: str) -> bool:
    """Some neighbouring pair of the numbers is a month and day (either order) or a month and year: "106-114",
    "88/51" and "34/24" are not dates; "10/5", "24/06", "12/82" and "2017-08-16" may be. (A single number is
    judged elsewhere.)"""
    numbers = re.findall(r"\d+", value)
    if len(numbers) < 2:
        return True
    return any(month_and_day(int(a), int(b)) or month_and_year(int(a), b) for a, b in itertools.pairwise(numbers))


def month_and_day(a: int, b: int) -> bool:
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= a <= 31 and 1 <= b <= 12)


def month_and_year(month: int, year: str) -> bool:
    """ "12/82", "5/97", "1/2019": a month and a year (two digits above any day, or four)."""
    return 1 <= month <= 12 and (len(year) == 4 or (len(year) == 2 and int(year) > 31))


def is_proper_fraction(value: str) -> bool:
    """ "1/2", "2/3", "3/4": a quantity's shape. "10/16" after "approx" or "8/22" after a lab value is a date."""
    parts = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", value)
    return bool(parts) and 0 < int(parts[1]) < int(parts[2]) <= 8


def is_small_fraction(value: str) -> bool:
    """ "1/2", "1/3", "2/3", "1/4", "3/4": halves, thirds and quarters of a lung field, a dose or a bag."""
    parts = re.fullmatch(r"\s*(\d)\s*/\s*(\d)\s*", value)
    return bool(parts) and 0 < int(parts[1]) < int(parts[2]) <= 4


def is_ordinal_count(text: str, start: int, end: int, allow: AllowList) -> bool:
    """ "after 2nd cath", "placed on 1st step", "the 3rd cdiff": an ordinal that counts the thing after it."""
    if not ORDINAL.fullmatch(text[start:end].strip()):
        return False
    after = NEXT_WORD.match(text, end)
    if not after or MONTH_NAME.fullmatch(after[1]) or after[1].lower() in WEEKDAYS | {"am", "pm"}:
        return False  # "the 3rd Aug" ("aug" is also Augmentin), "the 2nd Monday", "the 5th am": a date
    return after[1].lower() in COUNTED or after[1].lower() in allow.vocabulary


ORDINAL = re.compile(r"(?i)\d{1,2}(?:st|nd|rd|th)")
NEXT_WORD = re.compile(r"[ \t]+([A-Za-z]+)")
MONTH_NAME = re.compile(
    r"(?i)jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|"
    r"nov(?:ember)?|dec(?:ember)?"
)
COUNTED = frozenset(
    "one ones step steps time times try attempt attempts set sets round rounds dose doses bag bags line".split()
)
DATE_CUE_BEFORE = re.compile(
    r"(?i)\b(?:on|since|until|till|from|by|dated?|of|for|before|after|booked|scheduled|planned|due)\s*$"
)


def vetoes_date(text: str, start: int, end: int) -> str | None:
    """Vetoes that hold even against a date rule's format: lab and vent chains, doses, vital-sign cues."""
    value = text[start:end]
    line_before = text[text.rfind("\n", 0, start) + 1 : start][-40:]
    if value[:1].isdigit() and VENT_BEFORE.search(line_before):
        return "ventilator settings"
    if is_small_fraction(value) and not DATE_CUE_BEFORE.search(line_before):
        return "a half, third or quarter (no date cue before it)"
    if not DIGITS_ONLY.fullmatch(value):
        return None
    if not could_be_date(value):
        return "no month and day among the numbers (a range or a blood pressure)"
    if follows_vital_cue(text, start):
        return "measurement after a vital-sign cue"
    if PAIN_SCORE.fullmatch(value.strip()) and (PAIN_BEFORE.search(line_before) or MEASURE_AFTER.match(text, end)):
        return "a pain score"
    if "/" in value and is_lab_chain(text, start, end):
        return "blood gas or ventilator settings"
    pair = "/" in value or "-" in value
    if pair and MEASURE_AFTER.match(text, end):
        return "a dose, score or grade"
    quantity = QUANTITY_BEFORE.search(text[max(0, start - 12) : start]) or QUANTITY_AFTER.match(text, end)
    if pair and quantity and (is_proper_fraction(value) or quantity.group().rstrip().endswith(("%", "~"))):
        return "a fraction or range"
    return None


def vetoes_guess(text: str, start: int, end: int, category: str, allow: AllowList) -> str | None:
    """Why clinical context rules a guessed span out (None when it does not): the documented list of vetoes."""
    value = text[start:end]
    if not any(c.isalnum() for c in value):
        return "no letter or digit"
    if category == "DATE" and (why := vetoes_date(text, start, end)):
        return why
    if CLOCK.fullmatch(value) and CLOCK_AFTER_AT.search(text[max(0, start - 8) : start]):
        return "a clock time"
    if category in ("NAME", "LOCATION") and value.lower().strip(".") in LATERALITY and not after_title(text, start):
        return "laterality (L, R)"
    if category in ("NAME", "LOCATION") and is_lone_letter(text, start, end) and not after_title(text, start):
        return "a lone letter that is no initial (no period after it)"
    if category in ("DATE", "ID", "CONTACT") and DIGITS_ONLY.fullmatch(value) and is_lab_chain(text, start, end):
        return "blood gas or ventilator settings"
    if category == "DATE" and is_relative_time(value, allow):
        return "a weekday, duration, relative day or year alone"
    if category == "LOCATION" and is_state_or_country(value):
        return "a state or country (Safe Harbor keeps them)"
    if (
        category in ("DATE", "AGE", "CONTACT", "ID")
        and DIGITS_ONLY.fullmatch(value)
        and follows_vital_cue(text, start)
    ):
        return "measurement after a vital-sign cue"
    if category in ("DATE", "NAME", "LOCATION") and is_measure(value):
        return "measurement, time or number"
    if category in ("NAME", "LOCATION", "PROFESSION") and is_clinical_vocabulary(value, allow):
        return VOCABULARY
    return None
