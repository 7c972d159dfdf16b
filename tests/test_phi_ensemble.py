"""The decision rule (medcore.phi.ensemble) and clinical context vetoes (medcore.phi.context), without a tagger."""

from __future__ import annotations

import pytest

from medcore.phi.config import load_allowlist
from medcore.phi.context import is_measure, vetoes_guess
from medcore.phi.detect import Span
from medcore.phi.ensemble import TAGGER_NAME, TAGGER_SURE, combine_spans
from medcore.token_windows import CharSpan


@pytest.fixture(scope="module")
def allow():
    return load_allowlist()


def at(text: str, value: str, category: str, score: float) -> CharSpan:
    start = text.index(value)
    return CharSpan(start, start + len(value), category, score)


def values(text: str, spans: list[Span]) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.type) for s in spans]


@pytest.mark.parametrize(
    "value", ["10cc", "80s", "80'S", "x2", "1:1", "40 MG", "2a", "1600", "100%", "30-50CC", "101.2", "0800"]
)
def test_measurements_times_and_numbers_are_measures(value):
    assert is_measure(value)


@pytest.mark.parametrize("value", ["8/30", "10-3", "Jones", "GH", "10/7/20", "555-1234"])
def test_dates_names_and_phones_are_not_measures(value):
    assert not is_measure(value)


@pytest.mark.parametrize(
    "text,value",
    [("HR 80 SR NO VEA", "80"), ("SBP 90-110 ON NEO", "90-110"), ("TMAX 101.2", "101.2"), ("K 3.6, HCT 27", "3.6")],
)
def test_a_number_after_a_vital_sign_cue_is_not_a_date(text, value, allow):
    start = text.index(value)
    assert vetoes_guess(text, start, start + len(value), "DATE", allow) is not None


def test_a_date_after_a_word_is_not_vetoed(allow):
    text = "PT ADMITTED 8/30 FROM OSH"
    start = text.index("8/30")
    assert vetoes_guess(text, start, start + 4, "DATE", allow) is None


@pytest.mark.parametrize("word", ["CARDIAC", "AFEBRILE", "Foley", "NEO", "Lasix"])
def test_clinical_vocabulary_is_not_a_name_or_place(word, allow):
    text = f"PT {word} TODAY"
    start = text.index(word)
    assert vetoes_guess(text, start, start + len(word), "NAME", allow) is not None


def test_unsure_tagger_guesses_yield_to_context_and_sure_ones_do_not(allow):
    text = "PLAN: CONT NEO, SPOKE WITH DR JONES RE LASIX. HR 80S. SHE IS RESTING."
    guesses = [
        at(text, "NEO", "NAME", TAGGER_SURE + 0.05),  # clinical vocabulary: vetoed however sure the tagger is
        at(text, "JONES", "NAME", 0.6),  # a surname: kept
        at(text, "80S", "DATE", 0.8),  # a vital sign decade: vetoed
        at(text, "SHE", "NAME", 0.6),  # a stop word, unsure: vetoed
    ]
    found = values(text, combine_spans(text, [], guesses, allow))
    assert found == [("JONES", "NAME")]


def test_a_personal_title_vouches_for_an_eponym_but_not_for_caps_shorthand(allow):
    text = "Seen by Dr. Bell today. DR AWARE OF K 3.2."
    bell, aware = text.index("Bell"), text.index("AWARE")
    rules = [
        Span(bell, bell + 4, "NAME", 0.95, "title_name", "PERSON"),
        Span(aware, aware + 5, "NAME", 0.95, "title_caps_name", "PERSON"),
    ]
    assert values(text, combine_spans(text, rules, [], allow)) == [("Bell", "NAME")]


@pytest.mark.parametrize("text,value", [("Pain 5/10 at rest", "/10"), ("ABG 7.34/73/201 on AC", "73/201")])
def test_number_guesses_are_judged_whole(text, value, allow):
    assert combine_spans(text, [], [at(text, value, "DATE", 0.8)], allow) == []


def test_anchored_rules_are_kept_whatever_the_tagger_says(allow):
    text = "Call 617-555-0199 re: MRN 1234567."
    start = text.index("617")
    rule = Span(start, start + 12, "CONTACT", 0.95, "phone", "PHONE")
    assert values(text, combine_spans(text, [rule], [], allow)) == [("617-555-0199", "CONTACT")]


