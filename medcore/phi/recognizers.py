"""Clinical PHI recognizers for Presidio: the 18 HIPAA identifiers as context-anchored regex rules.

Each rule yields one i2b2-2014 subtype (PATIENT, HOSPITAL, MEDICALRECORD, ...). A rule's regex may mark
the PHI part with a group named `phi` (so "MRN: 12345678" yields only the number), or with groups named
after subtypes ("Springfield, IL 62704" yields CITY, STATE and ZIP). Scores: 0.9+ for rules anchored on a
cue word or an unambiguous format, lower for shapes that need the allow-list's second opinion.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from medcore.phi.config import SUBTYPE_CATEGORY, Lexicon

ANCHORED = 0.9  # at or above: the allow-list does not override the detection (a cue word vouches for it)
TITLED = 0.95  # a title ("Dr.", "Mrs.") makes even an allow-listed word a name: "Dr. Bell"


@dataclass(frozen=True)
class Rule:
    name: str
    subtype: str
    regex: str
    score: float
    flags: int = 0
    validate: Callable[[str], bool] | None = None


def words_alternation(words: list[str]) -> str:
    """A regex alternation of `words`, longest first, with any run of spaces matching any whitespace."""
    escaped = (re.escape(w).replace(r"\ ", r"[ \t]+") for w in sorted(set(words), key=len, reverse=True))
    return "(?:" + "|".join(escaped) + ")"


def has_letter_and_digit(text: str) -> bool:
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


@functools.lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    """US given names (census-derived, as shipped in Faker's en_US person provider), lower-case."""
    from faker.providers.person.en_US import Provider

    return frozenset(n.lower() for n in (*Provider.first_names_female, *Provider.first_names_male))


@functools.lru_cache(maxsize=1)
def last_names() -> frozenset[str]:
    from faker.providers.person.en_US import Provider

    return frozenset(n.lower() for n in Provider.last_names)


def starts_with_first_name(text: str) -> bool:
    """A given name then a surname: "pt had small" is prose even though Small is a surname."""
    words = text.lower().split()
    return len(words) > 1 and words[0] in first_names() and words[-1] in last_names()


def has_digit(text: str) -> bool:
    return any(c.isdigit() for c in text)


class ClinicalRecognizer(EntityRecognizer):
    """A Presidio recognizer running a list of Rules; results carry the rule name as recognizer."""

    def __init__(self, name: str, rules: list[Rule]):
        self.rules = rules
        self.compiled = [(rule, re.compile(rule.regex, rule.flags)) for rule in rules]
        subtypes = sorted({rule.subtype for rule in rules})
        super().__init__(supported_entities=subtypes, name=name, supported_language="en")

    def load(self) -> None:  # patterns are compiled in __init__
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None):
        results: list[RecognizerResult] = []
        for rule, pattern in self.compiled:
            for match in pattern.finditer(text):
                for subtype, start, end in matched_parts(match, rule.subtype):
                    value = text[start:end]
                    if start == end or (rule.validate and not rule.validate(value)):
                        continue
                    results.append(
                        RecognizerResult(
                            subtype,
                            start,
                            end,
                            rule.score,
                            recognition_metadata={"recognizer_name": rule.name, "recognizer_identifier": self.id},
                        )
                    )
        return results


def matched_parts(match: re.Match, default_subtype: str) -> list[tuple[str, int, int]]:
    """(subtype, start, end) for each PHI part of a match: subtype-named groups, else `phi`, else the match."""
    named = {k: v for k, v in match.groupdict().items() if v is not None}
    parts = [(k, match.start(k), match.end(k)) for k in named if k in SUBTYPE_CATEGORY]
    if parts:
        return parts
    if "phi" in named:
        return [(default_subtype, match.start("phi"), match.end("phi"))]
    return [(default_subtype, match.start(), match.end())]


# Capitalised word (O'Neil, Smith-Jones, McDonald) and a name of 1-3 such words or initials.
CAP = r"[A-Z][a-z]*(?:['\-][A-Z]?[a-z]+)*[a-z]"
NAME = rf"(?:{CAP}|[A-Z]\.)(?: (?:{CAP}|[A-Z]\.)){{0,2}}"
MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
DAY = r"(?:0?[1-9]|[12]\d|3[01])"
MON = r"(?:0?[1-9]|1[0-2])"
YEAR = r"(?:19|20)\d\d"
ORD = r"(?:st|nd|rd|th)"
IDNO = r"(?:[ \t]*(?:number|num|no\.?|#|id)\b)?[ \t]*[:#]?[ \t]*(?:is[ \t]+)?"


