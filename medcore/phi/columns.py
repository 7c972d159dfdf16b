"""Decide what redaction does with every column of a dataset or file, and why: the rules live here, nowhere else.

from medcore.phi.columns import preview_column_decisions
for d in preview_column_decisions(ws, "notes", "safe-harbor", drop=["fax"]):
    print(d.column, d.action, d.kind, d.reason)

Decisions come from the column's role in the mapping, its name, its Arrow type and a sample of its values;
reasons name the rule, never a value. The console shows them before a redaction and the audit record keeps them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from medcore.errors import MedcoreError
from medcore.phi.files import SAMPLE_VALUES, FileScan, scan_file, stringify
from medcore.phi.surrogates import DATE_FORMS

if TYPE_CHECKING:
    from medcore.data.manifest import ColumnMapping
    from medcore.phi.config import RedactionConfig
    from medcore.workspace import Workspace

Action = Literal["redact", "pseudonymise", "shift_dates", "year_only", "cap_age", "surrogate", "drop", "keep"]
ACTIONS: dict[str, str] = {
    "redact": "PHI spans in the text are found and replaced, as in the notes",
    "pseudonymise": "each value becomes a keyed pseudonym: equal values stay equal, so grouping survives",
    "shift_dates": "dates move by the patient's own offset, the one the notes use",
    "year_only": "dates keep only their year; a year implying an age over 89 is removed",
    "cap_age": "ages over 89 become 90 ('90+' in text): Safe Harbor's 90-or-older category",
    "surrogate": "each value becomes a consistent realistic fake of the same kind",
    "drop": "the column is removed from the output",
    "keep": "the column is copied unchanged",
}
ROW_COLUMN = "source_row"  # the import's record number (medcore.data.importer): a row number, not PHI

# Name rules work on the column name's words: "patientDOB", "patient_dob" and "Patient DOB" -> patient, dob.
ID_WORDS = {"id", "ids", "mrn", "pid", "uid", "uuid", "guid", "ssn", "nhs", "npi", "account", "acct", "phone",
            "telephone", "tel", "mobile", "fax", "pager", "email", "url", "uri", "website", "ip", "ipaddr",
            "ipv4", "ipv6", "username", "login", "license", "licence", "passport", "vin", "plate", "serial",
            "insurance", "medicaid", "medicare", "beneficiary"}  # fmt: skip
ID_COMPOUNDS = ("patientid", "recordid", "medicalrecord", "socialsecurity", "phonenumber", "emailaddress",
                "ipaddress", "accountnumber", "healthplan", "membernumber")  # fmt: skip
ID_SUFFIXES = {"number", "num", "no", "nbr"}  # "record_no", "visit_num": an identifier when it ends the name
DATE_WORDS = {"date", "dob", "birth", "birthday", "birthdate", "born", "admit", "admission", "admitted",
              "discharge", "discharged", "dod", "death", "deceased", "died", "datetime", "timestamp"}  # fmt: skip
WEAK_DATE_WORDS = {"time", "dt", "ts", "day", "year", "when"}  # a date column only if the values are dates
AGE_WORDS = {"age", "ages"}
GIVEN_COMPOUNDS = ("firstname", "givenname", "forename", "middlename")
FAMILY_COMPOUNDS = ("lastname", "surname", "familyname", "maidenname")
PERSON_WORDS = {"name", "names", "fullname", "relative", "relatives", "kin", "nok", "contact", "emergency",
                "guardian", "spouse", "mother", "father", "parent", "physician", "doctor", "provider", "nurse",
                "clinician", "attending", "surgeon", "author", "caregiver", "pcp", "referrer", "referring",
                "signer", "witness", "resident", "proxy"}  # fmt: skip
PLACE_WORDS = {"address": "street", "addr": "street", "street": "street", "address1": "street",
               "address2": "street", "city": "city", "town": "city", "village": "city", "county": "city",
               "precinct": "city", "zip": "zip", "zipcode": "zip", "postcode": "zip", "postal": "zip",
               "postalcode": "zip", "employer": "organization"}  # fmt: skip
STATE_CONTEXT = {"home", "residence", "mailing", "patient", "pt", "address", "us"}
GEO_WORDS = {"latitude", "longitude", "lat", "lon", "lng", "geo", "geocode", "gps", "coordinates"}
# Words that make "drug_name", "provider_type" or "address_verified" a category, not a person or a place.
NOT_PERSON_WORDS = {"drug", "medication", "med", "meds", "test", "lab", "procedure", "diagnosis", "dx", "file",
                    "product", "brand", "generic", "unit", "department", "dept", "service", "specialty", "model",
                    "column", "field", "variable", "study", "organism", "vaccine", "allergen", "allergy", "type",
                    "status", "flag", "count", "total", "score", "rate", "level", "category", "class", "group",
                    "band", "kind", "method", "source", "verified", "valid", "present", "missing", "known",
                    "length", "note", "notes", "text", "comment", "comments", "summary", "narrative", "report",
                    "description", "remarks", "instructions"}  # fmt: skip

ID_VALUE = re.compile(
    r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"  # e-mail
    r"|(?:https?://|www\.)\S+"  # URL
    r"|(?:\d{1,3}\.){3}\d{1,3}"  # IPv4
    r"|(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}"  # IPv6
    r"|\d{3}-\d{2}-\d{4}"  # SSN
    r"|\+?\d{0,3}[\s.-]?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}"  # phone, fax
    r"|[A-Za-z]{0,4}[#:-]?\s?\d{5,}[A-Za-z0-9-]*"  # MRN-like: optional prefix, five or more digits
)
SHARE = 0.5  # a rule on values fires when at least this share of the sampled values match
DATE_SHARE = 0.8  # stricter for dates: "3/4" or "2-1" can be a dose or a score
FREE_TEXT_WORDS = 4  # a value of at least this many words is a sentence, not a category
MIN_ID_DIGITS = 6  # numbers this long, unlabelled, are treated as record numbers


class ColumnDecision(BaseModel):
    """What redaction does with one column, and why (names and rules only, never a value)."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(description="Column name.")
    action: Action = Field(description="; ".join(f"{k}: {v}" for k, v in ACTIONS.items()) + ".")
    kind: str = Field(description="What the column was recognised as: text, identifier, date, person_name, ...")
    reason: str = Field(description="The rule that decided, in words for the console and the report.")


