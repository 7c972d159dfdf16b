"""PHI detection: every category found in context, known false positives left alone, no network, long notes."""

from __future__ import annotations

import socket

import pytest

from medcore.phi.config import CATEGORIES, load_allowlist
from medcore.phi.detect import detect_text, detect_texts, get_analyzer


@pytest.fixture(scope="session")
def analyzer():
    """spaCy loads once per test session (seconds); every detection below reuses it."""
    return get_analyzer()


def found(text: str, value: str) -> set[str]:
    """Categories of the spans that overlap `value` in `text`."""
    start = text.index(value)
    end = start + len(value)
    return {s.type for s in detect_text(text) if s.start < end and start < s.end}


POSITIVES = [
    ("NAME", "Seen today by Dr. Rose Hall for follow-up.", "Rose Hall"),
    ("NAME", "Discussed with her husband Bill Black by phone.", "Bill Black"),
    ("NAME", "Patient: SMITH, John    MRN: 1234567", "SMITH, John"),
    ("NAME", "Portal user jsmith42 logged in.", "jsmith42"),
    ("NAME", "Entered by April Little RN (alittle) at the end of shift.", "alittle"),
    ("PROFESSION", "She works as a software engineer at a bank.", "software engineer"),
    ("LOCATION", "Transferred from Mercy General Hospital overnight.", "Mercy General Hospital"),
    ("LOCATION", "Home address: 12 Oak Street, Springfield, IL 62704.", "12 Oak Street"),
    ("LOCATION", "Home address: 12 Oak Street, Springfield, IL 62704.", "Springfield"),
    ("LOCATION", "Home address: 12 Oak Street, Springfield, IL 62704.", "62704"),
    ("LOCATION", "Works at Gomez Logistics as a driver.", "Gomez Logistics"),
    ("AGE", "HPI: 94-year-old woman with dyspnea.", "94"),
    ("AGE", "A/P: pneumonia, aged 101; stable.", "101"),
    ("DATE", "Admitted on 03/14/1952 with chest pain.", "03/14/1952"),
    ("DATE", "Follow-up booked for 3/14 in clinic.", "3/14"),
    ("DATE", "Biopsy done 14-Mar-2023.", "14-Mar-2023"),
    ("DATE", "Symptoms began March 14th at home.", "March 14th"),
    ("DATE", "CT on 2023-03-14 was normal.", "2023-03-14"),
    ("DATE", "Underwent surgery on the 5th without complication.", "5th"),
    ("DATE", "Worse since Christmas 2019.", "Christmas"),
    ("CONTACT", "Call her on (617) 555-0199 after 5pm.", "(617) 555-0199"),
    ("CONTACT", "Pager 4-5821 for questions.", "4-5821"),
    ("CONTACT", "Email jane.doe@example.org with results.", "jane.doe@example.org"),
    ("CONTACT", "Images: https://portal.smith-family.org/p/123456", "https://portal.smith-family.org/p/123456"),
    ("CONTACT", "Last login from 192.168.10.24 yesterday.", "192.168.10.24"),
    ("ID", "SSN 123-45-6789 verified at registration.", "123-45-6789"),
    ("ID", "MRN: 00376744", "00376744"),
    ("ID", "Insurance: health plan IGK612806192, account 05756670-3.", "IGK612806192"),
    ("ID", "Insurance: health plan IGK612806192, account 05756670-3.", "05756670-3"),
    ("ID", "Prescriber licence no. MD123456.", "MD123456"),
    ("ID", "Implant card: device serial SN 9197WE9904.", "9197WE9904"),
    ("ID", "Arrived by car, registration 7ABC123; pass issued.", "7ABC123"),
    ("ID", "Arrived by car, registration 1HGCM82633A004352.", "1HGCM82633A004352"),
]


@pytest.mark.parametrize(("category", "text", "value"), POSITIVES, ids=[f"{c}-{v}" for c, _, v in POSITIVES])
def test_each_category_is_found_in_context(analyzer, category, text, value):
    assert category in found(text, value)


NEGATIVES = [
    ("AGE", "HPI: 64-year-old man with chest pain.", "64"),  # ages under 90 are not identifiers
    ("DATE", "Diagnosed in 2019, stable since.", "2019"),  # a year alone is allowed by Safe Harbor
    ("DATE", "Pain 5/10 at rest, improving.", "5/10"),
    # ("Review in 2/7": UK shorthand for two days, read as 7 February in US notes; recall first, so it is redacted.)
    ("DATE", "Symptoms for a couple of months before presentation.", "a couple of months"),
    ("ID", "B12 low; on D5W; T4 normal.", "B12"),
    ("ID", "Given 2 tablets as a single dose.", "2"),
    ("CONTACT", "BP 132/82, HR 78, afebrile.", "132/82"),
    ("NAME", "History of COPD and CHF, on BiPAP at night.", "COPD"),
    ("NAME", "She will attend clinic; may need review.", "will"),
    ("PROFESSION", "The nurse gave the medication.", "nurse"),
]


