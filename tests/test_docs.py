"""docs/ stays true: the configuration reference matches the models, every command shown parses with today's CLI,
every Python name and import resolves, every relative link and anchor exists, and troubleshooting covers every
failure MedCore diagnoses."""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

from medcore.cli import COMMANDS
from medcore.cli import main as medcore_main
from medcore.commands.docs_reference import SECTIONS, anchor, render_reference
from medcore.jobs.diagnose import PATTERNS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOTTED = re.compile(r"`(medcore(?:\.[A-Za-z_]\w*)+)`")


def blocks(language: str) -> list[tuple[str, str]]:
    """(page name, block text) of every fenced block of `language` in docs/."""
    return [
        (page.name, m.group(2)) for page in PAGES for m in FENCE.finditer(page.read_text()) if m.group(1) == language
    ]


def shell_commands(program: str) -> list[tuple[str, list[str]]]:
    """(page, argv) of every line of a bash block that runs `program`, comments stripped."""
    found = []
    for page, text in blocks("bash"):
        for line in text.splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == program:
                found.append((page, argv[1:]))
    return found


def parse_cli(argv: list[str]) -> str | None:
    """None when `medcore ARGV` parses with today's parsers (nothing runs), else argparse's complaint."""
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return f"unknown command '{name}'"
    module_name, help_text = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"medcore {name}", description=help_text)  # as medcore.cli.main builds it
    importlib.import_module(module_name).add_arguments(parser)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(rest)
    except SystemExit:
        return stderr.getvalue().strip() or "exited"
    return None


# --- the configuration reference ----------------------------------------------------------------------------------


def test_the_config_reference_matches_the_models():
    current = (DOCS / "config-reference.md").read_text()
    assert current == render_reference(), "docs/config-reference.md is stale: regenerate it with `medcore docs`"


def test_the_reference_lists_every_field_with_its_description():
    text = render_reference()
    for heading, model, _ in SECTIONS:
        section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        for name, field in model.model_fields.items():
            if heading == "Comparison" and name != "compare":
                continue  # inherited from the evaluation run, listed there
            row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` |")), None)
            assert row is not None, f"{heading}: field {name} missing"
            assert " ".join((field.description or "").split())[:40].replace("|", "\\|") in row
    assert "/work/" not in text and str(Path.home()) not in text  # no machine-specific paths


def test_medcore_docs_check_fails_on_a_stale_page(tmp_path, capsys):
    page = tmp_path / "config-reference.md"
    assert medcore_main(["docs", "--output", str(page)]) == 0
    assert medcore_main(["docs", "--check", "--output", str(page)]) == 0
    page.write_text(page.read_text().replace("Peak learning rate", "Learning rate"))
    assert medcore_main(["docs", "--check", "--output", str(page)]) == 1
    assert "is stale: regenerate it with `medcore docs" in capsys.readouterr().err


# --- commands -----------------------------------------------------------------------------------------------------


def test_every_medcore_command_in_the_docs_parses():
    commands = shell_commands("medcore")
    assert len(commands) >= 40, f"only {len(commands)} commands found: is the block parser broken?"
    failures = [f"{page}: medcore {shlex.join(argv)}: {why}" for page, argv in commands if (why := parse_cli(argv))]
    assert not failures, "\n".join(failures)


def test_the_command_check_catches_a_renamed_flag_or_command():
    assert parse_cli(["runs", "logs", "RUN_ID", "--tail", "5"]) is None
    assert "unrecognized arguments: --lines" in parse_cli(["runs", "logs", "RUN_ID", "--lines", "5"])
    assert "invalid choice" in parse_cli(["runs", "watch", "RUN_ID"])
    assert parse_cli(["fine-tune", "spec.yaml"]) == "unknown command 'fine-tune'"


def test_the_guide_shows_every_command():
    shown = {argv[0] for page, argv in shell_commands("medcore") if page == "guide.md"}
    assert not set(COMMANDS) - shown, f"commands the guide never shows: {sorted(set(COMMANDS) - shown)}"


def test_make_targets_and_modules_named_in_the_docs_exist():
    makefile = (ROOT / "Makefile").read_text()
    for page, argv in shell_commands("make"):
        target = next(a for a in argv if "=" not in a)
        assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), f"{page}: make {target}: no such target"
    for page in PAGES:
        for module in re.findall(r"python -m (medcore[\w.]*)", page.read_text()):
            assert importlib.util.find_spec(module) is not None, f"{page.name}: python -m {module}: no such module"


# --- Python names ---------------------------------------------------------------------------------------------------


def resolve(dotted: str) -> object:
    """The object `medcore.a.b.c` names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_python_name_in_the_docs_resolves():
    names = sorted({name for page in PAGES for name in DOTTED.findall(page.read_text())})
    assert len(names) >= 60
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"names in docs/ that do not exist: {missing}"


def test_the_python_examples_parse_and_their_imports_exist():
    examples = blocks("python")
    assert examples
    for page, text in examples:
        for node in ast.walk(ast.parse(text, filename=page)):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    assert hasattr(importlib.import_module(node.module), alias.name), (
                        f"{page}: {node.module}.{alias.name}"
                    )


# --- links ----------------------------------------------------------------------------------------------------------


def anchors(page: Path) -> set[str]:
    return {anchor(line.lstrip("#").strip()) for line in page.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = FENCE.sub("", page.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked (no network)
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target}: no such file"
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked), f"{page.name}: link to {target}: no such heading"


def test_the_readme_links_to_the_docs():
    links = set(LINK.findall((ROOT / "README.md").read_text()))
    assert {"docs/guide.md", "docs/config-reference.md", "docs/troubleshooting.md", "docs/api.md"} <= links


def test_the_anchor_rule_is_githubs():
    assert anchor("1. Import and validate data") == "1-import-and-validate-data"
    assert anchor("Column mapping (data import)") == "column-mapping-data-import"


# --- troubleshooting ------------------------------------------------------------------------------------------------


def test_troubleshooting_covers_every_diagnosed_failure():
    text = (DOCS / "troubleshooting.md").read_text()
    missing = [p.name for p in PATTERNS if f"`{p.name}`" not in text]
    assert not missing, (
        f"failure patterns of medcore.jobs.diagnose that troubleshooting.md does not explain: {missing}"
    )
