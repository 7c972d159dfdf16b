"""The packaged detector (rules + shipped tagger) on the registers of real notes: ALL-CAPS ICU shorthand, lower-case
nursing notes and vitals lines; identifiers found in each, clinical words and measurements left alone."""

from __future__ import annotations

import pytest

from medcore.phi.detect import detect_texts
from medcore.phi.tagger import has_tagger

pytestmark = pytest.mark.skipif(not has_tagger(), reason="the packaged PHI tagger is not built")


def categories_at(text: str, value: str, spans) -> set[str]:
    start = text.index(value)
    end = start + len(value)
    return {s.type for s in spans if s.start < end and start < s.end}


POSITIVES = [
    ("NAME", "SPOKE WITH DR JONES RE PLAN. WILL CONT TO MONITOR.", "JONES"),
    ("NAME", "pt's wife mary called, updated on plan of care.", "mary"),
    ("NAME", "DAUGHTER SUSAN AT BEDSIDE, QUESTIONS ANSWERED.", "SUSAN"),
    ("NAME", "Resp care note: d/w Dr. Painter, will wean PEEP.", "Painter"),
    ("NAME", "paged ho kowalski re uo <30cc/hr, lasix given.", "kowalski"),
    ("LOCATION", "74 YO WOMAN TRANSFERRED FROM ST. ELSEWHERE HOSPITAL FOR CATH.", "ELSEWHERE"),
    ("LOCATION", "family lives in springfield, will visit tomorrow.", "springfield"),
    ("DATE", "PT ADMITTED 8/30 WITH CHEST PAIN.", "8/30"),
    ("DATE", "cath done on 10-3, no complications.", "10-3"),
    ("DATE", "Echo 3/14/2022 showed EF 35%.", "3/14/2022"),
    ("CONTACT", "WIFE CAN BE REACHED AT 555-1234 OVERNIGHT.", "555-1234"),
    ("CONTACT", "Call (617) 555-0199 with questions.", "(617) 555-0199"),
    ("AGE", "94 YO MAN ADMITTED WITH UROSEPSIS.", "94"),
]

NEGATIVES = [
    "NEURO: ALERT AND ORIENTED X3, MAE. CARDIAC: HR 80S SR NO VEA, SBP 90-110 ON NEO.",
    "RESP: LS COARSE BILAT, SX FOR THICK WHITE SPUTUM. AFEBRILE. TMAX 101.2.",
    "GI: ABD SOFT, +BS, OGT DRAINING BILIOUS. GU: FOLEY DRAINING CLEAR YELLOW URINE 30-50CC/HR.",
    "neo @ 1.2mcg/kg/min, lasix 40mg iv x2 with good response, k 3.6, hct 27.1",
    "IABP 1:1, AUGMENTING 0-12. HEP @ 1000U/HR. PLAN: WEAN NEO AS TOL.",
    "74 yo woman with CHF, 5/5 strength in all extremities, pain 2/10.",
]


@pytest.fixture(scope="module")
def positives_found():
    texts = [text for _, text, _ in POSITIVES]
    return dict(zip(texts, detect_texts(texts), strict=True))


@pytest.mark.parametrize("category,text,value", POSITIVES, ids=[f"{c}:{v}" for c, _, v in POSITIVES])
def test_identifiers_are_found_in_every_register(category, text, value, positives_found):
    assert category in categories_at(text, value, positives_found[text])


@pytest.mark.parametrize("text", NEGATIVES, ids=range(len(NEGATIVES)))
def test_clinical_shorthand_vitals_and_doses_are_left_alone(text):
    (spans,) = detect_texts([text])
    assert [text[s.start : s.end] for s in spans] == []