@pytest.mark.parametrize(("category", "text", "value"), NEGATIVES, ids=[f"{c}-{v}" for c, _, v in NEGATIVES])
def test_lookalikes_are_not_phi(analyzer, category, text, value):
    assert found(text, value) == set()


def test_every_category_has_positive_and_negative_examples():
    assert {c for c, _, _ in POSITIVES} == set(CATEGORIES)
    assert {c for c, _, _ in NEGATIVES} <= set(CATEGORIES)


EPONYM_NOTE = (
    "Known Parkinson disease and Hodgkin lymphoma in remission. Crohn's flare last year; Graves disease treated. "
    "Foley catheter removed. Wilson disease excluded. Apgar 9 at birth. Glasgow coma scale 14/15. "
    "Pain 3/12 duration. BP 132/82. B12 and T4 normal, D5W running. ALL-CAPS words: COPD, CHF, ICU, HTN. "
    "Symptoms for a couple of months."
)


def test_allow_listed_false_positives_stay_unredacted_in_context(analyzer):
    spans = detect_text(EPONYM_NOTE)
    flagged = [EPONYM_NOTE[s.start : s.end] for s in spans]
    assert flagged == []


def test_allow_list_words_are_loaded_from_yaml():
    allow = load_allowlist()
    for word in ("parkinson", "hodgkin", "crohn", "graves", "foley", "wilson", "apgar", "glasgow"):
        assert word in allow.eponym_words


def test_title_still_wins_over_eponym(analyzer):
    text = "Seen by Dr. Wilson today; Wilson disease excluded."
    spans = detect_text(text)
    assert any(text[s.start : s.end] == "Wilson" and s.start == text.index("Wilson") for s in spans)


def test_name_propagates_to_later_mentions(analyzer):
    text = "Spoke with her son Tyrone Okafor. Later, Okafor called back about the plan."
    spans = detect_text(text)
    later = text.rindex("Okafor")
    assert any(s.start <= later < s.end and s.type == "NAME" for s in spans)


def test_batch_matches_single_and_handles_empty_texts(analyzer):
    texts = ["Dr. Rose Hall saw him on 03/14/2023.", "", "   ", "MRN: 1234567"]
    batch = list(detect_texts(texts))
    assert len(batch) == 4
    assert batch[1] == [] and batch[2] == []
    assert batch[0] == detect_text(texts[0])


def test_a_long_note_is_analysed_in_pieces_with_correct_offsets(analyzer):
    filler = "Stable overnight, no new complaints. " * 3000  # ~111k chars: over one spaCy piece
    text = filler + "Seen by Dr. Rose Hall on 03/14/2023." + filler
    spans = detect_text(text)
    values = {text[s.start : s.end] for s in spans}
    assert {"Rose Hall", "03/14/2023"} <= values


def test_no_network_connection_is_attempted(analyzer, monkeypatch):
    """Presidio's email validation (tldextract) and spaCy loading must never open a socket."""
    import presidio_analyzer

    from medcore.phi import detect

    def refuse(*args, **kwargs):
        raise AssertionError("outbound connection attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    detect.get_analyzer.cache_clear()
    text = "Email jane.doe@example.co.uk or call (617) 555-0199."
    assert {"CONTACT"} == {s.type for s in detect_text(text)}
    # Presidio's own EmailRecognizer (used by the benchmark baseline) is offline too once patched.
    detect.make_presidio_offline()
    email = presidio_analyzer.predefined_recognizers.EmailRecognizer()
    assert email.validate_result("jane.doe@example.co.uk") is True


@pytest.mark.parametrize(
    "text,value",
    [
        ("She was transfered to GH for cath", "GH"),
        ("TRANSFERED TO GH FOR EMERGENT CATH.", "GH"),
        ("recently dc'd from GH TCU with a long stay", "GH"),
        ("A CONSULT FROM THE GBMC. HO SPOKE", "GBMC"),
        ("enroute to gh, did begin to wake", "gh"),
    ],
)
def test_abbreviated_hospitals_are_places(analyzer, text, value):
    assert "LOCATION" in found(text, value)


@pytest.mark.parametrize(
    "text,value",
    [
        ("SATS IN THE HIGH 90'S", "HIGH"),
        ("ADMITTED FROM CATH LAB", "CATH"),
        ("transferred from OSH s/p MI", "OSH"),  # an outside hospital names none
        ("admitted to MICU with ICH", "ICH"),
    ],
)
def test_words_shaped_like_hospital_abbreviations_are_not(analyzer, text, value):
    assert "LOCATION" not in found(text, value)


@pytest.mark.parametrize(
    "text,value",
    [("MD to call with update: 410 392 0780 x45.", "x45"), ("MOBILITY AS ABLE | PG 23456", "23456")],
)
def test_phone_extensions_and_pager_numbers_are_contacts(analyzer, text, value):
    assert "CONTACT" in found(text, value)
