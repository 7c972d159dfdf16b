"""PHI protection: detect, redact or surrogate the 18 HIPAA identifiers, with a hash-chained audit log.

Imports are lazy so `import medcore.phi` stays cheap; spaCy loads on the first detection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

_EXPORTS = {
    "preview_text": "medcore.phi.redact",
    "Preview": "medcore.phi.redact",
    "Span": "medcore.phi.detect",
    "detect_text": "medcore.phi.detect",
    "detect_texts": "medcore.phi.detect",
    "redact_texts": "medcore.phi.redact",
    "redact_file": "medcore.phi.pipeline",
    "redact_dataset": "medcore.phi.datasets",
    "read_redaction_report": "medcore.phi.datasets",
    "ColumnDecision": "medcore.phi.columns",
    "decide_columns": "medcore.phi.columns",
    "preview_column_decisions": "medcore.phi.columns",
    "verify_redaction": "medcore.phi.verify",
    "RedactionCheck": "medcore.phi.verify",
    "RedactionReport": "medcore.phi.pipeline",
    "RedactionConfig": "medcore.phi.config",
    "build_config": "medcore.phi.config",
    "append_audit_record": "medcore.phi.audit",
    "verify_audit_log": "medcore.phi.audit",
    "read_audit_log": "medcore.phi.audit",
    "load_salt": "medcore.phi.audit",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from medcore.phi.audit import append_audit_record, load_salt, read_audit_log, verify_audit_log  # noqa: F401
    from medcore.phi.columns import ColumnDecision, decide_columns, preview_column_decisions  # noqa: F401
    from medcore.phi.config import RedactionConfig, build_config  # noqa: F401
    from medcore.phi.datasets import read_redaction_report, redact_dataset  # noqa: F401
    from medcore.phi.detect import Span, detect_text, detect_texts  # noqa: F401
    from medcore.phi.pipeline import RedactionReport, redact_file  # noqa: F401
    from medcore.phi.redact import Preview, preview_text, redact_texts  # noqa: F401
    from medcore.phi.verify import RedactionCheck, verify_redaction  # noqa: F401


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medcore.phi' has no attribute '{name}'")
