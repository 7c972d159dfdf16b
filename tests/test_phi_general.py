"""General-text PHI rules: international phones, addresses, countries, date-times; clinical look-alikes untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

import medcore.phi
from medcore.phi.config import DEFAULT_ALLOWLIST, DEFAULT_LEXICON, load_lexicon
from medcore.phi.detect import detect_text, get_analyzer


@pytest.fixture(scope="session")
def analyzer():
    return get_analyzer()


def covering(text: str, value: str) -> set[str]:
    """Categories of spans covering every character of `value` in `text` (one span or adjacent ones)."""
    start = text.index(value)
    end = start + len(value)
    spans = [s for s in detect_text(text) if s.start < end and start < s.end]
    covered = {i for s in spans for i in range(s.start, s.end)}
    wanted = {i for i in range(start, end) if text[i].isalnum()}
    return {s.type for s in spans} if wanted <= covered else set()


def overlapping(text: str, value: str) -> list[str]:
    start = text.index(value)
    end = start + len(value)
    return [text[s.start : s.end] for s in detect_text(text) if s.start < end and start < s.end]


POSITIVES = [
    ("CONTACT", "Her daughter lives abroad: +46 (0)8 928 571 38.", "+46 (0)8 928 571 38"),
    ("CONTACT", "Reach the GP on +44 20 7946 0958 before noon.", "+44 20 7946 0958"),
    ("CONTACT", "Son's mobile 0490 75 40 81, call after work.", "0490 75 40 81"),
    ("CONTACT", "Please call 01.84.17.61.18 tomorrow.", "01.84.17.61.18"),
    ("CONTACT", "Desk: (898)666-3621x0135 for the clinic.", "(898)666-3621x0135"),
    ("CONTACT", "Phone: 467 3395 (landline).", "467 3395"),
    ("CONTACT", "Wife on 082 490 1693-Office during the day.", "082 490 1693"),
    ("LOCATION", "Address: 5049 Harjukuja 54, Seinajoki.", "5049 Harjukuja 54"),
    ("LOCATION", "Lives at 20789 Allika 46\n Suite 501\n Riisa\n Estonia 62488", "20789 Allika 46"),
    ("LOCATION", "Lives at 20789 Allika 46\n Suite 501\n Riisa\n Estonia 62488", "Suite 501"),
    ("LOCATION", "Lives at 20789 Allika 46\n Suite 501\n Riisa\n Estonia 62488", "Riisa"),
    ("LOCATION", "Lives at 20789 Allika 46\n Suite 501\n Riisa\n Estonia 62488", "Estonia 62488"),
    ("LOCATION", "Forward records to P.O. Box 149, Nuuk.", "P.O. Box 149"),
    ("LOCATION", "Son is deployed: PSC 6293, Box 8158 APO AP 04336.", "PSC 6293, Box 8158 APO AP 04336"),
    ("LOCATION", "Mail to 63 Avenue du Golf, Hellendoorn, OV 21072.", "Hellendoorn, OV 21072"),
    ("LOCATION", "She moved here from Portugal in the spring.", "Portugal"),
    ("LOCATION", "Patient states my zip code is 2371.", "2371"),
    ("DATE", "Sample drawn 2018-01-14 03:07:43 in clinic.", "2018-01-14 03:07:43"),
    ("DATE", "Seen 03/14/2023 at 2:30 pm by the team.", "03/14/2023 at 2:30 pm"),
    ("DATE", "Surgery booked for Monday, March 3 at noon.", "Monday, March 3"),
    ("DATE", "Returns Friday the 5th for suture removal.", "Friday the 5th"),
    ("LOCATION", "Her address Koskikatu 25 is on file.", "Koskikatu 25"),  # the noun still cues an address
    ("NAME", "I lost my card. My name is Ruth R Montez.", "Ruth R Montez"),
]


@pytest.mark.parametrize(("category", "text", "value"), POSITIVES, ids=[f"{c}-{v[:20]}" for c, _, v in POSITIVES])
def test_general_text_identifiers_are_found(analyzer, category, text, value):
    assert category in covering(text, value)


NEGATIVES = [
    ("Labs: plt 250, WBC 7.8, Na 138, K 4.1.", "plt 250, WBC 7.8, Na 138, K 4.1"),
    ("Take 2 tabs 3 times daily for 10 days, call back in 2 weeks.", "2 tabs 3 times daily for 10 days"),
    ("Metoprolol given at 14:30 with food.", "14:30"),  # a time alone is not a date element
    ("Seen Monday, stable; review Friday.", "Monday"),  # a weekday alone is not a date element
    ("Moved to ICU 4 overnight for monitoring.", "ICU 4"),
    ("Doses of 0.5 0.25 0.125 mg tried in turn.", "0.5 0.25 0.125"),
    ("BP 132/82, pain 5/10, GCS 14/15.", "132/82"),
    ("Ate a turkey sandwich and jordan almonds.", "turkey"),  # countries match capitalised only
    ("Work 40 hours a week, home by 6.", "40 hours"),
    ("HO aware and will address on rounds. PLTs stable 199.", "on rounds. PLTs stable 199"),  # the verb
]


@pytest.mark.parametrize(("text", "value"), NEGATIVES, ids=[v[:20] for _, v in NEGATIVES])
def test_clinical_lookalikes_stay_unredacted(analyzer, text, value):
    assert overlapping(text, value) == []


def test_default_yaml_ships_inside_the_package():
    """A non-editable install has no configs/ folder: the defaults must live under medcore/phi/."""
    package = Path(medcore.phi.__file__).resolve().parent
    for path in (DEFAULT_ALLOWLIST, DEFAULT_LEXICON):
        assert path.is_file() and package in path.resolve().parents
    assert "Portugal" in load_lexicon().countries