def name_rules(lex: Lexicon) -> list[Rule]:
    titles, cues = words_alternation(lex.name_titles), words_alternation(lex.name_cues)
    followers = words_alternation(lex.name_followers)
    return [
        # The title as written or in lower case, never ALL CAPS: "MS. Verbal" is multiple sclerosis, "SR. No" a rhythm.
        Rule("title_name", "PERSON", rf"\b(?:{titles}|(?-i:{titles.lower()}))\.?[ \t]+(?P<phi>{NAME})", 0.95),
        # ALL-CAPS notes: "SPOKE WITH DR JONES". Plain words after the title ("DR AWARE") are vetoed downstream.
        Rule(
            "title_caps_name",
            "PERSON",
            r"\b(?:DR|MR|MRS|MS|MISS)\.?[ \t]+(?P<phi>(?:[A-Z]\.?[ \t]?)?[A-Z][A-Z'\-]*[A-Z]|[A-Z](?=\.))\b",
            0.95,
        ),
        Rule(
            "name_credentials",
            "DOCTOR",
            rf"(?P<phi>{CAP}(?: [A-Z]\.)?(?: {CAP}){{0,2}}),? (?:MD|M\.D\.|DO|RN|NP|PA-C|PhD|FNP|DNP)\b",
            0.95,
        ),
        Rule(
            "credential_username",
            "USERNAME",
            r"(?:\b(?:MD|DO|RN|NP|PA-C|PhD)|[A-Z][a-z]+),? \((?P<phi>[a-z][a-z0-9]*(?:[._][a-z0-9]+)*)\)",
            0.9,
        ),
        # A sign-off user name has a digit, dot or underscore: a bare lower-case word ending a line is prose.
        Rule(
            "signoff_username",
            "USERNAME",
            r"(?m)(?<=[a-z]\. )(?P<phi>[a-z]+(?:[0-9]+(?:[._][a-z0-9]+)*|(?:[._][a-z0-9]+)+))[ \t]*$",
            0.9,
        ),
        Rule("line_last_first", "PATIENT", rf"(?m)^(?P<phi>(?:{CAP}|[A-Z]{{2,}}), {CAP})(?= \||[ \t]*$|,)", 0.9),
        Rule("cue_name", "PERSON", rf"\b(?i:{cues})\b[ \t]*(?::|-|,|\bis\b|\bwas\b)?[ \t]*(?P<phi>{NAME})", 0.9),
        Rule(
            "last_first",
            "PATIENT",
            rf"\b(?i:name|patient|pt)[ \t]*:[ \t]*(?P<phi>(?:{CAP}|[A-Z]{{2,}}), {CAP}(?: [A-Z]\.?)?)",
            0.95,
        ),
        Rule(
            "name_aged",
            "PATIENT",
            rf"(?P<phi>{CAP}(?: {CAP})?)(?=, (?:an? )?(?:aged|age|\d{{1,3}}[- ]?(?:yo|y/o|year)))",
            0.9,
        ),
        Rule("name_line_field", "PERSON", rf"(?m)^(?P<phi>{NAME})(?= \| | / (?i:pager|bleep|ext))", 0.9),
        Rule(
            "name_signature",
            "DOCTOR",
            rf"(?i:sincerely|regards|wishes|respectfully),?[ \t]*\n+(?:Dr\.? )?(?P<phi>{NAME})[ \t]*$",
            0.9,
            re.M,
        ),
        Rule("name_dash_signature", "DOCTOR", rf"(?m)^--[ \t]*(?:Dr\.? )?(?P<phi>{NAME})", 0.9),
        Rule("name_by_end", "PERSON", rf"\bby (?P<phi>{NAME})(?=[.;]|$)", 0.85, re.M),
        Rule("name_re", "PATIENT", rf"\bRe:[ \t]*(?P<phi>(?:[A-Z]{{2,}}|{CAP}), {CAP}|{NAME})", 0.9),
        Rule(
            "name_before_id",
            "PATIENT",
            rf"(?P<phi>{NAME}|(?:[A-Z]{{2,}}|{CAP}), {CAP})(?: \(|,? )(?=MRN|MR\d|DOB|\d{{3}}-\d{{2}}-\d{{2}}\)|\d{{6,10}}\))",
            0.9,
        ),
        Rule(
            "lowercase_patient",
            "PATIENT",
            r"\b(?i:pt|patient)\b:?[ \t]+(?P<phi>[a-z]+ [a-z]+(?:-[a-z]+)?)",
            0.9,
            0,
            starts_with_first_name,
        ),
        Rule("name_followed", "PERSON", rf"(?P<phi>{CAP}(?: {CAP})?) (?={followers}\b)", 0.5),
        Rule(
            "username",
            "USERNAME",
            r"\b(?i:user(?:name)?|user[ \t]*id|userid|uid|signed[ \t]+in[ \t]+as|handle|login[ \t]*:)[ \t]*[:#]?[ \t]*(?:is[ \t]+)?"
            r"(?P<phi>[A-Za-z][\w.\-]*\w)",
            0.95,
        ),
    ]


