"""Review page: blinded clinician review of two models' outputs. Reviewers see PHI-masked text and "Response 1 /
Response 2" only; which model wrote what is shown after the review is closed."""

import components as ui
import services
import streamlit as st

from medcore.evaluate.review import VERDICT_CHOICES

REVIEWER = "reviewer_name"  # session key: who is judging (the signed-in user once access control exists)
VERDICT_LABELS = {
    "first_better": "Response 1 is better",
    "second_better": "Response 2 is better",
    "both_acceptable": "Both acceptable",
    "both_wrong": "Both wrong",
}

st.title("Review")
st.caption(
    "Blinded review: each item shows the input and two responses in an order drawn at random per item. Model names "
    "stay sealed until the review is closed; verdicts are kept append-only with your name and the time."
)


def create_form() -> None:
    evals = services.list_evals()
    if len(evals) < 2:
        st.info("A review compares two evals of one dataset split: run two models on the Evaluate page first.")
        return
    described = {row.eval_id: f"{row.eval_id}: {row.dataset}/{row.split}" for row in evals.itertuples()}
    ids = list(described)
    left, right = st.columns(2)
    eval_a = left.selectbox("First eval", ids, format_func=described.get, key="review-eval-a")
    eval_b = right.selectbox("Second eval", ids, index=1, format_func=described.get, key="review-eval-b")
    name = st.text_input("Review name (reviewers see it: no model names)", key="review-name")
    max_items = st.number_input("Most items", value=100, min_value=1, step=10, key="review-max-items")
    if st.button("Create review", icon=":material/rate_review:"):
        with ui.guard("Creating the review"), st.spinner("Masking PHI in every item..."):
            review = services.create_review(eval_a, eval_b, name, int(max_items))
            st.session_state["open_review"] = review.review_id
            st.success(f"Created {review.review_id}.")


def judge(review_id: str, reviewer: str) -> None:
    """The next item for this reviewer, blinded, with the verdict form."""
    item = services.next_review_item(review_id, reviewer)
    if item is None:
        st.success("You have judged every item of this review.")
        return
    st.markdown(f"**Item {item.judged + 1} of {item.total}**")
    st.markdown("**Input**")
    st.text(item.prompt)
    if item.reference:
        st.markdown("**Reference**")
        st.text(item.reference)
    left, right = st.columns(2)
    left.markdown("**Response 1**")
    left.text(item.response_1)
    right.markdown("**Response 2**")
    right.text(item.response_2)
    with st.form(f"verdict-{review_id}-{item.item}", clear_on_submit=True):
        verdict = st.radio("Verdict", VERDICT_CHOICES, format_func=VERDICT_LABELS.get, horizontal=True)
        comment = st.text_area("Comment (optional; PHI is masked before it is stored)")
        if st.form_submit_button("Submit verdict", type="primary"):
            with ui.guard("Recording the verdict"):
                services.record_verdict(review_id, item.item, reviewer, verdict, comment)
                st.rerun()


def show_summary(review_id: str) -> None:
    summary = services.review_summary(review_id)
    st.markdown(
        f"{summary['judged_items']} of {summary['items']} items judged, {summary['judgments']} judgments by "
        f"{len(summary['reviewers'])} reviewer(s). Rates over all judgments, 95% Wilson CIs."
    )
    rows = [{"Model": model, "Wins": r["wins"], "Win rate": r["win_rate"]["value"],
             "95% CI low": r["win_rate"]["ci_low"], "95% CI high": r["win_rate"]["ci_high"]}
            for model, r in summary["models"].items()]  # fmt: skip
    rows += [{"Model": tie.replace("_", " "), "Wins": summary[tie]["count"], "Win rate": summary[tie]["rate"]["value"],
              "95% CI low": summary[tie]["rate"]["ci_low"], "95% CI high": summary[tie]["rate"]["ci_high"]}
             for tie in ("both_acceptable", "both_wrong")]  # fmt: skip
    st.dataframe(rows, hide_index=True, width="stretch")
    for pair in summary["agreement"]:
        kappa = "undefined" if pair["kappa"] is None else f"{pair['kappa']:.3f}"
        st.markdown(f"Cohen's kappa, {' vs '.join(pair['reviewers'])} on {pair['items']} items: **{kappa}**")
    with ui.guard("Exporting preferences"):
        st.download_button("Export preference data (JSONL)", services.export_preferences(review_id),
                           file_name=f"{review_id}-preferences.jsonl", mime="application/jsonl")  # fmt: skip


def show_review(reviews) -> None:
    ids = reviews["review_id"].tolist()
    wanted = st.session_state.get("open_review")
    names = {row.review_id: f"{row.name or row.review_id} ({row.verdicts}/{row.items} judged"
             f"{', closed' if row.closed else ''})" for row in reviews.itertuples()}  # fmt: skip
    review_id = st.selectbox("Review", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=names.get)
    closed = bool(reviews.set_index("review_id").loc[review_id, "closed"])
    if closed:
        show_summary(review_id)
        return
    reviewer = st.text_input("Your name", key=REVIEWER).strip()
    if reviewer:
        judge(review_id, reviewer)
    else:
        st.info("Enter your name to start judging: verdicts are kept with it.")
    if st.button("Close review (no more verdicts; then the models are revealed)", icon=":material/lock:"):
        with ui.guard("Closing the review"):
            services.close_review(review_id)
            st.rerun()


with st.expander("New review", expanded=False):
    with ui.guard("Preparing the review form"):
        create_form()

with ui.guard("Showing reviews"):
    table = services.list_reviews()
    if table.empty:
        st.info("No reviews yet. Create one above from two evals of the same split.")
    else:
        show_review(table)
