"""A setting an error asks for is named in each surface's words: a flag on the CLI, an argument in Python."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medcore.errors import CLI_OPTIONS, MedcoreError, render_options

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))


def test_each_surface_says_the_option_its_own_way():
    import components

    error = MedcoreError("Too many ranks; {option:nproc_per_node=2} or fewer. Or {option:mystery=7}.")
    assert str(error) == "Too many ranks; set nproc_per_node=2 or fewer. Or set mystery=7."
    assert error.render(CLI_OPTIONS) == "Too many ranks; use --nproc 2 or fewer. Or set mystery=7."
    console = error.render(components.CONSOLE_OPTIONS)
    assert console == 'Too many ranks; set "Processes per node" to 2 or fewer. Or set mystery=7.'
    assert render_options("no options here", CLI_OPTIONS) == "no options here"


def test_every_option_the_engine_names_has_words_on_every_surface():
    import re

    import components

    named = set()
    for path in (Path(__file__).resolve().parents[1] / "medcore").rglob("*.py"):
        named |= set(re.findall(r"\{\{?option:([a-z_]+)", path.read_text()))
    named.discard("NAME")
    assert named and named <= set(CLI_OPTIONS) and named <= set(components.CONSOLE_OPTIONS)


def test_a_split_that_does_not_add_up_is_said_in_percent():
    from medcore.data.split import check_fractions

    with pytest.raises(MedcoreError, match=r"\(train 50%, validation 10%, test 10%\) .* add up to 100%"):
        check_fractions((0.5, 0.1, 0.1))
