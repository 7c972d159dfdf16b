"""Redact texts: detect PHI spans, then mask, remove or surrogate them; the preview API the console calls.

from medcore.phi import preview_text
preview = preview_text("Seen by Dr. Rose Hall on 03/14/2023.", mode="safe-harbor", method="mask")
preview.redacted_text   # "Seen by Dr. [NAME] on [DATE]."
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from medcore.phi.config import RedactionConfig, build_config, load_lexicon
from medcore.phi.detect import Span, detect_texts
from medcore.phi.surrogates import (
    AGE_OVER_89,
    date_offset_days,
    keyed_int,
    match_case,
    shift_date,
    substitute_characters,
)

DATASET_KEY = "dataset"  # date-offset key for records without a patient id: one shift for the whole dataset


@dataclass
class Preview:
    """What the console shows: spans in original offsets, and the text after redaction."""

    spans: list[Span]
    redacted_text: str
    counts: dict[str, int] = field(default_factory=dict)
    # (start, end, type) of each replacement in redacted_text: a surrogate is as visible as a mask in the preview
    replacements: list[tuple[int, int, str]] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def name_pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Surrogate given names and surnames (US census lists shipped with Faker)."""
    from faker.providers.person.en_US import Provider

    return tuple(Provider.first_names), tuple(Provider.last_names)


class Redactor:
    """Replaces spans in one text according to the config; holds the salt for keyed surrogates."""

    def __init__(self, config: RedactionConfig, salt: bytes):
        self.config, self.salt = config, salt
        self.professions = tuple(load_lexicon(config.lexicon).professions)

    def apply(self, text: str, spans: list[Span], patient_key: str | None = None) -> str:
        return self.apply_with_offsets(text, spans, patient_key)[0]

    def apply_with_offsets(
        self, text: str, spans: list[Span], patient_key: str | None = None
    ) -> tuple[str, list[tuple[int, int, str]]]:
        """The redacted text, and where each replacement landed in it: (start, end, type)."""
        pieces, position, length, placed = [], 0, 0, []
        for span in sorted(spans, key=lambda s: s.start):
            kept, new = text[position : span.start], self.replacement(text[span.start : span.end], span, patient_key)
            length += len(kept)
            placed.append((length, length + len(new), span.type))
            length += len(new)
            pieces += [kept, new]
            position = span.end
        pieces.append(text[position:])
        return "".join(pieces), placed

    def replacement(self, value: str, span: Span, patient_key: str | None) -> str:
        if span.type == "AGE":
            return AGE_OVER_89  # Safe Harbor's aggregate; a younger age is never detected
        if self.config.method == "remove":
            return ""
        if self.config.method == "mask":
            return f"[{span.type}]"
        return self.surrogate(value, span, patient_key or DATASET_KEY)

    def surrogate(self, value: str, span: Span, patient_key: str) -> str:
        """A realistic fake of the same kind and shape, the same for the same original (keyed by the salt)."""
        if span.type == "DATE":
            shifted = shift_date(value, date_offset_days(self.salt, patient_key))
            return shifted if shifted is not None else "[DATE]"  # holidays, "the 5th": no safe shift
        if span.type == "NAME" and span.subtype != "USERNAME":
            return self.surrogate_name(value)
        if span.type == "PROFESSION":
            return match_case(
                value, self.professions[keyed_int(self.salt, "job", value.lower()) % len(self.professions)]
            )
        if span.type == "LOCATION":
            return self.surrogate_place(value, span.subtype)
        if span.subtype == "EMAIL" and "@" in value:
            local, domain = value.split("@", 1)
            host, _, tld = domain.rpartition(".")
            return f"{substitute_characters(local, self.salt, 'email')}@{substitute_characters(host, self.salt, 'host')}.{tld}"
        # IDs, contacts, usernames, zips: same shape, different characters; keep "MR"/"SN"/scheme prefixes.
        keep = len(value) - len(value.lstrip("#+")) if span.subtype != "URL" else url_prefix_length(value)
        return substitute_characters(value, self.salt, span.subtype or span.type, keep=keep)

    def surrogate_name(self, value: str) -> str:
        first, last = name_pools()
        words = value.split(" ")
        given = 1 if words[0].endswith(",") else 0  # "Smith, John": the given name comes second
        out = []
        for i, word in enumerate(words):
            core = word.strip(".,'")
            if len(core) <= 1:
                out.append(word)  # initials stay initials
                continue
            pool = first if i == given and len(words) > 1 else last
            fake = pool[keyed_int(self.salt, "name", core.lower()) % len(pool)]
            out.append(word.replace(core, match_case(core, fake)))
        return " ".join(out)

    def surrogate_place(self, value: str, subtype: str) -> str:
        from faker import Faker

        fake = Faker("en_US")
        fake.seed_instance(keyed_int(self.salt, "place", subtype, value.lower()))
        if subtype == "STREET":
            return fake.street_address()
        if subtype == "CITY":
            return fake.city()
        if subtype == "STATE":
            return fake.state_abbr() if len(value) == 2 else fake.state()
        if subtype in ("ZIP", "LOCATION") and any(c.isdigit() for c in value):
            return substitute_characters(value, self.salt, subtype)
        if subtype in ("HOSPITAL", "ORGANIZATION"):
            suffix = value.split(" ")[-1] if " " in value else "Hospital"
            return f"{fake.last_name()} {suffix}"
        if subtype in ("COUNTRY", "GPE"):
            return fake.country()
        return fake.city()


def url_prefix_length(value: str) -> int:
    lowered = value.lower()
    for prefix in ("https://www.", "http://www.", "https://", "http://", "www."):
        if lowered.startswith(prefix):
            return len(prefix)
    return 0


def count_types(spans: Iterable[Span]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.type] = counts.get(span.type, 0) + 1
    return counts


def redact_texts(
    texts: Iterable[str], config: RedactionConfig, salt: bytes, patient_keys: Iterable[str | None] | None = None
) -> Iterator[tuple[str, list[Span]]]:
    """(redacted text, spans in original offsets) per text, batched through spaCy."""
    texts = list(texts)
    keys = list(patient_keys) if patient_keys is not None else [None] * len(texts)
    redactor = Redactor(config, salt)
    for text, spans, key in zip(texts, detect_texts(texts, config), keys, strict=True):
        yield redactor.apply(text, spans, key), spans


def preview_text(
    text: str,
    mode: str = "safe-harbor",
    method: str | None = None,
    *,
    salt: bytes | None = None,
    config: RedactionConfig | None = None,
) -> Preview:
    """Spans (start, end, type, score, recognizer) and the redacted text, for the console's preview pane.

    Surrogates use the workspace salt ($MEDCORE_HOME/audit/salt.key) unless `salt` is given.
    """
    config = config or build_config(mode=mode, method=method)
    if salt is None:
        from medcore.phi.audit import load_salt
        from medcore.workspace import get_workspace

        salt = load_salt(get_workspace())
    text = text or ""
    spans = next(iter(detect_texts([text], config)))
    redacted, placed = Redactor(config, salt).apply_with_offsets(text, spans)
    return Preview(spans=spans, redacted_text=redacted, counts=count_types(spans), replacements=placed)
