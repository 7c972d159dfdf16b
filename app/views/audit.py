"""Audit page (admins): whether the signed audit log verifies, and who did what, filtered by user, action and date."""

import components as ui
import services
import streamlit as st

ALL = "(all)"

st.title("Audit")
st.caption(
    "One record per action on data, jobs, models, reviews, chat and users, and per login: who, what, when, which "
    "object (by id) and the outcome; never patient text. The same check as `medcore audit verify`."
)


def show_verification() -> None:
    result = services.verify_audit_log()
    for note in result.notes:
        st.info(f"Repaired: {note}.", icon=":material/build:")
    if result.ok:
        st.success(
            f"OK: {result.records} records, signatures and chain intact, {result.checkpoints} checkpoints, every "
            "record that datasets and runs cite is present.",
            icon=":material/verified:",
        )
    else:
        problems = "\n".join(f"- {problem}" for problem in result.problems)
        st.error(f"FAILED: the audit log does not verify ({len(result.problems)} problems):\n\n{problems}")


def choose_filters(users: list[str], actions: list[str]) -> dict:
    cols = st.columns(3)
    user = cols[0].selectbox("User", [ALL, *users], key="audit-user")
    action = cols[1].selectbox("Action", [ALL, *actions], key="audit-action")
    days = cols[2].date_input("Dates", value=(), key="audit-dates", help="A day, or a first and a last day.")
    days = tuple(days) if isinstance(days, list | tuple) else (days,)
    return {
        "user": None if user == ALL else user,
        "action": None if action == ALL else action,
        "since": days[0] if days else None,
        "until": days[-1] if days else None,
    }


with ui.guard("Verifying the audit log"):
    show_verification()
with ui.guard("Reading the audit log", stop=True):
    records, users, actions = services.audit_log()
filters = choose_filters(users, actions)
rows = services.audit_rows(records, **filters)
st.caption(f"{len(rows)} of {len(records)} records, newest first.")
if rows:
    st.dataframe(rows, hide_index=True, width="stretch")
