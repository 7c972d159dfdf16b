"""Where MedCore keeps its secrets (the audit key, the data key, the users file): a private config folder outside the workspace.

The workspace is written by every job and notebook and often sits on shared storage; a secret kept there could be
read or replaced by anyone who can write a dataset. So secrets live in `$MEDCORE_CONFIG_DIR`, else
`$XDG_CONFIG_HOME/medcore`, else `~/.config/medcore` (mode 0700), each file mode 0600, and a path inside the
workspace is refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.workspace import Workspace

CONFIG_ENV = "MEDCORE_CONFIG_DIR"


def config_dir() -> Path:
    """MedCore's private config folder (not created here)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "medcore"


def check_outside_workspace(ws: Workspace, path: Path, what: str, env: str) -> None:
    """Refuse a secret file inside the workspace: anyone who can write datasets could read or swap it."""
    if path.expanduser().resolve().is_relative_to(ws.root.resolve()):
        raise MedcoreError(
            f"The {what} {path} lies inside the workspace {ws.root}, where jobs and notebooks can read and replace "
            f"it. Move it out (e.g. to {config_dir()}) and point {env} at it."
        )


def check_private(path: Path, what: str) -> None:
    """Refuse a secret file that other OS users can read or write (it must be mode 0600 or stricter)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise MedcoreError(
            f"The {what} {path} is readable or writable by other users (mode {mode:o}). "
            f"Run `chmod 600 {path}` and check who else could have read it."
        )


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write `data` to `path` as mode 0600, crash-safely (temp file, fsync, rename or link).

    With exclusive=True the file is created only if it does not exist (os.link fails on an existing name), so two
    processes creating a key at once end up with the same one. Returns False when that lost the race.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class SecretSource:
    """Where one secret comes from: an environment variable, else a 0600 file outside the workspace (default
    `<config dir>/<file_name>`, or `$<file_env>`), created on first use. The audit key and the data key use it."""

    what: str  # "audit key", "data key": named in messages
    env: str
    file_env: str
    file_name: str

    def path(self) -> Path:
        return Path(os.environ.get(self.file_env) or config_dir() / self.file_name).expanduser()

    def describe(self) -> str:
        """Where the secret is read from now, for messages (never the secret)."""
        return self.env if os.environ.get(self.env) else f"key file {self.path()}"

    def read(self, ws: Workspace | None, *, create: bool, new: Callable[[], bytes]) -> tuple[str, str] | None:
        """(text, source) of the secret; None when there is none yet and `create` is False (else `new()` is written).

        `ws` (when known) is the workspace the file must lie outside of.
        Raises MedcoreError for a file that others can read or one inside the workspace.
        """
        if os.environ.get(self.env):
            return os.environ[self.env], self.env
        path = self.path()
        if ws is not None:
            check_outside_workspace(ws, path, f"{self.what} file", self.file_env)
        if not path.exists():
            if not create:
                return None
            write_private(path, new(), exclusive=True)
        check_private(path, f"{self.what} file")
        return path.read_text(), f"key file {path}"
