"""A generated launch file (name, text, how to start it) and the header every one of them opens with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LaunchFile:
    """One generated file: its name in the output folder, its text, and the command that starts it."""

    name: str
    text: str
    start: str  # the next step, with FILE standing for the file's path
    executable: bool = False

    def start_command(self, path: Path | str) -> str:
        return self.start.replace("FILE", str(path))


def header(what: str, source: str, target: str, name: str, steps: list[str]) -> list[str]:
    """Comment lines: what the file runs, where it came from, how to start it (FILE in `steps` becomes `name`).
    Callers pass checked values only: nothing here may hold a line break."""
    lines = [
        f"# {what}",
        f"# Generated from {source} by `medcore launch --target {target}` (medcore.cluster): regenerate, do not edit.",
    ]
    return lines + [f"#   {step.replace('FILE', name)}" for step in steps]


def write_launch_file(item: LaunchFile, out: Path) -> Path:
    """Write `item` into the folder `out` (created if missing); returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / item.name
    path.write_text(item.text)
    path.chmod(0o755 if item.executable else 0o644)
    return path
