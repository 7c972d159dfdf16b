"""Entry point of the MedCore console (`make run`): builds the page navigation (and starts the detector warm-up)."""

from pathlib import Path

import auth
import services
import streamlit as st

from medcore.access.bind import logins_configured
from medcore.access.roles import is_allowed
from medcore.errors import MedcoreError

# The page icon ships with the app: a `:material/` page icon makes the browser fetch it from a fonts host, and a
# hospital network blocks that (the console makes no outbound request; tests/test_console_browser.py checks it).
st.set_page_config(
    page_title="MedCore", page_icon=str(Path(__file__).parent / "static" / "medcore-icon.png"), layout="wide"
)

# The order is the user's path: data in, PHI out, train, watch, evaluate, chat. The pages live in views/, not
# pages/: a pages/ folder beside this file makes Streamlit run a deep link (/runs) as an old-style page,
# without this navigation, for a session whose first request it is.
PAGES = [
    st.Page("views/data.py", title="Data", icon=":material/upload_file:", default=True),
    st.Page("views/phi.py", title="PHI", icon=":material/shield_person:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/runs.py", title="Runs", icon=":material/monitoring:"),
    st.Page("views/evaluate.py", title="Evaluate", icon=":material/fact_check:"),
    st.Page("views/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("views/chat.py", title="Chat", icon=":material/chat:"),
]
# Only for roles that may read the log (admins): the page is absent from everyone else's navigation, and the engine
# refuses them the records anyway.
AUDIT_PAGE = st.Page("views/audit.py", title="Audit", icon=":material/policy:")

ws = services.workspace()
configured = logins_configured(ws)  # the users file, read once per page run
try:
    actor = auth.signed_in(ws, configured)  # a login form, and nothing else, until someone is signed in
except MedcoreError as exc:  # bound beyond loopback with no user configured
    st.error(str(exc), icon=":material/lock:")
    st.stop()
st.session_state[services.ACTOR_KEY] = actor  # services check it on every engine call made for this user
auth.sidebar(actor, ws, configured)
services.warm_up()  # the PHI detector loads in the background while the user looks at other pages
st.navigation(PAGES + ([AUDIT_PAGE] if is_allowed(actor.role, "view_audit") else [])).run()
