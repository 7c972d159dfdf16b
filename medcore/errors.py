"""The one exception type a user sees: a message that says what failed and what to do next."""


class MedcoreError(Exception):
    """A user-facing error. The CLI prints it without a traceback; the console shows it with st.error.

    Messages name the file, column, key or rank at fault and the next step, and never hold
    patient text: refer to records by row number or hash.
    """


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
