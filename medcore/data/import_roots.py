"""The server folders a user may import from (the import roots), so the console's path box cannot read the server's
other files: `../../etc/passwd` and a symlink pointing out are refused.

Roots: `$MEDCORE_IMPORT_ROOTS` (folders separated by ':'), else the workspace's own `imports/` folder. They are set
by whoever starts the console, not in the workspace, which jobs and notebooks write: those must not widen them.
The shell's `medcore data import` is not limited: whoever runs it can read those files anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from medcore.access.acting import refusals_audited
from medcore.access.actor import Actor, Refused
from medcore.data.readers import read_upload
from medcore.workspace import Workspace

IMPORT_ROOTS_ENV = "MEDCORE_IMPORT_ROOTS"


def import_roots(ws: Workspace) -> list[Path]:
    """The import roots, symlinks resolved; the default one (workspace/imports) is created so files can be put there."""
    listed = [Path(p.strip()).expanduser() for p in os.environ.get(IMPORT_ROOTS_ENV, "").split(os.pathsep)]
    roots = [p.resolve() for p in listed if str(p) not in ("", ".")]
    if roots:
        return roots
    default = ws.root / "imports"
    default.mkdir(parents=True, exist_ok=True)
    return [default.resolve()]


def describe_import_roots(ws: Workspace) -> str:
    """Where a server path may point, and how to add a folder: the console's help for its path box."""
    return (
        f"Only under {', '.join(map(str, import_roots(ws)))}. To import from another folder, whoever starts the "
        f"console adds it to {IMPORT_ROOTS_ENV} (folders separated by ':')."
    )


def check_import_path(ws: Workspace, path: str | os.PathLike) -> Path:
    """`path` resolved (a relative path is taken under the first root) if it, and every file under it, lies inside
    an import root. Raises Refused, saying which roots are allowed and how to add one, for any other path."""
    roots = import_roots(ws)
    given = Path(str(path).strip()).expanduser()
    if ".." in given.parts:
        raise Refused(outside(given, roots, "it climbs out of its folder with '..'"))
    candidate = given if given.is_absolute() else roots[0] / given
    resolved = candidate.resolve()  # symlinks followed to their target
    if not inside(resolved, roots):
        linked = inside(Path(os.path.abspath(candidate)), roots)
        raise Refused(
            outside(given, roots, "a symlink in it points outside them" if linked else "it lies outside them")
        )
    if resolved.is_dir():
        for item in resolved.rglob("*"):  # a symlink inside the folder may point anywhere
            if not inside(item.resolve(), roots):
                raise Refused(outside(given, roots, f"its entry {item.relative_to(resolved)} links outside them"))
    return resolved


def inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def outside(given: Path, roots: list[Path], why: str) -> str:
    return (
        f"Cannot import {given}: the console imports only from {', '.join(map(str, roots))}, and {why}. Copy the "
        f"file or folder into one of them, or have whoever starts the console add its folder to {IMPORT_ROOTS_ENV} "
        "(folders separated by ':') and restart it."
    )


def read_server_path(ws: Workspace, actor: Actor, path: str | os.PathLike) -> pd.DataFrame:
    """Read a file or datasets folder on the server for `actor` (who must be allowed to import data), from inside
    the import roots only; a refusal is audited (by file name, never content)."""
    with refusals_audited(ws, actor, "import_data", kind="dataset_imported", source_file=Path(str(path)).name):
        resolved = check_import_path(ws, path)
    return read_upload(resolved)
