"""Where MedCore keeps its state: one workspace folder (MEDCORE_HOME, default ./workspace)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medcore.errors import MedcoreError

ENV_VAR = "MEDCORE_HOME"


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Every process (console, CLI, job, notebook) derives them the same way."""

    root: Path

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def evals(self) -> Path:
        return self.root / "evals"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def models(self) -> Path:
        """Models MedCore builds itself (e.g. tiny-llama) and merged exports."""
        return self.root / "models"

    @property
    def catalog(self) -> Path:
        """The DuckDB catalog file (short write transactions only; see medcore.store)."""
        return self.root / "catalog.duckdb"

    def ensure(self) -> Workspace:
        """Create the folders; fail with a clear message when the location is not writable."""
        try:
            for folder in (self.datasets, self.runs, self.evals, self.audit, self.models):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MedcoreError(
                f"Cannot create the workspace at {self.root}: {exc.strerror}. "
                f"Set {ENV_VAR} to a writable folder."
            ) from None
        return self


def get_workspace(root: str | os.PathLike | None = None, *, create: bool = True) -> Workspace:
    """The workspace at `root`, else $MEDCORE_HOME, else ./workspace."""
    chosen = Path(root or os.environ.get(ENV_VAR) or "workspace").expanduser().resolve()
    ws = Workspace(chosen)
    return ws.ensure() if create else ws
