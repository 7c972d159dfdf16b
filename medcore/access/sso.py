"""Single sign-on: a hospital identity provider (OIDC, through Streamlit's st.login) signs people in, MedCore decides
what they may do.

The provider proves who someone is (a verified e-mail address); it grants nothing. A MedCore user is linked to one
such identity by an admin (`medcore users link NAME IDENTITY`), and a sign-in whose identity no user is linked to is
refused. So the role matrix, dataset grants, lockouts and the audit trail stay MedCore's, with or without SSO.
Each sign-in appends one "login" record (method "sso"); an identity no user holds is recorded as a hash only.

The provider is configured in `.streamlit/secrets.toml` under `[auth]` (redirect_uri, cookie_secret, and client_id,
client_secret, server_metadata_url either in `[auth]` itself or per provider in `[auth.NAME]`), as Streamlit's
st.login expects; `oidc_providers` reads which providers there are.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from medcore.access.actor import Actor, require
from medcore.access.audit import append_audit_record
from medcore.access.users import UNKNOWN, audited, existing, name_hash, named, users_locked
from medcore.errors import MedcoreError

SSO_FIELD = "sso"  # in a user's entry of the users file: the linked identity (a lower-case e-mail address)
IDENTITY = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")  # what st.login needs for one provider


def oidc_providers(auth: Mapping | None) -> list[str | None]:
    """The providers `[auth]` of secrets.toml configures: None for one given in `[auth]` itself, else the names of
    its `[auth.NAME]` sections; [] when SSO is not configured (no redirect_uri or cookie_secret)."""
    if not auth or not auth.get("redirect_uri") or not auth.get("cookie_secret"):
        return []
    if all(auth.get(key) for key in PROVIDER_KEYS):
        return [None]
    return [name for name, section in auth.items() if isinstance(section, Mapping) and all(section.get(k) for k in
            PROVIDER_KEYS)]  # fmt: skip


def identity_of(claims: Mapping) -> str:
    """The identity a sign-in proves: the provider's e-mail claim, lower-cased, unless the provider says it is not
    verified.

    Raises:
        MedcoreError: no e-mail claim, or one marked unverified.
    """
    email = str(claims.get("email") or "").strip().lower()
    if not IDENTITY.match(email):
        raise MedcoreError(
            "The identity provider did not give an e-mail address for this sign-in; ask its administrator to release "
            "the `email` claim (scope `openid email`) to MedCore."
        )
    if claims.get("email_verified") is False:
        raise MedcoreError("The identity provider says this e-mail address is not verified; MedCore cannot use it.")
    return email


def link_identity(ws, actor: Actor, name: str, identity: str | None) -> None:
    """Link user `name` to a sign-on identity (None unlinks). One identity, one user.

    Raises:
        MedcoreError: not an admin, no such user, a malformed identity, or one already linked to another user.
    """
    identity = identity.strip().lower() if identity else None
    kind = "user_linked" if identity else "user_unlinked"
    fields = {"identity_sha256": name_hash(identity)} if identity else {}
    with audited(ws, actor, kind, **named(name), **fields), users_locked(ws) as users:
        require(actor, "manage_users")
        entry = existing(users, name)
        if identity is None:
            entry.pop(SSO_FIELD, None)
            return
        if not IDENTITY.match(identity):
            raise MedcoreError(f"'{identity}' is not an e-mail address: link the address the identity provider gives.")
        holder = next((other for other, e in users.items() if e.get(SSO_FIELD) == identity and other != name), None)
        if holder:
            raise MedcoreError(f"That identity is linked to user '{holder}' already: unlink it there first.")
        entry[SSO_FIELD] = identity


def sso_login(ws, claims: Mapping, *, clock: Callable[[], float] = time.time) -> Actor:
    """The Actor of the MedCore user linked to the identity a sign-in proved; one "login" record either way.

    Raises:
        MedcoreError: no usable identity, no user linked to it, or that user is locked out.
    """
    try:
        identity = identity_of(claims)
    except MedcoreError as exc:
        append_audit_record(ws, "login", actor=UNKNOWN, outcome="refused", method="sso", reason=str(exc))
        raise
    with users_locked(ws) as users:
        name, entry = next(((n, e) for n, e in users.items() if e.get(SSO_FIELD) == identity), (None, None))
    if entry is None:
        append_audit_record(ws, "login", actor=UNKNOWN, outcome="refused", method="sso",
                            identity_sha256=name_hash(identity), reason="no user linked")  # fmt: skip
        raise MedcoreError(
            f"No MedCore user is linked to {identity}. Ask a MedCore admin to link you: "
            f"`medcore users link USER {identity}`."
        )
    actor = Actor(name, entry["role"], frozenset(entry.get("datasets", ())))
    if entry.get("locked_until", 0.0) > clock():
        append_audit_record(ws, "login", actor=actor, outcome="refused", method="sso", reason="locked")
        raise MedcoreError(f"User '{name}' is locked; an admin can unlock it (`medcore users unlock {name}`).")
    append_audit_record(ws, "login", actor=actor, outcome="ok", method="sso")
    return actor
