"""The one exception type a user sees: a message that says what failed and what to do next."""

from __future__ import annotations

import re

# A message that asks the user to set something names the setting once, as `{option:NAME}` or `{option:NAME=VALUE}`;
# each surface says it in its own words: the CLI as a flag, Python as an argument, the console as its widget's label
# (app/components.py holds those). So the console never tells a clinician to "pass --overwrite".
OPTION = re.compile(r"\{option:([a-z_]+)(?:=([^}]*))?\}")
PYTHON_OPTIONS = {
    "overwrite": "pass overwrite=True",
    "allow_unredacted": "set allow_unredacted=True in the run spec (audited)",
    "nproc_per_node": "set nproc_per_node={value}",
    "max_length": "set max_length to {value}",
    "run_id": "set run_id={value} on every node",
    "resume": "set resume=True",
    "redact": "redact it with medcore.phi.datasets.redact_dataset(ws, '{value}', ...)",
    "reredact": "redact its source again with medcore.phi.datasets.redact_dataset(..., overwrite=True)",
}
CLI_OPTIONS = {
    "overwrite": "pass --overwrite",
    "allow_unredacted": "add allow_unredacted=true to the command (audited)",
    "nproc_per_node": "use --nproc {value}",
    "max_length": "use max_length={value}",
    "run_id": "add run_id={value} to every node's command",
    "resume": "add resume=true to the command",
    "redact": "run `medcore data redact {value}`",
    "reredact": "re-run `medcore data redact {value}`",
}


def render_options(message: str, phrases: dict[str, str]) -> str:
    """`message` with each {option:...} in the words of `phrases` (an unknown option keeps its plain name)."""

    def say(match: re.Match) -> str:
        name, value = match.group(1), match.group(2) or ""
        return phrases.get(name, f"set {name}" + (f"={value}" if value else "")).format(value=value)

    return OPTION.sub(say, message)


class MedcoreError(Exception):
    """A user-facing error. The CLI prints it without a traceback; the console shows it with st.error.

    Messages name the file, column, key or rank at fault and the next step, and never hold
    patient text: refer to records by row number or hash. A setting the user should change is written
    {option:NAME} (see OPTION): str() says it as a Python argument, render() in a surface's own words.
    """

    def __str__(self) -> str:
        return render_options(super().__str__(), PYTHON_OPTIONS)

    def render(self, phrases: dict[str, str]) -> str:
        return render_options(super().__str__(), phrases)


def describe_validation_error(exc, what: str, fields=(), help_hint: str = "") -> str:
    """A pydantic ValidationError -> one line naming every bad field of `what`, the one formatter for all configs.

    Args:
        exc: the pydantic.ValidationError.
        what: the config and where it came from, e.g. "run spec (spec.yaml)", "LoRA preset small.yaml".
        fields: the model's field names, to suggest one for a misspelt key.
        help_hint: where to read about the fields, said when no close name exists.
    """
    import difflib

    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(where, list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else (f"; {help_hint}" if help_hint else "")
            parts.append(f"unknown field '{where}'{hint}")
        elif err["type"] == "missing":
            parts.append(f"'{where}' is required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            # The offending value is shown for configs only; never put record content into an error.
            parts.append(f"'{where}': {msg} (got {err.get('input')!r})" if where else msg)
    return f"Invalid {what}: " + "; ".join(parts) + "."


def validated(model, data: dict, what: str, help_hint: str = ""):
    """`model.model_validate(data)`, with every problem in one MedcoreError (describe_validation_error)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MedcoreError(describe_validation_error(exc, what, model.model_fields, help_hint)) from None