def test_ages_under_90_are_not_identifiers(allow):
    text = "74 YO WOMAN, MOTHER IS 96 YO"
    guesses = [at(text, "74", "AGE", 0.8), at(text, "96", "AGE", 0.8)]
    assert values(text, combine_spans(text, [], guesses, allow)) == [("96", "AGE")]


def test_a_name_found_once_is_found_everywhere_in_the_note(allow):
    text = "Mrs. Lomish resting. Lomish family called at 1600."
    guesses = [at(text, "Lomish", "NAME", 0.95)]
    found = values(text, combine_spans(text, [], guesses, allow))
    assert found.count(("Lomish", "NAME")) == 2


def test_years_from_the_tagger_are_not_redacted(allow):
    text = "CABG IN 1998"
    assert combine_spans(text, [], [at(text, "1998", "YEAR", 0.9)], allow) == []


def test_tagger_spans_keep_their_score_and_source(allow):
    text = "wife mary called"
    (span,) = combine_spans(text, [], [at(text, "mary", "NAME", 0.77)], allow)
    assert (span.recognizer, span.score, span.subtype) == (TAGGER_NAME, 0.77, "PERSON")


@pytest.mark.parametrize(
    "text,value",
    [
        ("sbp stable(106-114), no ectopy", "106-114"),  # no month and day among the numbers
        ("NBP 66-131/32-43. PT NOTED", "66-131/32-43"),
        ("BP DOWN TO 88/51 WHEN ASLEEP", "88/51"),
        ("Patient on PSV of 15/5, 30% t/o night", "15/5"),  # ventilator settings
        ("pt tried on nasal bipap, 10/5, unable to tolerate", "10/5"),
        ("@ 0400 Pt developed 4/10 CP", "4/10"),  # pain scores
        ("chest pressure 6/10. EKG ST elevations", "6/10"),
        ("A/C 700/12/.6/5 ABG PENDING", "700/12/.6/5"),  # FiO2 written .6
        ("ABG drawn revealed; 7.28-67-128. HO notified", "7.28-67-128"),
        ("CRACKLES 1/2 WAY UP", "1/2"),
        ("MICU NPN 0700-1930: Neuro", "0700-1930"),  # a shift
        ("family meeting at 1200noon tomorrow", "1200noon"),
    ],
)
def test_ranges_vent_settings_pain_scores_and_shifts_are_not_dates(text, value, allow):
    assert combine_spans(text, [], [at(text, value, "DATE", 0.8)], allow) == []


@pytest.mark.parametrize(
    "text,value",
    [
        ("MAINT DOSE STARTED APPROX 10/16 0930", "10/16"),  # "approx" quantifies fractions, not dates
        ("HAD ELEVATED WBC 16.0 8/22. AFEBRILE", "8/22"),
        ("s/p PTCA and stent to RCA 12/82. Reoccluded", "12/82"),  # a month and a year
        ("CABG 1/78 c/b sternal wound infection", "1/78"),
        ("Dates 24/06 and 11-13 stay dates", "11-13"),
    ],
)
def test_dates_beside_numbers_and_quantities_stay_dates(text, value, allow):
    assert values(text, combine_spans(text, [], [at(text, value, "DATE", 0.8)], allow)) == [(value, "DATE")]


@pytest.mark.parametrize("word", ["levoquin", "fentynal", "DTR", "neice", "CARAFATE", "nutritionist"])
def test_clinical_words_as_typed_and_relatives_by_role_are_not_names(word, allow):
    text = f"spoke to {word} today"
    start = text.index(word)
    assert vetoes_guess(text, start, start + len(word), "NAME", allow) is not None


@pytest.mark.parametrize("name", ["Marotta", "Turgeon", "Thomas", "Amber", "Philomena"])
def test_names_close_to_clinical_words_stay_names(name, allow):
    text = f"spoke to {name} today"
    start = text.index(name)
    assert vetoes_guess(text, start, start + len(name), "NAME", allow) is None


@pytest.mark.parametrize(
    "text,value,kept",
    [
        ("DISCUSSION WITH DTR PHILOMENA AND HER HUSBAND", "DTR PHILOMENA", "PHILOMENA"),  # a role, then a name
        ("CK 373. DR JONES AWARE.", "DR JONES AWARE", "JONES"),
        ("DR LAVELY NOTIFED AND", "DR LAVELY NOTIFED", "LAVELY"),  # a misspelt word too
        ("questions answered (Dr. Arthur Wilson) today", "Arthur Wilson", "Arthur Wilson"),
        ("Entered by Amber RN at the end of shift", "Amber RN", "Amber"),  # a name that is also a word
        ("AS PER W. MAROTTA. GU", "MAROTTA", "W. MAROTTA"),  # the initial belongs to the name
    ],
)
def test_names_lose_clinical_words_and_take_their_initials(text, value, kept, allow):
    assert values(text, combine_spans(text, [], [at(text, value, "NAME", 0.8)], allow)) == [(kept, "NAME")]


