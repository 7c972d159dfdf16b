"""PHI rules for general, non-templated text: international phones, addresses, postal codes, countries, date-times.

The clinical rules (medcore.phi.recognizers) anchor on note conventions; these cover how the same identifiers
are written elsewhere (referral letters, patient e-mail, free-text forms): E.164/NANP/European phone shapes,
house-number-last street addresses, unit and military (PSC/APO) addresses, and times or weekdays tied to a date.
"""

from __future__ import annotations

from medcore.phi.config import Lexicon
from medcore.phi.recognizers import (
    CAP,
    DAY,
    MON,
    MONTH,
    YEAR,
    ClinicalRecognizer,
    Rule,
    has_digit,
    words_alternation,
)

WEEKDAY = r"(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)(?:day|\.)?|(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
TIME = r"(?:[01]?\d|2[0-3])[:.h][0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:[ \t]*(?i:[ap]\.?m\.?))?(?:[ \t]*(?:Z|[+\-]\d\d:?\d\d|UTC|GMT))?"
DATE = rf"(?:{YEAR}-{MON}-{DAY}|{MON}([/\-.]){DAY}\1(?:{YEAR}|\d\d)|{DAY}[ \t]+{MONTH}[ \t,]+{YEAR}|{MONTH}[ \t]+{DAY},?[ \t]+{YEAR})"
# Phone digit groups: "0490 75 40 81", "(08) 8747 6301", "+46 (0)8 928 571 38", "01.84.17.61.18", "x769" extension.
GROUPS = r"(?:\(\d{1,4}\)[ \t.\-]?)?\d{1,5}(?:[ \t.\-](?:\(0\)[ \t]?)?\d{1,5}){1,5}"
EXTENSION = r"(?:[ \t]*(?:x|ext\.?|extension)[ \t]*\d{1,5})?"
PHONE_CUES = (
    r"phone|tel|telephone|cell|cellphone|mobile|mob|desk|office|fax|home|work|landline|whatsapp|"
    r"call(?:ed)?[ \t]+(?:me|us|him|her|them)?[ \t]*(?:on|at)|reach(?:ed)?[ \t]+(?:me|us|him|her|them)?[ \t]*(?:on|at)|"
    r"text(?:ed)?[ \t]+(?:me|us|him|her|them)?[ \t]*(?:on|at)|answering[ \t]+at|number[ \t]+is|registered"
)
PHONE_LABELS = r"office|fax|mobile|desk|home|work|cell"
UNIT = r"(?:Apt\.?|Apartment|Suite|Ste\.?|Flat|Unit|Room|Rm\.?)"
ADDRESS_CUES = (
    r"(?<!\bwill[ \t])(?<!\bto[ \t])(?<!\bcan[ \t])(?<!\bshould[ \t])(?<!\bmust[ \t])address(?:[ \t]+is)?|lives[ \t]+(?:at|on)|living[ \t]+at|resides[ \t]+at|moved[ \t]+to|located[ \t]+at|"
    r"send[ \t]+(?:it|this|them|a[ \t]+new[ \t]+one)?[ \t]*to|deliver(?:ed)?[ \t]+to|ship(?:ped)?[ \t]+to|mail(?:ed)?[ \t]+to|"
    r"meet[ \t]+(?:me|us)[ \t]+at|drops?[ \t]+you[ \t]+off[ \t]+at|arrived[ \t]+at|stop[ \t]+at|enter[ \t]+on|"
    r"it's[ \t]+in|is[ \t]+at|at[ \t]+the[ \t]+corner[ \t]+of|corner[ \t]+of"
)
# A street word: capitalised, possibly non-ASCII ("Søndergade", "Erzsébet"), or a short particle ("tér", "u.").
STREET_WORD = r"(?:[^\W\d_][\w'\-]*\.?)"
SEP = r"(?:[ \t]*\n[ \t]*|[ \t]+)"  # address parts are split by spaces or (in letter headers) one line break
PLACE_WORD = r"(?:[^\W\d_a-z][\w'\-]*\.?)"  # capitalised or upper-case, any script: "SEINÄJOKI", "Brønderslev"


def has_enough_digits(text: str) -> bool:
    """7-15 digits: shorter runs are scores and doses, longer ones card or account numbers."""
    digits = sum(c.isdigit() for c in text)
    return 7 <= digits <= 15


