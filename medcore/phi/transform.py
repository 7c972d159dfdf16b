"""Apply column decisions to records: pseudonyms, shifted or year-only dates, capped ages, surrogates, drops.

Columns whose action is `redact` pass through unchanged here: the pipeline redacts them with the notes. Values
that cannot be transformed safely (a date that does not parse, a year implying an age over 89) become null and
are counted per column, by row number only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from medcore.phi.columns import ColumnDecision, as_number, parse_date
from medcore.phi.config import RedactionConfig
from medcore.phi.files import is_missing, span_type
from medcore.phi.redact import DATASET_KEY, Redactor, name_pools
from medcore.phi.surrogates import AGE_OVER_89, date_offset_days, keyed_int, match_case, shift_date

MAX_AGE = 89  # Safe Harbor: ages over 89, and dates implying them, are identifiers
PLACE_SUBTYPES = {"street": "STREET", "city": "CITY", "state": "STATE", "zip": "ZIP", "organization": "ORGANIZATION"}
PASS_THROUGH = ("keep", "redact")


def value_key(value) -> str | None:
    """One text form per value, so 123, 123.0 and "123" key the same pseudonym and the same date shift."""
    if is_missing(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def output_type(decision: ColumnDecision, input_type):
    """The Arrow type a column has after its action (None: the column is dropped)."""
    import pyarrow as pa

    action = decision.action
    if action == "drop":
        return None
    if action == "keep":
        return input_type
    if action == "year_only":
        return pa.int64()
    numeric = pa.types.is_integer(input_type) or pa.types.is_floating(input_type)
    if action == "shift_dates" and (pa.types.is_temporal(input_type) or pa.types.is_integer(input_type)):
        return input_type
    if action == "cap_age" and numeric:
        return input_type
    return pa.string()


def output_schema(types: dict, decisions: list[ColumnDecision], span_fields: Iterable[str] = ()):
    """The output file's schema: input columns in order, each with its type after its action, spans last."""
    import pyarrow as pa

    by_column, span_fields = {d.column: d for d in decisions}, list(span_fields)
    fields = []
    for column, input_type in types.items():
        if column in span_fields or column not in by_column:  # no decision: never copied (ColumnApplier.apply)
            continue
        kind = output_type(by_column[column], input_type)
        if kind is not None:
            fields.append(pa.field(column, kind))
    return pa.schema(fields + [pa.field(name, span_type()) for name in span_fields])


class ColumnApplier:
    """Transforms the non-text columns of records; counts what it had to remove in `removed` / `problem_rows`.

    Pseudonyms are keyed by `pseudonym_key`; research-mode dates and surrogates by the workspace salt.
    """

    def __init__(
        self,
        decisions: list[ColumnDecision],
        config: RedactionConfig,
        salt: bytes,
        pseudonym_key: bytes,
        today: dt.date | None = None,
    ):
        self.decisions = {d.column: d for d in decisions}
        self.config, self.salt, self.key = config, salt, pseudonym_key
        self.oldest_year = (today or dt.date.today()).year - MAX_AGE  # earlier years imply an age over 89
        self.removed: dict[str, int] = {}
        self.problem_rows: dict[str, list[int]] = {}
        self._redactor: Redactor | None = None

    def apply(self, row: int, record: dict, patient_key: str | None) -> dict:
        """`record` with each column transformed by its decision; dropped and unknown columns are left out."""
        out = {}
        for column, value in record.items():
            decision = self.decisions.get(column)
            if decision is None or decision.action == "drop":
                continue  # a column no decision covers is never copied blind
            if decision.action in PASS_THROUGH or is_missing(value):
                out[column] = value
                continue
            new, problem = self.transform(decision, value, patient_key)
            if problem:
                self.removed[column] = self.removed.get(column, 0) + 1
                self.problem_rows.setdefault(f"{problem}:{column}", []).append(row)
            out[column] = new
        return out

    def transform(self, decision: ColumnDecision, value, patient_key: str | None) -> tuple[object, str | None]:
        """(new value, problem or None); a problem means the value was removed."""
        action = decision.action
        if action == "pseudonymise":
            return f"{keyed_int(self.key, 'pseudonym', value_key(value)):016x}", None
        if action == "shift_dates":
            shifted = shift_value(value, date_offset_days(self.salt, patient_key or DATASET_KEY))
            return shifted, None if shifted is not None else "unparsed_date"
        if action == "year_only":
            year = year_of(value)
            if year is None:
                return None, "unparsed_date"
            return (year, None) if year >= self.oldest_year else (None, "age_over_89")
        if action == "cap_age":
            return cap_age(value)
        assert action == "surrogate", action
        return self.surrogate(decision.kind, value_key(value)), None

    def surrogate(self, kind: str, text: str) -> str:
        if self._redactor is None:
            self._redactor = Redactor(self.config, self.salt)
        if kind in PLACE_SUBTYPES:
            return self._redactor.surrogate_place(text, PLACE_SUBTYPES[kind])
        if kind == "person_name":
            return self._redactor.surrogate_name(text)
        # A given-name or family-name column: every word from that pool, keyed as the notes key them.
        pool = name_pools()[0 if kind == "given_name" else 1]
        return " ".join(
            match_case(w, pool[keyed_int(self.salt, "name", w.strip(".,'").lower()) % len(pool)]) if len(w) > 1 else w
            for w in text.split(" ")
        )


def shift_value(value, days: int):
    """A date moved by `days`, in its own type and written form; a bare year stays; None when not a date."""
    if isinstance(value, dt.date):  # datetime too
        return value + dt.timedelta(days=days)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 1000 <= value <= 9999 else None  # a year alone has no day to shift
    if not isinstance(value, str):
        return None
    shifted = shift_date(value, days)
    if shifted is not None:
        return shifted
    from medcore.phi.columns import iso_date

    parsed = iso_date(value.strip())
    if parsed is None:
        return None
    separator = "T" if "T" in value else " "
    return (parsed + dt.timedelta(days=days)).isoformat(sep=separator)


def year_of(value) -> int | None:
    if isinstance(value, dt.date):
        return value.year
    number = as_number(value) if not isinstance(value, str) else None
    if number is not None:
        return int(number) if number.is_integer() and 1000 <= number <= 9999 else None
    if isinstance(value, str):
        if value.strip().isdigit() and len(value.strip()) == 4:
            return int(value.strip())
        parsed = parse_date(value)
        return parsed.year if parsed else None
    return None


def cap_age(value) -> tuple[object, str | None]:
    number = as_number(value)
    if number is None:
        return None, "unparsed_age"
    if number <= MAX_AGE:
        return value, None
    if isinstance(value, str):
        return AGE_OVER_89, None
    return type(value)(MAX_AGE + 1), None
