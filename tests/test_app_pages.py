"""Console skeleton: the entry builds the navigation and every page renders without an exception."""

from __future__ import annotations

import pytest
from app_helpers import MAIN, open_page
from streamlit.testing.v1 import AppTest

PAGES = ["data", "phi", "train", "runs", "evaluate", "review", "chat"]


def test_entry_opens_data_page(workspace):
    at = AppTest.from_file(MAIN, default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Data"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_error(workspace, page):
    at = open_page(page)
    assert not at.exception, at.exception
    assert at.title[0].value.lower() == page.lower() or page == "phi" and at.title[0].value == "PHI"
    assert not at.error, [e.value for e in at.error]