def check_overrides(
    columns: Iterable[str], mapping: ColumnMapping, keep: Iterable[str] = (), drop: Iterable[str] = ()
) -> None:
    """Refuse unknown columns, a column both kept and dropped, and overrides on the mapped text columns."""
    columns, keep, drop = list(columns), set(keep), set(drop)
    not_phi = set(mapping.not_phi)
    unknown = sorted((keep | drop | not_phi) - set(columns))
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (columns are: {', '.join(columns)})")
    if keep & drop:
        problems.append(f"column(s) {', '.join(sorted(keep & drop))} are both kept and dropped")
    texts = sorted((keep | drop | not_phi) & set(text_roles(mapping)))
    if texts:
        problems.append(
            f"{', '.join(texts)} are mapped text columns, always redacted (they cannot be kept or dropped)"
        )
    if problems:
        raise MedcoreError(f"Column overrides: {'; '.join(problems)}. Fix the --keep/--drop/--not-phi lists.")


def text_roles(mapping: ColumnMapping) -> list[str]:
    """The mapped text columns (note, second text of a pair, prompt, response): always redacted as notes are."""
    roles = (mapping.text, mapping.text_pair, mapping.prompt, mapping.response)
    return list(dict.fromkeys(c for c in roles if c))


def decide_columns(
    mapping: ColumnMapping,
    samples: dict[str, list],
    types: dict,
    mode: str,
    *,
    keep: Iterable[str] = (),
    drop: Iterable[str] = (),
    text_columns: Iterable[str] = (),
    config: RedactionConfig | None = None,
) -> list[ColumnDecision]:
    """One decision per column of `types` (column -> Arrow type), in that order.

    Args:
        mapping: the dataset's roles; `mapping.not_phi` columns are kept.
        samples: column -> up to a few hundred non-missing values (the mapped text columns need none).
        mode: "safe-harbor" or "research" (dates, names and places differ).
        keep, drop: the user's overrides for this run.
        text_columns: more columns to redact as text (a file's --text-field list).
        config: detection settings for the last check (PHI found in the sampled values); None skips it.

    Raises:
        MedcoreError: an override names an unknown column, a text column, or keeps and drops one column.
    """
    import pyarrow as pa

    check_overrides(types, mapping, keep, drop)
    keep, drop = set(keep), set(drop)
    texts = set(text_roles(mapping)) | set(text_columns)
    decisions = []
    for column, arrow_type in types.items():
        values = samples.get(column, [])
        arrow_type = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type  # a categorical
        decision = (
            decide_by_role(column, mapping, texts, keep, drop, arrow_type)
            or decide_by_name(column, values, arrow_type, mode)
            or decide_subgroup(column, mapping)
            or decide_by_values(column, values, arrow_type, mode)
        )
        decisions.append(decision)
    if config is not None:
        decisions = [check_sampled_phi(d, samples.get(d.column, []), config) for d in decisions]
    return decisions


