"""Login sessions of one console process: random tokens with idle and absolute expiry, held in memory only.

Tokens never touch disk (nothing in the workspace or the config folder can be replayed); a console restart logs
everyone out. Each check re-reads the user, so a role change or removal takes effect on the next page run.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from medcore.access.actor import Actor
from medcore.access.audit import append_audit_record
from medcore.access.sso import sso_login
from medcore.access.users import actor_for, authenticate
from medcore.errors import MedcoreError
from medcore.workspace import Workspace

IDLE_S = 30 * 60  # HIPAA's "automatic logoff": 30 minutes without a request
ABSOLUTE_S = 12 * 3600  # one working shift, however active
NO_SESSION = "You are not logged in (or your session ended); log in again."


@dataclass
class Session:
    user: str
    role: str  # at login, for the records of its end; `actor` re-reads the current role
    started: float
    last_seen: float


class Sessions:
    """The console's sessions: `login` -> token, `actor(token)` on every page run, `logout(token)`."""

    def __init__(
        self,
        ws: Workspace,
        *,
        idle_s: float = IDLE_S,
        absolute_s: float = ABSOLUTE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ws, self.idle_s, self.absolute_s, self.clock = ws, idle_s, absolute_s, clock
        self._sessions: dict[str, Session] = {}  # sha256(token) -> session: a memory dump shows no usable token
        self._lock = threading.Lock()  # Streamlit runs each browser session in its own thread

    def login(self, user: str, password: str) -> str:
        """Check the password (audited, with lockout: medcore.access.users.authenticate); return a new token."""
        return self.start(authenticate(self.ws, user, password, clock=self.clock))

    def login_sso(self, claims) -> str:
        """A sign-on identity's claims -> the linked user's new token (audited: medcore.access.sso.sso_login). The
        session then expires like any other, whatever the identity provider's own cookie says."""
        return self.start(sso_login(self.ws, claims, clock=self.clock))

    def start(self, actor: Actor) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._sessions[digest(token)] = Session(actor.user, actor.role, now, now)
        return token

    def actor(self, token: str | None) -> Actor:
        """The Actor of a live session, its idle timer restarted. Raises MedcoreError when there is none or it
        expired (an expiry appends one audit record and ends the session)."""
        now = self.clock()
        with self._lock:
            session = self._sessions.get(digest(token or ""))
            if session is None:
                raise MedcoreError(NO_SESSION)
            expired = expiry(session, now, self.idle_s, self.absolute_s)
            if expired:
                del self._sessions[digest(token)]
            else:
                session.last_seen = now
        if expired:
            actor = Actor(session.user, session.role)
            append_audit_record(self.ws, "session_expired", actor=actor, outcome="refused", reason=expired)
            raise MedcoreError(f"Your session expired ({expired}); log in again.")
        try:
            return actor_for(self.ws, session.user)
        except MedcoreError:
            self.end(token)
            raise

    def logout(self, token: str | None) -> None:
        session = self.end(token)
        if session is not None:
            append_audit_record(self.ws, "logout", actor=Actor(session.user, session.role), outcome="ok")

    def end(self, token: str | None) -> Session | None:
        with self._lock:
            return self._sessions.pop(digest(token or ""), None)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def expiry(session: Session, now: float, idle_s: float, absolute_s: float) -> str:
    """Why the session is over ("" while it is live)."""
    if now - session.started >= absolute_s:
        return f"{absolute_s / 3600:g} hours after login"
    if now - session.last_seen >= idle_s:
        return f"{idle_s / 60:g} minutes without activity"
    return ""