def phone_rules() -> list[Rule]:
    return [
        # E.164 with a country code: "+44 20 7946 0958", "+46 (0)8 928 571 38", "+1-984-182-0190".
        Rule(
            "phone_international",
            "PHONE",
            rf"(?<![\w+])(?:\+|00(?=[1-9]))\d{{1,3}}[ \t.\-]?(?:\(0\)[ \t]?)?\d{{1,5}}(?:[ \t.\-]?\d{{2,5}}){{1,4}}{EXTENSION}(?!\w)",
            0.9,
            0,
            has_enough_digits,
        ),
        # NANP with an extension or a glued area code: "(898)666-3621x0135", "259.735.7502x459", "001-518-640-0854".
        Rule(
            "phone_nanp_extension",
            "PHONE",
            r"(?<![\w+])(?:001[ \t.\-])?(?:\([2-9]\d{2}\)|[2-9]\d{2}[.\-])[ \t]?\d{3}[.\-]\d{4}"
            r"(?:[ \t]*(?:x|ext\.?)[ \t]*\d{1,5})?(?!\w)",
            0.9,
        ),
        # European trunk-prefixed numbers: "0490 75 40 81", "01.84.17.61.18", "07700 063 966", "(08) 8747 6301".
        Rule(
            "phone_trunk",
            "PHONE",
            r"(?<![\w+./\-])(?:\(0\d{1,4}\)[ \t]?\d{2,4}|0\d{1,4})(?:[ \t.\-]\d{2,4}){2,4}(?![\w/]|[.\-]\d)",
            0.9,
            0,
            has_enough_digits,
        ),
        # After a cue word, any grouped number of 7-15 digits: "Phone: 467 3395", "call me on 9472 7916".
        Rule(
            "phone_cue_groups",
            "PHONE",
            rf"\b(?i:{PHONE_CUES})\b[ \t]*(?::|-|\#|no\.?|number)?[ \t]*(?P<phi>\+?{GROUPS}{EXTENSION})(?![\w/]|[.\-]\d)",
            0.9,
            0,
            has_enough_digits,
        ),
        # A label after the number: "082 490 1693-Office", "781 1704 office", "+1-984-182-0190 mobile".
        Rule(
            "phone_label_after",
            "PHONE",
            rf"(?<![\w+./\-])(?P<phi>\+?{GROUPS}{EXTENSION})(?:-|[ \t]+)(?i:{PHONE_LABELS})\b",
            0.9,
            0,
            has_enough_digits,
        ),
    ]