def decide_by_role(column, mapping, texts, keep, drop, arrow_type) -> ColumnDecision | None:
    import pyarrow as pa

    def decided(action: str, kind: str, reason: str) -> ColumnDecision:
        return ColumnDecision(column=column, action=action, kind=kind, reason=reason)

    if column in texts:
        return decided("redact", "text", "mapped as a text column")
    if column in drop:
        return decided("drop", "user_drop", "dropped at the user's request")
    if column in keep:
        return decided("keep", "user_keep", "kept unchanged at the user's request (audited)")
    if column in mapping.not_phi:
        return decided("keep", "not_phi", "marked as not PHI in the dataset mapping (audited)")
    if column == ROW_COLUMN and pa.types.is_integer(arrow_type):
        return decided("keep", "row_number", "the record's row number in the upload, added at import")
    if column == mapping.label:
        return decided("keep", "label", "mapped as the label")
    if column == getattr(mapping, "spans", None):
        return decided("drop", "spans", "mapped as gold spans: their offsets point into the text before redaction")
    if column in (mapping.id, mapping.patient_id):
        role = "record id" if column == mapping.id else "patient id"
        return decided("pseudonymise", "identifier", f"mapped as the {role}")
    return None


def decide_subgroup(column: str, mapping: ColumnMapping) -> ColumnDecision | None:
    if column in mapping.subgroups:  # after the name rules: a subgroup named "zip" is still a place
        return ColumnDecision(column=column, action="keep", kind="subgroup", reason="mapped as a subgroup column")
    return None


def name_words(column: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(column))
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def decide_by_name(column: str, values: list, arrow_type, mode: str) -> ColumnDecision | None:
    """Identifier, date, age, person and place columns recognised by their name."""
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return None  # "has_phone", "email_verified": a yes/no, not the identifier itself
    words = name_words(column)
    joined = "".join(words)
    safe_harbor = mode == "safe-harbor"
    if set(words) & ID_WORDS or any(c in joined for c in ID_COMPOUNDS) or is_numbered(words):
        return ColumnDecision(column=column, action="pseudonymise", kind="identifier", reason="name says identifier")
    temporal = is_temporal(arrow_type)
    if set(words) & DATE_WORDS or temporal or (set(words) & WEAK_DATE_WORDS and looks_like_dates(values)):
        why = "Arrow type is a date" if temporal else "name says date"
        return date_decision(column, why, safe_harbor)
    if set(words) & AGE_WORDS and values and all(as_number(v) is not None for v in values):
        return ColumnDecision(column=column, action="cap_age", kind="age", reason="name says age, values are numbers")
    if set(words) & GEO_WORDS:
        return ColumnDecision(column=column, action="drop", kind="geocode", reason="name says geographic coordinates")
    if set(words) & NOT_PERSON_WORDS:
        return None
    kind = person_kind(words, joined) or place_kind(words, joined)
    strings = [stringify(v) for v in values]
    if kind is None or is_free_text(strings):
        return None  # "nurse_remarks" full of sentences is a note: redacted as text, not dropped as a name
    if kind == "person_name" and looks_like_ids(strings):  # "contact" holding phone numbers or e-mails
        return ColumnDecision(
            column=column, action="pseudonymise", kind="identifier", reason="values look like contact details"
        )
    what = "person's name" if kind in ("given_name", "family_name", "person_name") else f"{kind.replace('_', ' ')}"
    if safe_harbor:
        return ColumnDecision(column=column, action="drop", kind=kind, reason=f"name says {what} (Safe Harbor)")
    return ColumnDecision(column=column, action="surrogate", kind=kind, reason=f"name says {what} (research)")


