"""Access control: users and roles, the Actor every engine call on a user's behalf carries, login sessions, and the
HMAC-signed audit log that records who did what.

The role matrix is `roles.ACTIONS`; `actor.require(actor, action, obj)` is the one check, and `acting.acting` wraps
an action on a user's behalf in it plus one audit record of the outcome; `users.authenticate` and
`sessions.Sessions` serve the console's login; `audit` is the log (medcore.phi.audit adds the citations to check),
`audit_view` its rows for the Audit page.
"""
