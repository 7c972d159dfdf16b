"""Typed configuration of PHI redaction: modes, methods, categories, and the YAML allow-lists and lexicons."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medcore.errors import MedcoreError, validated

# Shipped as package data (pyproject: **/*.yaml), so a non-editable install finds them; --allowlist overrides.
CONFIG_DIR = Path(__file__).resolve().parent / "resources"
DEFAULT_ALLOWLIST = CONFIG_DIR / "allowlist.yaml"
DEFAULT_LEXICON = CONFIG_DIR / "lexicon.yaml"
# The learned PHI taggers (medcore.phi.tagger), rebuilt by `medcore phi train-tagger`: the encoder tagger, the
# fast student distilled from it (medcore.phi.student), and the two combined (a record naming both, no weights of
# its own). Settings name them `encoder`, `fast` and `combined` (or give a folder).
ENCODER_TAGGER = CONFIG_DIR / "tagger"
FAST_TAGGER = CONFIG_DIR / "fast-tagger"
COMBINED_TAGGER = CONFIG_DIR / "combined-tagger"
SHIPPED_TAGGERS = {"encoder": ENCODER_TAGGER, "fast": FAST_TAGGER, "combined": COMBINED_TAGGER}
NO_TAGGER = "none"  # the rules alone
# The combined tagger by default: cross-validated on real notes it finds more PHI and flags fewer clinical words than
# the encoder tagger alone (recall 0.974, precision 0.903 at its threshold, against 0.972 / 0.886), for about 1.1x the
# encoder tagger's time. The fast one alone is about 5x faster but less precise: `tagger: fast` for bulk redaction.
DEFAULT_TAGGER = COMBINED_TAGGER
FALLBACK_THRESHOLD = 0.5  # only for a tagger folder with no recorded cross-validated threshold

# i2b2-2014 top-level categories; every detector label maps to one of them.
CATEGORIES = ("NAME", "PROFESSION", "LOCATION", "AGE", "DATE", "CONTACT", "ID")
Mode = Literal["safe-harbor", "research"]
Method = Literal["mask", "surrogate", "remove"]

# Detector labels (i2b2 subtypes, plus what Presidio's own recognizers emit) -> category.
SUBTYPE_CATEGORY: dict[str, str] = {
    "PATIENT": "NAME",
    "DOCTOR": "NAME",
    "USERNAME": "NAME",
    "PERSON": "NAME",
    "PROFESSION": "PROFESSION",
    "HOSPITAL": "LOCATION",
    "ORGANIZATION": "LOCATION",
    "STREET": "LOCATION",
    "CITY": "LOCATION",
    "STATE": "LOCATION",
    "COUNTRY": "LOCATION",
    "ZIP": "LOCATION",
    "LOCATION": "LOCATION",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "WARD": "LOCATION",
    "AGE": "AGE",
    "DATE": "DATE",
    "DATE_TIME": "DATE",
    "HOLIDAY": "DATE",
    "PHONE": "CONTACT",
    "PHONE_NUMBER": "CONTACT",
    "FAX": "CONTACT",
    "PAGER": "CONTACT",
    "EMAIL": "CONTACT",
    "EMAIL_ADDRESS": "CONTACT",
    "URL": "CONTACT",
    "IPADDR": "CONTACT",
    "IP_ADDRESS": "CONTACT",
    "SSN": "ID",
    "US_SSN": "ID",
    "MEDICALRECORD": "ID",
    "HEALTHPLAN": "ID",
    "ACCOUNT": "ID",
    "LICENSE": "ID",
    "DEVICE": "ID",
    "VEHICLE": "ID",
    "IDNUM": "ID",
    "BIOID": "ID",
}


class RedactionConfig(BaseModel):
    """How to find and replace PHI. Built once at the edge (CLI, console, notebook) and passed down."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode = Field(
        "safe-harbor",
        description="safe-harbor: remove all 18 HIPAA identifiers, ages over 89 become '90+'. "
        "research: realistic surrogates with per-patient date shifting (a limited data set for IRB-approved use).",
    )
    method: Method | None = Field(
        None,
        description="mask: replace with the category tag, e.g. [DATE]; surrogate: consistent realistic fakes "
        "(research mode only); remove: delete. Default: mask in safe-harbor, surrogate in research.",
    )
    score_threshold: float = Field(0.3, ge=0.0, le=1.0, description="Drop rule detections scored below this.")
    tagger: Path | None = Field(
        DEFAULT_TAGGER,
        description="The learned PHI tagger: `combined` (the default: the two below, their probabilities averaged; "
        "more precise than either at the same recall, about 1.1x the encoder tagger's time), `encoder` (the "
        "packaged MiniLM encoder with a LoRA adapter), `fast` (a BiLSTM distilled from it: detection about 5x "
        "faster on a CPU, less precise at the same recall), a tagger folder, or `none` for the rules alone. "
        "`medcore phi tagger-info --tagger NAME` shows how each was trained and measured.",
    )
    threshold: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="The tagger flags a word when its probability of being PHI is at least this. Lower finds more "
        "PHI and flags more clinical words. Default: the value chosen by patient-grouped cross-validation on real "
        "ICU notes, recorded with the tagger (see `medcore phi tagger-info`).",
    )
    spacy_ner: bool = Field(
        False,
        description="Also accept the general-purpose spaCy NER's people, places and dates (off: on clinical notes "
        "it mostly tags clinical words; the learned tagger replaces it).",
    )
    allowlist: Path = Field(DEFAULT_ALLOWLIST, description="YAML allow-list of known false positives.")
    lexicon: Path = Field(DEFAULT_LEXICON, description="YAML word lists the clinical recognizers anchor on.")
    batch_size: int = Field(
        128,
        ge=1,
        le=4096,
        description="Texts detected together: one spaCy nlp.pipe batch, and the pool the tagger sorts its windows by "
        "length in (a larger pool pads less: 128 is about 1.3x faster than 32 on short notes).",
    )
    workers: int = Field(1, ge=1, le=64, description="Worker processes for file and dataset redaction.")
    max_chars: int = Field(
        2_000_000, ge=1000, description="Texts longer than this are redacted in pieces (spaCy's own limit is 1M)."
    )

    @field_validator("tagger", mode="before")
    @classmethod
    def _tagger_by_name(cls, value):
        if not isinstance(value, str):
            return value
        folder = tagger_folder(value)
        return None if folder is None else str(folder)  # a str: JSON validation takes no Path object

    @model_validator(mode="after")
    def _check_method(self) -> RedactionConfig:
        if self.method is None:
            self.method = "mask" if self.mode == "safe-harbor" else "surrogate"
        if self.mode == "safe-harbor" and self.method == "surrogate":
            # 45 CFR 164.514(c): a re-identification code must not be derived from the individual's data;
            # keyed surrogates are, so Safe Harbor only masks or removes.
            raise ValueError(
                "method 'surrogate' is not allowed in mode 'safe-harbor' (surrogates are derived from the "
                "identifiers). Use --method mask or remove, or --mode research for surrogates."
            )
        return self