def is_numbered(words: list[str]) -> bool:
    return len(words) > 1 and words[-1] in ID_SUFFIXES


def person_kind(words: list[str], joined: str) -> str | None:
    if any(c in joined for c in GIVEN_COMPOUNDS) or ("first" in words and "name" in words):
        return "given_name"
    if any(c in joined for c in FAMILY_COMPOUNDS) or ("last" in words and "name" in words):
        return "family_name"
    return "person_name" if set(words) & PERSON_WORDS or "fullname" in joined else None


def place_kind(words: list[str], joined: str) -> str | None:
    for word in words:
        if word in PLACE_WORDS:
            return PLACE_WORDS[word]
    if "zipcode" in joined or "postcode" in joined:
        return "zip"
    if "state" in words and (words == ["state"] or set(words) & STATE_CONTEXT):
        return "state"
    return None


def date_decision(column: str, why: str, safe_harbor: bool) -> ColumnDecision:
    if safe_harbor:
        return ColumnDecision(column=column, action="year_only", kind="date", reason=f"{why} (Safe Harbor)")
    return ColumnDecision(column=column, action="shift_dates", kind="date", reason=f"{why} (research)")


def decide_by_values(column: str, values: list, arrow_type, mode: str) -> ColumnDecision:
    """What the sampled values look like: identifiers, dates, free text, nested or binary data, or categories."""
    import pyarrow as pa

    def decided(action: str, kind: str, reason: str) -> ColumnDecision:
        return ColumnDecision(column=column, action=action, kind=kind, reason=reason)

    binary = pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)
    # Nested: a list/struct column, or JSON objects in a JSONL file (stored as their JSON text).
    nested = pa.types.is_nested(arrow_type) or (values and all(isinstance(v, dict | list) for v in values))
    if binary or nested:
        what = "binary" if binary else "nested (lists or objects)"
        return decided("drop", "unchecked", f"{what} values cannot be checked for PHI; mark it not PHI to keep it")
    if not values:
        return decided("keep", "empty", "no values in the data")
    if not (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)):
        if share(values, looks_like_number_id) >= 1 - SHARE / 2:
            return decided("pseudonymise", "identifier", f"values look like record numbers ({MIN_ID_DIGITS}+ digits)")
        return decided("keep", "numeric", "numbers with no identifier signal")
    strings = [stringify(v) for v in values]  # a mixed column (12345678 and "A-1234") is judged as the text it stores
    if looks_like_ids(strings):
        return decided("pseudonymise", "identifier", "values look like identifiers (MRN, phone, e-mail, URL, IP)")
    if looks_like_dates(strings):
        return date_decision(column, "values are dates", mode == "safe-harbor")
    if is_free_text(strings):
        return decided("redact", "free_text", f"free text ({FREE_TEXT_WORDS}+ words in most sampled values)")
    return decided("keep", "categorical", "short values with no identifier signal")


def check_sampled_phi(decision: ColumnDecision, values: list, config: RedactionConfig) -> ColumnDecision:
    """A kept text column in which the detector finds PHI in a sampled value is redacted like the notes."""
    if decision.action != "keep" or decision.kind != "categorical":
        return decision
    from medcore.phi.detect import detect_texts

    distinct = list(dict.fromkeys(v for v in values if isinstance(v, str) and v.strip()))
    hits = sum(1 for spans in detect_texts(distinct, config) if spans)
    if not hits:
        return decision
    reason = f"the PHI detector found PHI in {hits} of {len(distinct)} distinct sampled values"
    return ColumnDecision(column=decision.column, action="redact", kind="phi_found", reason=reason)


def looks_like_ids(strings: list[str]) -> bool:
    return share(strings, lambda v: ID_VALUE.fullmatch(v.strip()) is not None or looks_like_number_id(v)) >= SHARE


def is_free_text(strings: list[str]) -> bool:
    return share(strings, lambda v: len(v.split()) >= FREE_TEXT_WORDS) >= SHARE


