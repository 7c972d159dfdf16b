"""The one decision rule that turns rule detections and the tagger's guesses into the PHI spans of a text.

Recall comes first: a missed identifier leaks, a false alarm only costs a word of context. So the union of
the sources is kept, and only a documented veto removes a span:

1. Rules anchored on a cue word or an unambiguous format (score >= ANCHORED: "Dr. Smith", "MRN 1234567",
   a full date, a phone number, an age over 89) are kept, with the exceptions that clinical text forces:
   a "date" inside a blood gas, a ventilator setting or a dose ("7.42/56/96", "BIPAP 10/5", "1/4 NS"), a half,
   third or quarter with no date cue before it ("crackles up 1/2"), an ordinal that counts ("after 2nd cath"), and a
   "name" made only of stop words or clinical words ("SR. No ectopy", "After NP suctioning") unless a personal
   title stands before it ("Dr. Bell").
2. The tagger's spans (P(PHI) >= the configured threshold) are kept unless clinical context vetoes them
   (medcore.phi.context: measurements, times, lab chains, laterality, clinical vocabulary), and unless the tagger
   is unsure of a name or place made of misspelt clinical words ("amiodaronee", "PATINET"; never a known given
   name or surname) or of a kind of place alone ("admitted to hosp"). Number spans are first grown over the
   digits and slashes around them, so "5/10" is judged whole, not as "/10".
3. Shape-only rules (below ANCHORED, already filtered by the allow-list) are kept unless context vetoes them;
   the weakest (below WEAK_RULE: a capitalised word before "is") only where the tagger also flags the text.
4. Every other occurrence of a name kept on firm ground (an anchored rule, or a sure tagger) in the same text
   is a name too (propagation, incl. other casing); an unsure guess never spreads.
5. Overlapping spans merge into their union, typed by an anchored rule if one is among them, else by the
   tagger, else by the strongest member.
6. Edges are tidied: a name takes in the initial before it ("W. Marotta") and loses the titles, roles,
   relatives and status words around it ("DTR Philomena", "Jones AWARE", "DR Jones", "Lavely NOTIFED"); a
   tagger's date loses the clock time and plain words beside it ("0330 3/7", "nutrition strategy 4/16"); a
   place loses the kind of place and a unit's one-digit number at its edges ("Kernan hospital", "Baltimore
   Rehab", "QUARTERMAIN 2"), while an address keeps its numbers ("19 Clover St.", "Villacher Strasse 89").
   Those words identify no one, and the text keeps its sense.
"""

from __future__ import annotations

import functools
import re

from medcore.phi.config import AllowList
from medcore.phi.context import (
    CLOCK,
    MEASURE,
    WEEKDAYS,
    after_title,
    is_location_edge_word,
    is_misspelt_vocabulary,
    is_name_edge_word,
    is_ordinal_count,
    span_words,
    vetoes_date,
    vetoes_guess,
)
from medcore.phi.detect import Span, merge_spans, overlaps_any, propagate_names, stop_words
from medcore.phi.recognizers import ANCHORED, MONTH, first_names, last_names
from medcore.phi.surrogates import is_over_89
from medcore.token_windows import CharSpan

TAGGER_NAME = "phi_tagger"
WEAK_RULE = 0.6  # below this a rule is a shape only ("Crepitus is ..."): it needs the tagger's agreement
TAGGER_SURE = 0.9  # at or above, a tagger name seeds propagation, and stop words it calls a name stand
# The tagger's span types are MedCore's categories; the subtype steers surrogates (medcore.phi.redact).
TAGGER_SUBTYPE = {
    "NAME": "PERSON",
    "LOCATION": "LOCATION",
    "DATE": "DATE",
    "AGE": "AGE",
    "CONTACT": "PHONE",
    "ID": "IDNUM",
    "PROFESSION": "PROFESSION",
}


def tagger_span(text: str, span: CharSpan) -> Span | None:
    """A tagger CharSpan as a detection (None for types outside the Safe Harbor categories, e.g. YEAR)."""
    if span.type not in TAGGER_SUBTYPE:
        return None
    start, end = trim_punctuation(text, span.start, span.end)
    if start >= end:
        return None  # punctuation alone ("." at the end of a note): nothing to redact
    start, end = grow_number(text, start, end)
    return Span(start, end, span.type, round(float(span.score), 3), TAGGER_NAME, TAGGER_SUBTYPE[span.type])