def usps_street_suffixes() -> list[str]:
    """USPS Publication 28 street suffixes (Alley ... Wells), as shipped in Faker's en_US address provider."""
    from faker.providers.address.en_US import Provider

    return list(Provider.street_suffixes)


# Clinical abbreviations shaped like an abbreviated hospital: an outside hospital (OSH, not a name), bleeds,
# hypertrophies, pH, a nursing home.
NOT_A_HOSPITAL = r"(?!(?i:osh|ich|sah|sdh|edh|ivh|bph|lvh|rvh|pph|ph|oh|uh|ah|eh|nh|hh|dh|ash|doh)\b)"


def location_rules(lex: Lexicon) -> list[Rule]:
    hospital, org = words_alternation(lex.hospital_suffixes), words_alternation(lex.organization_suffixes)
    street = words_alternation(lex.street_suffixes + usps_street_suffixes())
    cues = words_alternation(lex.location_cues)
    states, codes = words_alternation(lex.states), "(?:" + "|".join(lex.state_codes) + ")"
    place = rf"{CAP}(?: {CAP}){{0,2}}"
    return [
        Rule("hospital", "HOSPITAL", rf"(?P<phi>(?:(?:St\.?|Saint) )?(?:{CAP}'s |{CAP} ){{1,3}}{hospital})\b", 0.9),
        # "transferred to GH", "from the VAMC", "GH EW": an abbreviated hospital (X Hospital, X Medical Center).
        Rule(
            "hospital_abbreviation",
            "HOSPITAL",
            r"(?:\b(?i:to|from|at|in|leave|left|via|into|enroute[ \t]+to)[ \t]+(?:(?i:the)[ \t]+)?)"
            rf"{NOT_A_HOSPITAL}(?P<phi>[A-Z]{{1,2}}H|[A-Z]{{1,3}}MC|[a-z]h)\b(?![\-/])"
            rf"|\b{NOT_A_HOSPITAL}(?P<HOSPITAL>[A-Z]{{1,2}}H|[A-Z]{{1,3}}MC)(?=[ \t]+(?:EW|ED|ER|TCU|ICU|CCU|MICU|SICU)\b)",
            0.9,
        ),
        Rule("organization", "ORGANIZATION", rf"(?P<phi>(?:{CAP} |& ){{1,3}}{org})\b\.?", 0.9),
        Rule(
            "ward",
            "HOSPITAL",
            rf"\b(?P<phi>(?:Ward|Unit|Pod) \d{{1,2}}[A-Z]?|{CAP} (?:Wing|Pavilion|Tower|Building))\b",
            0.9,
        ),
        Rule(
            "street",
            "STREET",
            rf"\b(?P<phi>\d{{1,6}} (?:[NSEW]\.? )?(?:{CAP} |\d+(?:st|nd|rd|th) ){{1,3}}{street}\b\.?"
            r"(?:,? (?:Apt\.?|Suite|Unit|#|Ste\.?) ?[\w\-]+)?)",
            0.9,
        ),
        Rule("ward_header", "HOSPITAL", rf"(?m)(?:^|- |, )(?P<phi>{CAP} \d{{1,2}}[A-Z]?)(?=,|[ \t]*$)", 0.8),
        Rule("room", "LOCATION", r"\b(?i:bed|room|rm|bay)[ \t]*#?[ \t]*(?P<phi>\d{1,4}[A-Z]?)\b", 0.9),
        Rule("city_state_zip", "CITY", rf"(?P<CITY>{place}), (?P<STATE>{codes}) (?P<ZIP>\d{{5}}(?:-\d{{4}})?)\b", 0.9),
        Rule(
            "city_state",
            "CITY",
            rf"(?P<CITY>{place}), (?P<STATE>{states})\b(?: (?P<ZIP>\d{{5}}(?:-\d{{4}})?)\b)?",
            0.9,
        ),
        Rule(
            "zip",
            "ZIP",
            rf"(?:\b{codes} |(?i:zip(?:[ \t]*code)?|postal[ \t]+code)[ \t]*:?[ \t]*)(?P<phi>\d{{5}}(?:-\d{{4}})?)\b",
            0.9,
        ),
        Rule("zip_plus4", "ZIP", r"\b\d{5}-\d{4}\b", 0.8),
        Rule("state", "STATE", rf"\b{states}\b", 0.7),
        Rule("cue_place", "LOCATION", rf"\b(?i:{cues}) (?:the )?(?P<phi>{place})", 0.6),
    ]