@pytest.mark.parametrize(
    "text,value",
    [
        ("Lives at 4819 Cynthia Village Apt. 953, Thompsonhaven", "4819 Cynthia Village Apt. 953"),
        ("lives alone in elderly housing at 19 Clover St. in Lansdowne", "19 Clover St"),  # the house number leads
        ("The bus station is on Villacher Strasse 89", "Villacher Strasse 89"),  # or trails, with more than a digit
        ("Springfield, IL 62704 is home", "Springfield, IL 62704"),
        ("moved to Ward 3 overnight", "Ward 3"),  # nothing but a kind of place and its number: kept whole
    ],
)
def test_addresses_keep_their_numbers(text, value, allow):
    assert values(text, combine_spans(text, [], [at(text, value, "LOCATION", 0.8)], allow)) == [(value, "LOCATION")]


@pytest.mark.parametrize(
    "text,value,kept",
    [
        ("Social: lives with wife, follow by Kernan hospital.", "Kernan hospital", "Kernan"),
        ("discharged to Baltimore Rehab at 1400", "Baltimore Rehab", "Baltimore"),
        ("transferred from Garcia Community Hospital on 8/19", "Garcia Community Hospital", "Garcia Community"),
        ("FROM UNIVERSITY OF MD MEDICAL CENTER. PATIENT", "UNIVERSITY OF MD MEDICAL CENTER", "UNIVERSITY OF MD"),
        ("He lives at Carpenter Assisted living with 24 hour aide", "Carpenter Assisted living with", "Carpenter"),
        ("PLAN: TRANSFER TO QUARTERMAIN 2 TODAY", "QUARTERMAIN 2", "QUARTERMAIN"),  # a unit's number
    ],
)
def test_places_lose_the_kind_of_place_and_a_units_number(text, value, kept, allow):
    assert values(text, combine_spans(text, [], [at(text, value, "LOCATION", 0.8)], allow)) == [(kept, "LOCATION")]


@pytest.mark.parametrize(
    "text,value", [("hpi: pt admitted to hosp on 8/16 after", "hosp"), ("went to the rehab", "rehab")]
)
def test_a_kind_of_place_alone_is_no_place(text, value, allow):
    assert combine_spans(text, [], [at(text, value, "LOCATION", 0.8)], allow) == []


@pytest.mark.parametrize(
    "text,value",
    [
        ("cv: remains on amiodaronee gtt at .5", "amiodaronee"),
        ("RESIDUALS HIGH. DUCOLAX SUPPOS GIVEN", "DUCOLAX"),
        ("DR KLEIN HAD TALKED TO THE PATINET YESTERDAY", "PATINET"),
        ("HO and attending aware. See flwosheet for details.", "flwosheet"),
        ("OXACILLIN D18 OF 42. AND AUGUMANTIN DAY8 OF 14.", "AUGUMANTIN"),  # two edits from a long word
    ],
)
def test_misspelt_clinical_words_are_not_names(text, value, allow):
    assert combine_spans(text, [], [at(text, value, "NAME", 0.8)], allow) == []


@pytest.mark.parametrize(
    "text,value",
    [
        ("spoke to Turgeon about the plan", "Turgeon"),  # one edit from "surgeon", another first letter
        ("spoke to Hanson about the plan", "Hanson"),
        ("spoke to Garrett about the plan", "Garrett"),
        ("spoke to Norman about the plan", "Norman"),  # one edit from "normal", and a known given name
        ("spoke to Marotta about the plan", "Marotta"),
    ],
)
def test_names_near_clinical_words_stay_names(text, value, allow):
    assert values(text, combine_spans(text, [], [at(text, value, "NAME", 0.8)], allow)) == [(value, "NAME")]


def test_a_sure_tagger_keeps_a_name_that_looks_misspelt(allow):
    text = "spoke with Amiodaronee about the drip"  # one edit from amiodarone
    assert values(text, combine_spans(text, [], [at(text, "Amiodaronee", "NAME", TAGGER_SURE)], allow)) == [
        ("Amiodaronee", "NAME")
    ]
    assert combine_spans(text, [], [at(text, "Amiodaronee", "NAME", 0.8)], allow) == []


