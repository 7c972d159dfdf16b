"""The role matrix, as data: which roles may take each action. Change a permission here and nowhere else.

admin: everything. ml-engineer: data, training, evaluation runs, serving (works on redacted data: no raw PHI
preview). clinician-reviewer: PHI preview of the datasets granted to them, evaluation review, chat. viewer: runs and
metrics only.
"""

from __future__ import annotations

ADMIN, ML_ENGINEER, CLINICIAN, VIEWER = "admin", "ml-engineer", "clinician-reviewer", "viewer"
ROLES: tuple[str, ...] = (VIEWER, CLINICIAN, ML_ENGINEER, ADMIN)  # least to most trusted: refusals suggest the first
EVERYONE = frozenset(ROLES)

# action -> (what it reads as in a refusal: "user X (viewer) may not <phrase>", the roles allowed)
ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "view_runs": ("see runs", EVERYONE),
    "view_metrics": ("see metrics and evaluation results", EVERYONE),
    "view_datasets": ("see datasets", frozenset({ADMIN, ML_ENGINEER, CLINICIAN})),
    "import_data": ("import or upload data", frozenset({ADMIN, ML_ENGINEER})),
    "redact_data": ("redact datasets", frozenset({ADMIN, ML_ENGINEER})),
    "preview_phi": ("preview un-redacted text", frozenset({ADMIN, CLINICIAN})),
    "train_unredacted": ("override the redaction check", frozenset({ADMIN})),
    "launch_run": ("launch runs", frozenset({ADMIN, ML_ENGINEER})),
    "cancel_run": ("cancel or stop runs", frozenset({ADMIN, ML_ENGINEER})),
    "resume_run": ("resume runs", frozenset({ADMIN, ML_ENGINEER})),
    "run_eval": ("launch evaluations", frozenset({ADMIN, ML_ENGINEER})),
    "review_eval": ("give review verdicts", frozenset({ADMIN, CLINICIAN})),
    "manage_reviews": ("create, close or export reviews", frozenset({ADMIN, ML_ENGINEER})),
    "export_model": ("export or merge models", frozenset({ADMIN, ML_ENGINEER})),
    "serve_model": ("start or stop model servers", frozenset({ADMIN, ML_ENGINEER})),
    "chat": ("chat with served models", frozenset({ADMIN, ML_ENGINEER, CLINICIAN})),  # prompts are PHI-guarded
    "view_audit": ("read the audit log", frozenset({ADMIN})),
    "manage_users": ("manage users", frozenset({ADMIN})),
}

# Actions on a dataset that non-admins may take only on datasets granted to them (`medcore users grant`).
GRANTED_ACTIONS = frozenset({"preview_phi"})


def allowed_roles(action: str) -> frozenset[str]:
    """The roles that may take `action` (a ValueError for an action not in the matrix: a programming error)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action '{action}'; actions are: {', '.join(ACTIONS)}")
    return ACTIONS[action][1]


def is_allowed(role: str, action: str) -> bool:
    return role in allowed_roles(action)