def tagger_folder(value: str | Path | None) -> Path | None:
    """A tagger setting as a folder: a shipped tagger's name (`combined`, `encoder`, `fast`), `none` (None: the rules
    alone), or a folder path. Names win over a folder of the same name in the working directory."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() == NO_TAGGER:
        return None
    return SHIPPED_TAGGERS.get(text.lower(), Path(text).expanduser())


def build_config(**fields) -> RedactionConfig:
    """A RedactionConfig from keyword arguments; every problem reported in one MedcoreError."""
    return validated(RedactionConfig, {k: v for k, v in fields.items() if v is not None}, "redaction settings")


class AllowList(BaseModel):
    """Known false positives: spans made only of these words, or matching a pattern, are not PHI."""

    model_config = ConfigDict(extra="forbid")
    eponyms: list[str] = Field(default_factory=list, description="Eponyms, scales, devices and drug names.")
    clinical_terms: list[str] = Field(default_factory=list, description="Abbreviations and section words.")
    clinical_vocabulary: list[str] = Field(
        default_factory=list,
        description="Nursing and ICU words and shorthand; they veto unsure name and place guesses.",
    )
    patterns: list[str] = Field(default_factory=list, description="Full-match regexes (scores, vitals, durations).")

    @functools.cached_property
    def words(self) -> frozenset[str]:
        return self.eponym_words | self.common_words

    @functools.cached_property
    def eponym_words(self) -> frozenset[str]:
        return frozenset(w.lower() for w in self.eponyms)

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every word that is not a name or place on its own: clinical terms, vocabulary and eponyms."""
        return self.words | frozenset(w.lower() for w in self.clinical_vocabulary)

    @functools.cached_property
    def common_words(self) -> frozenset[str]:
        return frozenset(w.lower() for w in self.clinical_terms)

    @functools.cached_property
    def compiled(self) -> list[re.Pattern]:
        return [re.compile(p) for p in self.patterns]


class Lexicon(BaseModel):
    """Word lists the clinical recognizers anchor on (medcore/phi/resources/lexicon.yaml)."""

    model_config = ConfigDict(extra="forbid")
    name_titles: list[str]
    name_cues: list[str]
    name_followers: list[str]
    profession_cues: list[str]
    professions: list[str]
    hospital_suffixes: list[str]
    organization_suffixes: list[str]
    street_suffixes: list[str]
    location_cues: list[str]
    states: list[str]
    state_codes: list[str]
    holidays: list[str]
    names_that_are_words: list[str] = Field(default_factory=list, description="Given names that are stop words.")
    countries: list[str] = Field(default_factory=list, description="Country names, matched without a cue word.")


def read_yaml(path: Path, what: str) -> dict:
    if not path.exists():
        raise MedcoreError(f"The PHI {what} file {path} does not exist. Point to a YAML file like {CONFIG_DIR}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise MedcoreError(
            f"The PHI {what} file {path} is not valid YAML ({where.strip() or 'parse error'})."
        ) from None
    if not isinstance(data, dict):
        raise MedcoreError(f"The PHI {what} file {path} must hold a mapping of lists at the top level.")
    return data


def _validated(model: type[BaseModel], path: Path, what: str):
    return validated(model, read_yaml(path, what), f"PHI {what} file {path}")


@functools.lru_cache(maxsize=8)
def load_allowlist(path: Path = DEFAULT_ALLOWLIST) -> AllowList:
    allow = _validated(AllowList, Path(path), "allow-list")
    for number, pattern in enumerate(allow.patterns, start=1):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise MedcoreError(f"Allow-list {path}: pattern {number} is not a valid regex ({exc}). Fix it.") from None
    return allow


@functools.lru_cache(maxsize=8)
def load_lexicon(path: Path = DEFAULT_LEXICON) -> Lexicon:
    return _validated(Lexicon, Path(path), "lexicon")