def trim_punctuation(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop edge punctuation the tagger swept in (". Rose Hall"), keeping a phone's "(" and "+" and its ")"."""
    while start < end and not text[start].isalnum() and text[start] not in "(+":
        start += 1
    while end > start and not text[end - 1].isalnum() and text[end - 1] != ")":
        end -= 1
    return start, end


def grow_number(text: str, start: int, end: int) -> tuple[int, int]:
    """Extend a span that starts or ends a number over the rest of it: "/10" in "5/10", "8/3" in "8/30"."""
    joins = "/-."
    while start > 0 and (
        text[start - 1].isdigit() or (text[start - 1] in joins and start > 1 and text[start - 2].isdigit())
    ):
        if not (text[start].isdigit() or text[start] in joins):
            break
        start -= 1
    while end < len(text) and (
        text[end].isdigit() or (text[end] in joins and end + 1 < len(text) and text[end + 1].isdigit())
    ):
        if not (text[end - 1].isdigit() or text[end - 1] in joins):
            break
        end += 1
    return start, end


def keep_guess(text: str, span: Span, allow: AllowList) -> bool:
    """Rules 2 and 3: a guess stands unless a clinical-context veto applies."""
    age = text[span.start : span.end]
    if span.type == "AGE" and any(c.isdigit() for c in age) and not is_over_89(age):
        return False  # Safe Harbor aggregates only ages over 89; a younger age is not an identifier
    if span.type == "DATE" and is_ordinal_count(text, span.start, span.end, allow):
        return False  # "after 2nd cath": a count, not the 2nd of a month
    if span.type == "NAME" and is_plain_name(text[span.start : span.end], allow) and not is_firm(span):
        return False  # "Goal", "Team", "She": prose, unless the tagger is sure
    if span.type in ("NAME", "LOCATION") and is_misspelt_guess(text[span.start : span.end], span, allow):
        return False  # "amiodaronee", "DUCOLAX": a misspelt drug is no person, unless the tagger is sure
    if span.type == "LOCATION" and all(
        is_location_edge_word(w, number=False) for w in span_words(text[span.start : span.end])
    ):
        return False  # "admitted to hosp", "Harbor" + "Hosp" tagged apart: the kind of place names none
    return vetoes_guess(text, span.start, span.end, span.type, allow) is None


def is_misspelt_guess(value: str, span: Span, allow: AllowList) -> bool:
    """An unsure tagger guess made of clinical words, some misspelt, none a known given name or surname
    ("Norman" is one edit from "normal", and still a name)."""
    if span.recognizer != TAGGER_NAME or is_firm(span) or any(w in known_names() for w in span_words(value)):
        return False
    return is_misspelt_vocabulary(value, allow)


@functools.lru_cache(maxsize=1)
def known_names() -> frozenset[str]:
    return first_names() | last_names()


def keep_anchored(text: str, span: Span, allow: AllowList) -> bool:
    """Rule 1: an anchored rule stands unless it is a lab/vent/dose "date" or a "name" of plain words."""
    if span.type == "DATE":
        return vetoes_date(text, span.start, span.end) is None and not is_ordinal_count(
            text, span.start, span.end, allow
        )
    if span.type == "NAME" and is_plain_name(text[span.start : span.end], allow):
        return span.recognizer == "title_name" and after_title(text, span.start)
    return True


def is_plain_name(value: str, allow: AllowList) -> bool:
    words = span_words(value)
    return bool(words) and all(w in stop_words() or w in allow.vocabulary for w in words)


def is_firm(span: Span) -> bool:
    return span.score >= (TAGGER_SURE if span.recognizer == TAGGER_NAME else ANCHORED)


def combine_spans(
    text: str, rule_spans: list[Span], tagger_spans: list[CharSpan], allow: AllowList, tagger_on: bool = True
) -> list[Span]:
    """The PHI spans of `text` from its rule detections and its tagger spans (see the module docstring).

    tagger_on: False when no tagger ran (rules alone): weak rules then stand on their own.
    """
    kept = [s for s in rule_spans if s.score >= ANCHORED and keep_anchored(text, s, allow)]
    tagged = [s for s in (tagger_span(text, t) for t in tagger_spans) if s is not None]
    guesses = [
        s
        for s in rule_spans
        if s.score < ANCHORED and (s.score >= WEAK_RULE or not tagger_on or overlaps_any(s, tagged))
    ]
    guesses += tagged
    kept += [s for s in guesses if keep_guess(text, s, allow)]
    kept += propagate_names(text, [s for s in kept if is_firm(s)], allow)
    merged = merge_spans(kept, authority=type_authority)
    return [tidy_edges(text, span, allow) for span in merged]


WORD_RUN = re.compile(r"\S+")
MONTH_WORD = re.compile(rf"(?i){MONTH}")
YEAR_LIKE = re.compile(r"(?:19|20)\d\d")
INITIAL_BEFORE = re.compile(r"(?<![\w.])[A-Za-z]\. $")  # "W. Marotta", "D. Phyl": the initial belongs to the name


def not_a_date_part(word: str, allow: AllowList) -> bool:
    """A clock time ("0330 3/7") or a plain word ("nutrition strategy 4/16") at a date's edge."""
    if CLOCK.fullmatch(word) and not YEAR_LIKE.fullmatch(word):  # "March 27, 2023": 2023 is no 20:23
        return True
    if "noon" in word and MEASURE.fullmatch(word):
        return True
    if any(c.isdigit() for c in word) or MONTH_WORD.fullmatch(word) or word in WEEKDAYS or word in ("am", "pm"):
        return False
    return word in allow.vocabulary or word in stop_words()


def tidy_edges(text: str, span: Span, allow: AllowList) -> Span:
    """Rule 6: drop edge words that identify no one, as long as a word that might remains."""
    words = [(m.start() + span.start, m.end() + span.start) for m in WORD_RUN.finditer(text[span.start : span.end])]

    def clean(bounds: tuple[int, int]) -> str:
        return text[bounds[0] : bounds[1]].strip(".,;:'()").lower()

    if span.type == "NAME" and (initial := INITIAL_BEFORE.search(text, max(0, span.start - 4), span.start)):
        span = Span(initial.start(), span.end, span.type, span.score, span.recognizer, span.subtype)
        words.insert(0, (initial.start(), initial.start() + 2))
    if span.type == "NAME":
        plain = [is_name_edge_word(clean(w)) for w in words]
        first, last = kept_run(plain, plain)
    elif span.type == "LOCATION":  # a house number leads an address ("19 Clover St."); a unit's number trails
        first, last = kept_run(
            [is_location_edge_word(clean(w), number=False) for w in words],
            [is_location_edge_word(clean(w)) for w in words],
        )
    elif span.type == "DATE" and span.recognizer == TAGGER_NAME:  # a rule's date has its shape on purpose
        clock = [not_a_date_part(clean(w), allow) for w in words]
        first, last = 0, len(words)
        while last - first > 1 and clock[first]:
            first += 1
        while last - first > 1 and clock[last - 1]:
            last -= 1
    else:
        return span
    if (first, last) == (0, len(words)) or not words:
        return span
    start, end = trim_punctuation(text, words[first][0], words[last - 1][1])
    return Span(start, end, span.type, span.score, span.recognizer, span.subtype) if start < end else span


def kept_run(plain_leading: list[bool], plain_trailing: list[bool]) -> tuple[int, int]:
    """The words [first, last) left once plain words are dropped from each edge, as long as one that is not plain
    remains: a span of plain words only ("Ward 3", "Dr") is kept whole."""
    first, last = 0, len(plain_leading)
    while last - first > 1 and plain_leading[first] and not all(plain_trailing[first + 1 : last]):
        first += 1
    while last - first > 1 and plain_trailing[last - 1] and not all(plain_leading[first : last - 1]):
        last -= 1
    return first, last


def type_authority(span: Span) -> int:
    """Rule 5's tie-break: a cue-anchored rule knows the type best ("RN (alittle)" is a user name), then the tagger."""
    if span.recognizer != TAGGER_NAME and span.score >= ANCHORED:
        return 2
    return 1 if span.recognizer == TAGGER_NAME else 0