def test_a_rules_name_is_not_judged_by_spelling(allow):
    text = "Norrmal reports fatigue"  # a weak rule's guess: only the tagger's unsure guesses are spell-checked
    rule = Span(0, 7, "NAME", 0.5, "name_followed", "PERSON")
    assert values(text, combine_spans(text, [rule], [], allow, tagger_on=False)) == [("Norrmal", "NAME")]


@pytest.mark.parametrize(
    "text,value",
    [
        ("Auscultated crackles up 1/2 from lung bases.", "1/2"),
        ("CONTINUE WITH EXP WHEEZE AND CX 1/3 RT>LEFT.", "1/3"),
        ("ivf d5 1/2 with 20kcl @ 100", "1/2"),
    ],
)
def test_halves_thirds_and_quarters_are_not_dates(text, value, allow):
    rule = Span(text.index(value), text.index(value) + len(value), "DATE", 0.9, "date_month_slash_day", "DATE")
    assert combine_spans(text, [rule], [at(text, value, "DATE", 0.8)], allow) == []


@pytest.mark.parametrize(
    "text,value",
    [("capsule endoscopy booked for 2/3. Discussed", "2/3"), ("Last seen on 1/2 in clinic", "1/2")],
)
def test_a_small_fraction_after_a_date_cue_is_a_date(text, value, allow):
    assert values(text, combine_spans(text, [], [at(text, value, "DATE", 0.8)], allow)) == [(value, "DATE")]


@pytest.mark.parametrize(
    "text,value", [("family went home after 2nd cath. md spoke", "2nd"), ("pt placed on 1st step today", "1st")]
)
def test_an_ordinal_that_counts_is_not_a_date(text, value, allow):
    rule = Span(text.index(value), text.index(value) + len(value), "DATE", 0.9, "date_ordinal_day", "DATE")
    assert combine_spans(text, [rule], [at(text, value, "DATE", 0.8)], allow) == []


@pytest.mark.parametrize(
    "text,value",
    [
        ("i'm at the hospital. it's the 11th.", "11th"),
        ("seen on the 3rd at noon", "3rd"),
        ("discharged on the 3rd Aug to rehab", "3rd"),  # "aug" is Augmentin in the vocabulary, and a month here
        ("follow up on the 2nd Monday", "2nd"),
    ],
)
def test_an_ordinal_day_stays_a_date(text, value, allow):
    rule = Span(text.index(value), text.index(value) + len(value), "DATE", 0.9, "date_ordinal_day", "DATE")
    assert values(text, combine_spans(text, [rule], [], allow)) == [(value, "DATE")]


def test_a_tagger_date_loses_the_clock_time_and_plain_words_beside_it(allow):
    text = "Arrived to CCU at 0330 3/7. Will address nutrition strategy 4/16 w/ team"
    guesses = [at(text, "0330 3/7", "DATE", 0.8), at(text, "nutrition strategy 4/16", "DATE", 0.8)]
    assert values(text, combine_spans(text, [], guesses, allow)) == [("3/7", "DATE"), ("4/16", "DATE")]


@pytest.mark.parametrize("text", ["L rad aline intact", "WEAKLY MAE X 4 TO COMMAND", "Will D/W team"])
def test_a_lone_letter_without_a_period_is_no_name(text, allow):
    letter = next(w for w in ("L", "X", "W") if f"{w} " in text or f"/{w} " in text)
    start = text.index(f"{letter} ") if f"{letter} " in text else text.index(letter)
    assert combine_spans(text, [], [CharSpan(start, start + 1, "NAME", 0.8)], allow) == []


def test_the_clinical_vocabulary_holds_no_common_name_by_accident(allow):
    from medcore.phi.recognizers import first_names, last_names

    vocabulary = {w.lower() for w in allow.clinical_vocabulary}
    # Clinical first, on purpose: brady(cardia), Foley (catheter), HO (house officer), white (count, colour).
    assert vocabulary & (first_names() | last_names()) == {"brady", "foley", "ho", "white"}


@pytest.mark.parametrize("text", ["Seen today. Visit 6.", "Okafor is 94 years old.", "..."])
def test_a_tagger_span_of_punctuation_alone_is_dropped(text, allow):
    end = len(text)
    assert combine_spans(text, [], [CharSpan(end - 1, end, "DATE", 0.9)], allow) == []
