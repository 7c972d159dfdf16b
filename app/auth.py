"""Who is using the console: a login form when users are configured, local mode (admin) on loopback otherwise.

The engine decides (medcore.access): the role matrix, password checks with lockout, session expiry, audit records.
This module only draws the form and keeps the session token in the browser session's state. Where an identity
provider is configured (`[auth]` in .streamlit/secrets.toml), the page also offers single sign-on through st.login;
the identity it proves becomes a MedCore session only for a user linked to it (medcore.access.sso).
"""

from __future__ import annotations

import getpass

import streamlit as st

from medcore.access.actor import Actor
from medcore.access.bind import check_bind
from medcore.access.roles import ADMIN
from medcore.access.sessions import Sessions
from medcore.access.sso import oidc_providers
from medcore.errors import MedcoreError
from medcore.workspace import Workspace, get_workspace

TOKEN = "_medcore_session_token"  # session_state: the login token (never shown, never stored on disk)


@st.cache_resource(show_spinner=False)
def sessions(root: str) -> Sessions:
    """One session table per console process (sessions end when the console restarts)."""
    return Sessions(get_workspace(root))


def signed_in(ws: Workspace, configured: bool) -> Actor:
    """The Actor of this browser session; draws the login form and stops the page until someone logs in.

    configured: whether any user exists (logins_configured, read once per page run by the caller).
    """
    if not configured:
        check_bind(st.get_option("server.address"), ws)  # beyond loopback without users: refused
        return Actor(f"local:{getpass.getuser()}", ADMIN)
    token = st.session_state.get(TOKEN)
    if token:
        try:
            return sessions(str(ws.root)).actor(token)
        except MedcoreError as exc:
            st.session_state.pop(TOKEN, None)
            st.warning(str(exc), icon=":material/lock_clock:")
            if signed_on():  # the provider's cookie outlives MedCore's session: sign on again for a new one
                st.logout()
    elif signed_on():  # back from the identity provider: a session for the user linked to that identity
        try:
            st.session_state[TOKEN] = sessions(str(ws.root)).login_sso(st.user.to_dict())
        except MedcoreError as exc:
            st.error(str(exc), icon=":material/error:")
            st.button("Sign out of single sign-on", on_click=st.logout)
            st.stop()
        st.rerun()
    login_form(ws)
    st.stop()


def providers() -> list[str | None]:
    """The identity providers secrets.toml configures for st.login ([] without a secrets file or an [auth] table)."""
    if not st.secrets.load_if_toml_exists():
        return []
    return oidc_providers(st.secrets.get("auth"))


def signed_on() -> bool:
    return bool(providers()) and bool(getattr(st.user, "is_logged_in", False))


def login_form(ws: Workspace) -> None:
    st.title("Log in to MedCore")
    for provider in providers():
        label = "Sign in with single sign-on" + (f" ({provider})" if provider else "")
        st.button(label, type="primary", icon=":material/login:", on_click=st.login, args=(provider,) if provider else (),
                  key=f"sso-{provider or 'default'}")  # fmt: skip
    with st.form("login"):
        user = st.text_input("User name")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Log in", type="primary"):
            try:
                st.session_state[TOKEN] = sessions(str(ws.root)).login(user.strip(), password)
            except MedcoreError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                st.rerun()


def sidebar(actor: Actor, ws: Workspace, configured: bool) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{actor.user}** ({actor.role})")
        if configured and st.button("Log out", key="logout"):
            sessions(str(ws.root)).logout(st.session_state.pop(TOKEN, None))
            if signed_on():
                st.logout()  # and out of the identity provider's cookie, or the next page would sign on again
            st.rerun()
