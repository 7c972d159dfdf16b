"""Review page (AppTest): create a blinded review from two evals, judge items without seeing model names, close it
and read the unblinded win rates."""

from __future__ import annotations

from app_helpers import open_page, texts, widget
from test_eval_review import MODEL_A, MODEL_B, PHI_NAME, PHI_PHONE, import_notes, write_model_eval


def shown_text(at) -> str:
    """Everything the page rendered as text, for what must never appear there."""
    parts = texts(at, "markdown") + texts(at, "text") + texts(at, "caption") + texts(at, "info") + texts(at, "success")
    parts += [str(s.options) for s in at.selectbox] + [str(d.value) for d in at.dataframe]
    return "\n".join(parts)


def test_no_evals_and_no_reviews_say_what_to_do(workspace):
    at = open_page("review")
    assert not at.exception
    shown = texts(at, "info")
    assert any("run two models on the Evaluate page" in t for t in shown)
    assert any("No reviews yet" in t for t in shown)


def test_create_judge_close_and_read_the_results(workspace):
    import_notes(workspace)
    write_model_eval(workspace, MODEL_A, seed=1)
    write_model_eval(workspace, MODEL_B, seed=2)
    at = open_page("review", timeout=120)
    widget(at.text_input, "Review name (reviewers see it: no model names)").input("ward round")
    widget(at.button, "Create review").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    widget(at.text_input, "Your name").input("dr-hall").run()
    first = next(m for m in texts(at, "markdown") if m.startswith("**Item "))
    assert first.startswith("**Item 1 of ")
    page = shown_text(at)
    for secret in (MODEL_A, MODEL_B, PHI_NAME, PHI_PHONE):
        assert secret not in page  # blinded, and the text is PHI-masked
    widget(at.radio, "Verdict").set_value("second_better")
    widget(at.button, "Submit verdict").click().run()
    assert not at.exception
    assert any(m.startswith("**Item 2 of ") for m in texts(at, "markdown"))
    widget(at.button, "Close review (no more verdicts; then the models are revealed)").click().run()
    assert not at.exception
    results = [d.value for d in at.dataframe if "Win rate" in d.value.columns][0]
    assert set(results["Model"]) >= {MODEL_A, MODEL_B}
    assert results["Wins"].sum() == 1  # the one judgment