def share(values: list, test) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


def is_temporal(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_temporal(arrow_type) and not (pa.types.is_time(arrow_type) or pa.types.is_duration(arrow_type))


def looks_like_dates(values: list) -> bool:
    """Most sampled values are dates: datetime objects, or text in a written date form (not a bare "3/4")."""
    if not values:
        return False
    return share(values, lambda v: isinstance(v, dt.date) or (isinstance(v, str) and is_date_text(v))) >= DATE_SHARE


def is_date_text(text: str) -> bool:
    """Text in a written date form (a bare "3/4" is not: too often a score or a dose)."""
    text = text.strip()
    return iso_date(text) is not None or any(form.fullmatch(text) for form in DATE_FORMS[:-1])


def iso_date(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if len(text) >= 10 else None
    except ValueError:
        return None


def parse_date(text: str) -> dt.date | None:
    """The date written in `text` (03/14/2023, 2023-03-14, 14 Mar 2023, ISO date-times); None without a year."""
    text = text.strip()
    parsed = iso_date(text)
    if parsed is not None:
        return parsed.date()
    for form in DATE_FORMS:
        match = form.fullmatch(text)
        if match:
            return match_date(match)
    return None


def match_date(match: re.Match) -> dt.date | None:
    from medcore.phi.surrogates import MONTHS

    g = match.groupdict()
    month = int(g["m"]) if g.get("m") else MONTHS.get((g.get("mon") or "").lower().rstrip("."))
    year = int(g["y"]) if g.get("y") else None
    if year is None:
        return None  # a day and month without a year: a date, but no year to keep
    if len(g["y"]) == 2:
        year += 2000 if year < 50 else 1900
    try:
        return dt.date(year, month, int(g["d"]) if g.get("d") else 15)
    except (TypeError, ValueError):
        return None


def as_number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("+"))
        except ValueError:
            return None
    return None


def looks_like_number_id(value) -> bool:
    number = as_number(value)
    return number is not None and number == int(number) and abs(number) >= 10 ** (MIN_ID_DIGITS - 1)


def preview_column_decisions(
    ws: Workspace,
    name: str,
    mode: str = "safe-harbor",
    *,
    keep: Iterable[str] = (),
    drop: Iterable[str] = (),
    not_phi: Iterable[str] = (),
    config: RedactionConfig | None = None,
) -> list[ColumnDecision]:
    """The decisions `redact_dataset(ws, name, mode, keep=..., drop=..., not_phi=...)` would apply, without redacting.

    Loads the PHI detector (seconds, once per process) for the sampled-values check.
    """
    from medcore.data.manifest import read_manifest
    from medcore.phi.config import build_config

    manifest = read_manifest(ws, name)
    mapping = with_not_phi(manifest.mapping, not_phi)
    scan = scan_dataset(ws, name, skip=text_roles(mapping))
    config = config or build_config(mode=mode)
    return decide_columns(mapping, scan.samples, scan.types, mode, keep=keep, drop=drop, config=config)


def with_not_phi(mapping: ColumnMapping, not_phi: Iterable[str]) -> ColumnMapping:
    """The mapping with more columns marked not PHI (a copy; the dataset's own manifest is not changed)."""
    merged = list(dict.fromkeys([*mapping.not_phi, *not_phi]))
    return mapping.model_copy(update={"not_phi": merged})


def scan_dataset(ws: Workspace, name: str, skip: Iterable[str] = ()) -> FileScan:
    """Columns, types and value samples over a dataset's splits (types unified: a column empty in one split
    takes its type from the others)."""
    import pyarrow as pa

    from medcore.data.manifest import SPLITS, split_path

    merged = FileScan()
    for split in SPLITS:
        path = split_path(ws, name, split)
        if not path.exists():
            raise MedcoreError(f"Dataset '{name}' has no '{split}' split at {path}. Re-import the dataset.")
        scan = scan_file(path, skip=skip)
        for column in scan.columns:
            if column not in merged.types:
                merged.columns.append(column)
            if column not in merged.types or pa.types.is_null(merged.types[column]):
                merged.types[column] = scan.types[column]
            for value in scan.samples.get(column, []):
                merged.add(column, value, SAMPLE_VALUES)
    return merged
