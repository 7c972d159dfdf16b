"""MedCore: fine-tune and evaluate language models on clinical text without leaking PHI."""

__version__ = "0.1.0"

from medcore.errors import MedcoreError  # noqa: E402

__all__ = ["MedcoreError", "__version__"]