def date_rules(lex: Lexicon) -> list[Rule]:
    return [
        Rule("date_numeric", "DATE", rf"\b{MON}([/\-.]){DAY}\1(?:{YEAR}|\d\d)\b", 0.95),
        Rule("date_iso", "DATE", rf"\b{YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b", 0.95),
        Rule("date_day_month", "DATE", rf"\b{DAY}{ORD}?(?:[ \t]+of)?[ \t\-]{MONTH}(?:[ \t\-,]+{YEAR})?\b", 0.9),
        Rule("date_month_day", "DATE", rf"\b{MONTH}[ \t]+{DAY}{ORD}?\b(?:,?[ \t]+{YEAR}\b)?", 0.9),
        Rule("date_month_year", "DATE", rf"\b{MONTH}[ \t]+(?:of[ \t]+)?{YEAR}\b", 0.9),
        # "3/14" is a date after a cue word; bare, it may be a score or "2/7" (two days), so the allow-list decides.
        Rule("date_month_slash_day", "DATE", rf"(?<![\d/.])\b{MON}/{DAY}\b(?![/.]?\d)", 0.6),
        Rule(
            "date_cue_month_slash_day",
            "DATE",
            rf"\b(?i:on|for|since|until|till|from|dated?|seen|of|by|visit|admitted|admission|discharged?|due|before|"
            rf"after|performed|note)[ \t]*:?[ \t]+(?P<phi>{MON}/{DAY})\b(?![/.]?\d)",
            0.9,
        ),
        # "on 10-3", "since 8-30": a hyphenated month-day after a date cue ("on 2-4 L" is vetoed as a dose).
        Rule(
            "date_cue_month_dash_day",
            "DATE",
            rf"\b(?i:on|since|until|till|from|dated?|admitted|discharged?|done)[ \t]+(?P<phi>{MON}-{DAY})\b(?![\-/.]?\d)",
            0.9,
        ),
        Rule("date_line_month_slash_day", "DATE", rf"(?m)^(?P<phi>{MON}/{DAY})(?=[ \t]*$| [A-Z]{{3,}})", 0.9),
        Rule("date_after_name_month_slash_day", "DATE", rf"(?<=[a-z], )(?P<phi>{MON}/{DAY})(?=\.?(?:\s|$))", 0.9),
        Rule(
            "date_ordinal_day",
            "DATE",
            rf"\b(?i:on|the|since|until|by|from|before|after)[ \t]+(?:the[ \t]+)?(?P<phi>{DAY}{ORD})\b",
            0.9,
        ),
        Rule("holiday", "HOLIDAY", rf"\b{words_alternation(lex.holidays)}(?:,? {YEAR})?(?!\w)", 0.9),
    ]