def address_rules(lex: Lexicon) -> list[Rule]:
    countries = words_alternation(lex.countries)
    return [
        # Apartment and suite designators: "Apt. 485", "Suite 838", "Flat 2B".
        Rule("unit_number", "STREET", rf"\b(?P<phi>{UNIT}[ \t]*#?[ \t]*\d{{1,5}}[A-Z]?)\b", 0.9, 0, has_digit),
        Rule("po_box", "STREET", r"\b(?i:P\.?[ \t]?O\.?[ \t]*Box|Post[ \t]+Office[ \t]+Box)[ \t]+\d{1,6}\b", 0.95),
        # US military addresses (USPS Pub. 28): "PSC 6293, Box 8158 APO AP 04336", "Unit 1009 Box 0219 DPO AP 51065".
        Rule(
            "military_address",
            "STREET",
            r"\b(?i:(?:PSC|Unit|CMR)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{3,5}|USNS[ \t]+[A-Z][a-z]+|USS[ \t]+[A-Z][a-z]+)"
            r"(?:,?[ \t]+(?i:APO|FPO|DPO)[ \t]+(?i:AA|AE|AP)[ \t]+\d{5})?",
            0.95,
        ),
        Rule("military_post", "STREET", r"\b(?i:APO|FPO|DPO)[ \t]+(?i:AA|AE|AP)[ \t]+\d{5}\b", 0.95),
        # House number after the street name, anchored on a cue or a following unit: "Koskikatu 25 Apt. 864".
        Rule(
            "street_number_last",
            "STREET",
            rf"\b(?i:{ADDRESS_CUES})[ \t:]+(?P<phi>(?:\d{{1,6}}[ \t]+)?(?:\d{{1,6}}[ \t]+)?"
            rf"{STREET_WORD}(?:[ \t]+{STREET_WORD}){{0,3}}[ \t]+\d{{1,5}}[A-Za-z]?\b\.?)",
            0.85,
        ),
        Rule(
            "street_before_unit",
            "STREET",
            rf"(?P<phi>\b\d{{1,6}}{SEP}(?:\d{{1,6}}[ \t]+)?{STREET_WORD}(?:[ \t]+{STREET_WORD}){{0,3}}"
            rf"(?:[ \t]+\d{{1,5}}[A-Za-z]?\.?)?)(?=,?{SEP}{UNIT}[ \t]*#?[ \t]*\d)",
            0.85,
        ),
        # The town after a unit line: "Suite 321  LONDON", "Apt. 762\n Egilsstadir".
        Rule(
            "city_after_unit",
            "CITY",
            rf"\b{UNIT}[ \t]*#?[ \t]*\d{{1,5}}[A-Z]?,?{SEP}(?P<phi>{PLACE_WORD}(?:[ \t]{PLACE_WORD}){{0,2}})",
            0.85,
        ),
        # Town, region code and postal code outside the US: "Hellendoorn, OV 21072", "St Georges, QC 54256".
        Rule(
            "city_region_postcode",
            "CITY",
            rf"(?P<CITY>{PLACE_WORD}(?:[ \t]{PLACE_WORD}){{0,2}})[ \t]*,[ \t]*(?P<STATE>[A-Z]{{2}})[ \t]+(?P<ZIP>\d{{4,6}})\b",
            0.9,
        ),
        # A country with its postal code after it: "Finland 80896", "New Zealand 34694".
        Rule("country_postcode", "ZIP", rf"\b(?:{countries})[ \t]+(?P<phi>\d{{4,6}})\b", 0.9),
        Rule("country", "COUNTRY", rf"\b{countries}(?![\w'])", 0.9),
        # Postal codes after a cue, in any national shape: "ZIP: 7412 SL", "zip code is 2371", "75534-030".
        Rule(
            "postal_cue",
            "ZIP",
            r"\b(?i:zip(?:[ \t]*code)?|post(?:al)?[ \t]*code|postcode)[ \t]*(?::|is)?[ \t]*"
            r"(?P<phi>\d{3,6}(?:[ \-]\d{2,4})?(?:[ \t][A-Z]{2}\b)?|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2})\b",
            0.9,
        ),
    ]


def datetime_rules() -> list[Rule]:
    return [
        # A time of day tied to a date, either order: "2018-01-14 03:07:43", "03/14/2023 at 2:30 pm".
        Rule(
            "date_with_time",
            "DATE",
            rf"\b(?:{DATE})(?:T|,?[ \t]+(?:at[ \t]+)?){TIME}(?!\d)|\b{TIME}(?:,?[ \t]+(?:on[ \t]+)?)(?:{DATE})\b",
            0.95,
        ),
        # A weekday tied to a date: "Monday, March 3", "Tue 14/03/2023", "Friday the 5th".
        Rule(
            "weekday_date",
            "DATE",
            rf"\b(?:{WEEKDAY}),?[ \t]+(?:the[ \t]+)?(?:{DATE}|{MONTH}[ \t]+{DAY}\b|{DAY}(?:st|nd|rd|th)?[ \t]+{MONTH}|"
            rf"{MON}/{DAY}\b|{DAY}(?:st|nd|rd|th)\b)",
            0.95,
        ),
    ]


def name_rules(lex: Lexicon) -> list[Rule]:
    """Self-introductions and speaker turns common in messages and transcripts."""
    return [
        Rule(
            "name_self_intro",
            "PERSON",
            rf"\b(?i:my[ \t]+name[ \t]+is|name[ \t]+on[ \t]+the[ \t]+\w+[?]?[ \t]*(?:user:)?)"
            rf"[ \t]+(?P<phi>{CAP}(?:[ \t]+(?:{CAP}|[A-Z]\.?(?!\w))){{0,2}})",
            0.85,
        ),
    ]


def build_general_recognizers(lex: Lexicon) -> list[ClinicalRecognizer]:
    """The general-text recognizers, registered beside the clinical ones."""
    rules = phone_rules() + address_rules(lex) + datetime_rules() + name_rules(lex)
    return [ClinicalRecognizer("GeneralTextRecognizer", rules)]
