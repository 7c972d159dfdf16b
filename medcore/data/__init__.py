"""Dataset import: read an upload, validate it against a column mapping, split it and store it in the workspace."""

from __future__ import annotations

import importlib

# Lazy exports: `import medcore.data.manifest` (used by phi/train/store) must not pull in pandas and DuckDB.
_EXPORTS = {
    "ColumnMapping": "medcore.data.manifest",
    "DatasetManifest": "medcore.data.manifest",
    "RedactionInfo": "medcore.data.manifest",
    "load_split": "medcore.data.manifest",
    "read_manifest": "medcore.data.manifest",
    "read_upload": "medcore.data.readers",
    "DatasetValidationError": "medcore.data.validate",
    "ValidationReport": "medcore.data.validate",
    "suggest_mapping": "medcore.data.validate",
    "validate_dataset": "medcore.data.validate",
    "import_dataset": "medcore.data.importer",
    "list_datasets": "medcore.data.importer",
    "delete_dataset": "medcore.data.importer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medcore.data' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
