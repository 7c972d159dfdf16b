"""PHI page (AppTest): the preview says what it is doing (loading the detector, scanning N rows) and then how long
the scan took; it never shows note text in that status."""

from __future__ import annotations

import re

from app_helpers import open_page, texts, widget
from test_app_phi import TIMEOUT, note_panes, notes, stand_in_tagger  # noqa: F401 - fixtures: demo notes, rules alone

from medcore.data.manifest import load_split

SCANNED = re.compile(r"Scanned (\d+) rows? for PHI in \d+\.\d s")


def preview_status(at):
    found = [s for s in at.status if SCANNED.fullmatch(s.label) or "PHI" in s.label]
    assert len(found) == 1, [s.label for s in at.status]
    return found[0]


def test_the_preview_scan_ends_in_a_complete_status_naming_the_rows(notes):  # noqa: F811
    at = open_page("phi", timeout=TIMEOUT)
    assert not at.exception and not at.error, texts(at, "error")
    status = preview_status(at)
    assert status.state == "complete" and SCANNED.fullmatch(status.label).group(1) == "3"
    assert len(note_panes(at)) == 6  # the highlights follow the status: 3 rows x (original, redacted)
    assert at.session_state["phi_detector_seen"] is True  # later scans in this session skip the loading wording


def test_the_status_follows_the_row_count_and_holds_no_note_text(notes):  # noqa: F811
    at = open_page("phi", timeout=TIMEOUT)
    widget(at.number_input, "Rows").set_value(1)
    at.run()
    status = preview_status(at)
    assert status.label.startswith("Scanned 1 row for PHI in ")
    first = load_split(notes, "notes", "train").iloc[0]["text"]
    assert not any(word in status.label for word in first.split() if len(word) > 3)


def test_a_first_scan_names_the_detector_load_it_waits_for(notes, monkeypatch):  # noqa: F811
    """A detector that fails to load leaves the status as it was while loading: the wording a user watched."""
    from medcore.errors import MedcoreError
    from medcore.phi import detect

    def broken(config):
        raise MedcoreError("The PHI tagger could not be loaded (test).")

    monkeypatch.setattr(detect, "tagger_for", broken)
    monkeypatch.setattr(console_services(), "detector_ready", lambda: False)  # as in a fresh console process
    at = open_page("phi", timeout=TIMEOUT)
    status = preview_status(at)
    assert status.state == "error"
    assert status.label == (
        "Loading the PHI detector (spaCy, Presidio and the PHI tagger; once per server start), then scanning 3 rows..."
    )
    assert any("could not be loaded" in e for e in texts(at, "error"))


def console_services():
    """The console's services module, as the page scripts import it (app/ on the path)."""
    import importlib
    import sys
    from pathlib import Path

    app = str(Path(__file__).resolve().parents[1] / "app")
    if app not in sys.path:
        sys.path.insert(0, app)
    return importlib.import_module("services")


def test_a_first_scan_after_the_warm_up_says_scanning_not_loading(notes, monkeypatch):  # noqa: F811
    """The warm-up finished before the first scan: the status says what happens (scanning), not a load it no longer
    waits for. A detector that then fails leaves the status as it was: the wording a user watched."""
    from medcore.errors import MedcoreError
    from medcore.phi import detect

    def broken(config):
        raise MedcoreError("The PHI tagger could not be loaded (test).")

    monkeypatch.setattr(detect, "tagger_for", broken)
    monkeypatch.setattr(console_services(), "detector_ready", lambda: True)
    at = open_page("phi", timeout=TIMEOUT)
    status = preview_status(at)
    assert (status.state, status.label) == ("error", "Scanning row 1 of 3 for PHI...")