def age_rules() -> list[Rule]:
    # Only ages over 89 are identifiers under Safe Harbor; younger ages stay in the text.
    over89 = r"(?:9\d|1[01]\d)"
    return [
        Rule(
            "age_years_old",
            "AGE",
            rf"\b(?P<phi>{over89})(?=[ \t]*-?[ \t]*(?:years?|yrs?|y)\.?[ \t\-]*(?:old|of[ \t]+age)|[ \t]*-?[ \t]*(?:yo|y/o|y\.o\.|yoM|yoF)\b)",
            0.95,
            re.I,  # ALL-CAPS notes: "94 YO MAN"
        ),
        Rule("age_cue", "AGE", rf"\b(?i:age|aged|age:)[ \t]*:?[ \t]*(?P<phi>{over89})\b", 0.95),
        Rule("age_sex", "AGE", rf"\b(?P<phi>{over89})[ \t]*(?:M|F|(?i:yo)[ \t]*[MF])\b", 0.9),
    ]


def contact_rules() -> list[Rule]:
    return [
        Rule(
            "phone",
            "PHONE",
            r"(?<![\w+])(?:\+1[ \t.\-]?)?(?:\([2-9]\d{2}\)[ \t]?|[2-9]\d{2}[ \t.\-])[2-9]\d{2}[ \t.\-]\d{4}(?!\w)"
            r"(?:[ \t]*(?i:x|ext\.?|extension)[ \t]*\d{1,5}\b)?",  # and its extension: "410 392 0780 x45"
            0.9,
        ),
        Rule(
            "phone_cue",
            "PHONE",
            r"\b(?i:phone|tel|telephone|cell|mobile|call(?:ed)?|contact\w*|reach(?:ed)?|fax|home|work)\b[^\n\d]{0,20}"
            r"(?P<phi>\b[2-9]\d{9})\b",
            0.9,
        ),
        Rule(
            "pager",
            "PAGER",
            r"\b(?i:pager|pgr|pg|beeper|bleep|paged?(?:[ \t]+at)?|pager[ \t]+number)[ \t]*[:#]?[ \t]*(?P<phi>#?\d-\d{4}|#?\d{4,5})\b",
            0.9,
        ),
        Rule("email", "EMAIL", r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}\b", 0.95),
        Rule("url", "URL", r"\b(?:https?://|www\.)[^\s<>\"')\]]*[^\s<>\"')\].,;:]", 0.95, re.IGNORECASE),
        Rule(
            "domain",
            "URL",
            r"\b[\w\-]+(?:\.[\w\-]+)*\.(?:com|org|net|edu|gov|io|us|info|biz)(?:/[^\s<>\"')\]]*[^\s<>\"')\].,;:])?\b",
            0.8,
            re.IGNORECASE,
        ),
        Rule("ip", "IPADDR", r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b", 0.9),
    ]


def id_rules() -> list[Rule]:
    anycase = r"[A-Za-z0-9][A-Za-z0-9\-]*"
    return [
        Rule("ssn", "SSN", r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b", 0.95),
        Rule(
            "ssn_cue",
            "SSN",
            rf"\b(?i:ssn|social[ \t]+security){IDNO}(?P<phi>\d{{3}}[ \t\-]?\d{{2}}[ \t\-]?\d{{4}})\b",
            0.95,
        ),
        Rule(
            "mrn_cue",
            "MEDICALRECORD",
            rf"\b(?i:mrn|mr|medical[ \t]+record|record|chart|hospital){IDNO}(?P<phi>[A-Z]{{0,3}}\d[\d\-]{{3,14}}\d)\b",
            0.95,
        ),
        Rule("mrn_prefix", "MEDICALRECORD", r"\bMR\d{6,8}\b", 0.9),
        Rule("mrn_shape", "MEDICALRECORD", r"\b\d{3}-\d{2}-\d{2}\b", 0.85),
        Rule(
            "healthplan_cue",
            "HEALTHPLAN",
            rf"\b(?i:member|insurance|health[ \t]*plan|policy|subscriber|medicaid|medicare|beneficiary|plan){IDNO}"
            rf"(?P<phi>{anycase}\d[A-Za-z0-9\-]*)",
            0.95,
            0,
            has_digit,
        ),
        Rule("healthplan_shape", "HEALTHPLAN", r"\b[A-Z]{3}\d{9}\b", 0.85),
        Rule(
            "account_cue",
            "ACCOUNT",
            rf"\b(?i:account|acct|billing|invoice|encounter|fin|claim){IDNO}(?P<phi>[A-Z]?\d[\d\-]{{4,15}}\d)\b",
            0.95,
        ),
        Rule(
            "license_cue",
            "LICENSE",
            rf"\b(?i:licen[sc]e|lic|npi|dea|certificate|cert|registration){IDNO}(?P<phi>[A-Z]{{0,2}}\d{{5,10}})\b",
            0.95,
        ),
        Rule(
            "device_cue",
            "DEVICE",
            rf"\b(?i:serial|s/n|sn|device|pacemaker|defibrillator|implant|model|lot|udi|icd|pump|stimulator){IDNO}"
            rf"(?P<phi>(?:[A-Z]{{2,4}}-\d{{4,10}}|\d{{4}}[A-Z]{{2}}\d{{4}}|[A-Z0-9]*\d[A-Z0-9\-]{{4,20}}))\b",
            0.95,
        ),
        Rule("device_shape", "DEVICE", r"\b[A-Z]{3}-\d{7}\b", 0.85),
        Rule("device_serial", "DEVICE", r"\bSN \d{4}[A-Z]{2}\d{4}\b", 0.9),
        Rule(
            "vehicle_cue",
            "VEHICLE",
            rf"\b(?i:plate|tag|vin|vehicle|car|truck|motorcycle|registration){IDNO}(?P<phi>[A-Z0-9]{{5,17}})\b",
            0.95,
            0,
            lambda v: has_letter_and_digit(v) or len(v) == 17,
        ),
        Rule("vin", "VEHICLE", r"\b[A-HJ-NPR-Z0-9]{17}\b", 0.85, 0, has_letter_and_digit),
        Rule("plate_shape", "VEHICLE", r"\b\d[A-Z]{3}\d{3}\b", 0.8),
        Rule("long_number", "IDNUM", r"(?<![\d.,/\-])\b\d{7,12}\b(?![.,/]\d)", 0.9),
        Rule("accession_shape", "IDNUM", r"\b[A-Z]\d{2}-\d{4,6}\b", 0.85),
        Rule(
            "id_cue",
            "IDNUM",
            rf"\b(?i:id|identifier|ident|accession|specimen|sample|requisition|order|no\.|#){IDNO}(?P<phi>[A-Z0-9\-]*\d[A-Z0-9\-]{{3,}})\b",
            0.9,
            0,
            has_digit,
        ),
    ]


def profession_rules(lex: Lexicon) -> list[Rule]:
    cues, jobs = words_alternation(lex.profession_cues), words_alternation(lex.professions)
    mods = r"(?:(?:an?|the|retired|former|part-time|full-time|self-employed|local|school|high[ \t]+school)[ \t]+)*"
    return [
        Rule("profession_cue", "PROFESSION", rf"\b(?i:{cues})[ \t]*:?[ \t]+{mods}(?P<phi>(?i:{jobs}))\b", 0.9),
        Rule(
            "profession_after_age",
            "PROFESSION",
            rf"\b\d{{1,3}}[- ](?:(?:year|yr)s?[- ]old|yo|y/o|y\.o\.) {mods}(?P<phi>(?i:{jobs}))\b",
            0.9,
        ),
        Rule(
            "profession_in_brackets",
            "PROFESSION",
            rf"(?:[A-Z][a-z]+|\b(?i:employer|job|occupation)[^\n(]{{0,40}}) \((?P<phi>(?i:{jobs}))\)",
            0.9,
        ),
    ]


def build_recognizers(lex: Lexicon) -> list[EntityRecognizer]:
    """All clinical recognizers, one per category, ready for a Presidio RecognizerRegistry."""
    return [
        ClinicalRecognizer("ClinicalNameRecognizer", name_rules(lex)),
        ClinicalRecognizer("ClinicalLocationRecognizer", location_rules(lex)),
        ClinicalRecognizer("ClinicalDateRecognizer", date_rules(lex)),
        ClinicalRecognizer("ClinicalAgeRecognizer", age_rules()),
        ClinicalRecognizer("ClinicalContactRecognizer", contact_rules()),
        ClinicalRecognizer("ClinicalIdRecognizer", id_rules()),
        ClinicalRecognizer("ClinicalProfessionRecognizer", profession_rules(lex)),
    ]
