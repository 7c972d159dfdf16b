"""The one exception type a user sees: a message that says what failed and what to do next."""


class MedcoreError(Exception):
    """A user-facing error. The CLI prints it without a traceback; the console shows it with st.error.

    Messages name the file, column, key or rank at fault and the next step, and never hold
    patient text: refer to records by row number or hash.
    """
