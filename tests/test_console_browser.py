"""The console in a real browser (Debian chromium driven by Playwright): upload -> map -> PHI preview -> redact ->
launch a tiny LoRA job -> watch its loss chart grow -> it completes. Screenshots of every page go to test-artifacts/.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from app_helpers import ROOT, serve_console

from medcore.demo.build import NOTES_CSV, build_demo_workspace
from medcore.procs import free_port

CHROMIUM = Path("/usr/bin/chromium")
# No sync, updates, background fetches or first-run pings: the browser, like the console, stays on loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: run `make browser`"),
]


@pytest.fixture
def console(workspace):
    """The console (the Makefile's command) on a free port over a workspace holding the demo files."""
    build_demo_workspace(workspace, seed=0, n_notes=40, n_qa=5)
    with serve_console(free_port(), workspace.root, workspace.root / "console.log") as url:
        yield url, workspace


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.requested_hosts = set()  # every host the page asked for anything (the console promises loopback only)
        page.on("request", lambda request: page.requested_hosts.add(urlsplit(request.url).hostname))
        yield page
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # Streamlit scrolls inside its own container, so a full-page shot needs a viewport as tall as the content.
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 1000")
    page.set_viewport_size({"width": 1400, "height": min(max(int(height), 1000), 6000)})
    page.wait_for_timeout(700)  # let charts and fonts settle
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()


def pick(page, label: str, option: str) -> None:
    """Choose `option` in the Streamlit selectbox labelled `label`."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(300)  # the rerun the choice triggers


def type_number(page, label: str, value) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Enter")


def loss_points(page) -> int:
    """Points in the first Loss chart, read from plotly's own data on the page."""
    # Plotly ships arrays as base64 typed arrays ({dtype: "i2", bdata}); a point is one item of `dtype`'s size.
    return page.evaluate(
        """() => {
            const plot = [...document.querySelectorAll('.js-plotly-plot')]
                .find(p => p.layout && p.layout.title && String(p.layout.title.text).includes('Loss'));
            const size = x => x.bdata ? atob(x.bdata).length / Number(x.dtype.slice(1)) : x.length;
            return plot ? plot.data.reduce((n, t) => n + (t.x ? size(t.x) : 0), 0) : 0;
        }"""
    )


def test_upload_redact_train_watch(console, page):
    try:
        walk_the_user_path(page, *console)
    except BaseException:
        shot(page, "failure")  # what the browser showed when the step failed
        raise
    # Every page was visited: not one request (icon, font, script) went anywhere but the console itself.
    assert page.requested_hosts - {"127.0.0.1", "localhost", None} == set()


def walk_the_user_path(page, base: str, ws) -> None:
    # A deep link as the first request must still get the console's navigation (it once ran the bare page).
    page.goto(f"{base}/runs")
    page.get_by_role("heading", name="Runs", exact=True).wait_for()
    assert page.get_by_test_id("stSidebarNav").get_by_text("Data", exact=True).is_visible()

    # Data: upload the demo CSV; the suggested mapping validates; import it.
    nav(page, "Data")
    page.locator('input[type="file"]').set_input_files(str(ws.datasets / NOTES_CSV))
    page.get_by_text("Valid for task: classification").wait_for()
    name = page.get_by_label("Dataset name")
    name.fill("notes")
    name.press("Enter")
    page.get_by_role("button", name="Import").click()
    page.get_by_text("Imported 'notes'").wait_for()
    shot(page, "1-data")

    # PHI: the preview highlights PHI in the original text; redact the whole dataset.
    nav(page, "PHI")
    page.locator("mark.phi").first.wait_for(timeout=60_000)
    assert page.locator("mark.phi").count() >= 3
    assert page.locator("mark.mask").count() >= 1  # the redacted side shows [CATEGORY] masks
    shot(page, "2-phi-preview")
    page.get_by_role("button", name="Redact dataset").click()
    page.get_by_text("Wrote 'notes-redacted'").wait_for(timeout=90_000)
    shot(page, "3-phi-redacted")

    # Train: a tiny LoRA job on the redacted copy; Launch opens it in Runs.
    nav(page, "Train")
    assert page.get_by_role("combobox", name="Dataset").input_value() == "notes-redacted"  # preselected
    pick(page, "LoRA preset", "small")
    type_number(page, "Max steps (0: use epochs)", 30)
    # What the form shows is what launches: a micro-batch of 0 is sent as typed and refused with the reason,
    # never swapped for the previous value by the browser.
    type_number(page, "Micro-batch", 0)
    page.wait_for_timeout(500)  # the rerun the value triggers
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("micro_batch is 0").wait_for()
    assert not (ws.runs.exists() and any(ws.runs.iterdir()))  # nothing was launched
    type_number(page, "Micro-batch", 4)
    type_number(page, "Max length (tokens)", 64)
    shot(page, "4-train")
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("heading", name="Runs", exact=True).wait_for()

    # Runs: the loss chart gains points while the job runs, then the run completes.
    seen = set()
    deadline = time.monotonic() + 300  # the job trains 30 steps; a busy 2-core machine needs more than a quiet one
    while time.monotonic() < deadline:
        seen.add(loss_points(page))
        if page.get_by_text("completed", exact=True).count():
            break
        page.wait_for_timeout(1000)
    page.wait_for_timeout(2500)  # the final refresh
    seen.add(loss_points(page))
    shot(page, "5-runs")
    assert page.get_by_text("completed", exact=True).count(), (ws.runs, sorted(seen))
    assert len(seen - {0}) >= 2, f"the loss chart never grew while the job ran: {sorted(seen)}"

    for title in ("Evaluate", "Chat"):
        nav(page, title)
        shot(page, f"6-{title.lower()}")


def test_evaluate_and_blinded_review_in_the_browser(workspace, page):
    """The Evaluate page draws its plots; the Review page's HTML names neither model nor any planted PHI."""
    from test_eval_review import MODEL_A, MODEL_B, PHI_NAME, PHI_PHONE, import_notes, write_model_eval

    from medcore.evaluate.review_sources import create_review_from_evals, review_config

    import_notes(workspace)
    eval_a, eval_b = write_model_eval(workspace, MODEL_A, seed=1), write_model_eval(workspace, MODEL_B, seed=2)
    create_review_from_evals(workspace, eval_a, eval_b, review_config(name="ward round"))
    with serve_console(free_port(), workspace.root, workspace.root / "console.log") as base:
        page.goto(f"{base}/review")
        page.get_by_role("heading", name="Review", exact=True).wait_for()
        page.get_by_label("Your name").fill("dr-hall")
        page.get_by_label("Your name").press("Enter")
        page.get_by_text("Response 2", exact=True).wait_for()
        page.get_by_text("Item 1 of").wait_for()
        html = page.content()
        for secret in (MODEL_A, MODEL_B, PHI_NAME, PHI_PHONE):
            assert secret not in html
        shot(page, "review")
        page.goto(f"{base}/evaluate")
        page.get_by_role("heading", name="Results", exact=True).wait_for()
        page.get_by_role("tab", name="Plots").click()
        try:
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        finally:
            shot(page, "evaluate-plots")
    assert page.requested_hosts - {"127.0.0.1", "localhost", None} == set()


def test_chat_streams_an_answer_in_the_browser(workspace, page):
    """The Chat page on an embedded server (tiny-llama, in this process): a prompt gets a streamed answer, masked."""
    from medcore.serve.config import load_serving_config
    from medcore.serve.server import serve_in_thread

    server = serve_in_thread(load_serving_config(model="tiny-llama", port=free_port()), workspace)
    try:
        with serve_console(free_port(), workspace.root, workspace.root / "console.log") as base:
            page.goto(f"{base}/chat")
            page.get_by_role("heading", name="Chat", exact=True).wait_for()
            page.get_by_text("Any OpenAI-compatible URL", exact=True).click()
            url = page.get_by_role("textbox", name="Server URL")
            url.fill(server.url)
            url.press("Enter")
            page.get_by_role("combobox", name="Model", exact=True).wait_for()
            page.get_by_test_id("stChatInputTextArea").fill("Patient John Smith has chest pain. What next?")
            page.get_by_test_id("stChatInputTextArea").press("Enter")
            page.get_by_text("PHI guard masked").wait_for(timeout=90_000)  # the detector loads on first use
            answer = page.get_by_test_id("stChatMessage").nth(1)
            page.wait_for_function(
                "() => { const m = document.querySelectorAll('[data-testid=\"stChatMessage\"]');"
                " return m.length >= 2 && m[1].innerText.replace('tiny-llama', '').trim().length > 0; }",
                timeout=60_000,
            )
            page.get_by_role("button", name="Export the conversation (JSONL, PHI-masked)").wait_for()  # run ended
            shot(page, "chat")
            assert "[NAME]" in page.get_by_test_id("stChatMessage").first.inner_text()
            assert "tiny-llama" in answer.inner_text() and "John Smith" not in page.content()
    finally:
        server.stop()
    assert page.requested_hosts - {"127.0.0.1", "localhost", None} == set()
