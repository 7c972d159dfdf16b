"""Runs page: every run with its state and best metric; live charts, log tail, stop/cancel/checkpoint/resume; overlay
runs."""

import components as ui
import run_controls
import services
import streamlit as st

from medcore.jobs.state import ACTIVE_STATES, RESUMABLE_STATES

OPEN_RUN = "open_run"  # session key the Train page sets to the run it just launched
CHAT_SERVING = "chat_serving"  # session key the Chat page follows: a serve request started here
TABLE_COLUMNS = {
    "run_id": "Run",
    "state": "State",
    "model": "Model",
    "dataset": "Dataset",
    "lora_preset": "LoRA",
    "zero_preset": "ZeRO",
    "step": "Step",
    "max_steps": "Max steps",
    "best_metric_name": "Best metric",
    "best_metric": "Best value",
}

st.title("Runs")
st.caption("Watch training jobs live, read their logs, stop, cancel or resume them, and compare runs.")


def show_table(table) -> None:
    st.dataframe(
        table[list(TABLE_COLUMNS)],
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(table), 320),
        column_config={
            **TABLE_COLUMNS,
            "run_id": st.column_config.TextColumn("Run", width="large"),  # ids are long: never cut them off
            "best_metric": st.column_config.NumberColumn("Best value", format="%.4f"),
        },
    )


def show_actions(run_id: str, info) -> None:
    """Stop / checkpoint / cancel / resume (and, when done, serve) buttons for the run's state; results and
    MedcoreErrors appear under them."""
    col = st.columns([1, 5])[0]
    if info.state == "running":
        show_running_controls(col, run_id)
    cancel_help = "Stop now, without saving: resume continues from the last checkpoint."
    if info.state in ACTIVE_STATES and col.button("Cancel", key=f"cancel-{run_id}", icon=":material/cancel:",
                                                  help=cancel_help):  # fmt: skip
        with ui.guard("Cancelling"), st.spinner("Stopping the job's processes..."):
            services.cancel_run(run_id)
            st.rerun()
    if info.state in RESUMABLE_STATES and col.button("Resume", key=f"resume-{run_id}", icon=":material/replay:"):
        with ui.guard("Resuming"):
            st.session_state[OPEN_RUN] = services.resume_run(run_id)
            st.rerun()
    # Completed causal-lm runs only: classification adapters are served too (POST /v1/classify), but Chat generates.
    if info.state == "completed" and services.servable_run(run_id):
        if col.button("Serve this adapter", key=f"serve-{run_id}", icon=":material/chat:",
                      help="Load this adapter into a running server of its base (or start one); chat on the Chat page."):  # fmt: skip
            st.session_state[CHAT_SERVING] = services.serve_model(run_id)
            st.switch_page("views/chat.py")


def show_running_controls(col, run_id: str) -> None:
    """Save and stop, and checkpoint now: both act at the trainer's next step."""
    if col.button("Save and stop", key=f"stop-{run_id}", icon=":material/stop_circle:",
                  help="Save a checkpoint, then stop; resume continues from it."):  # fmt: skip
        with ui.guard("Stopping"):
            run_controls.stop_run(run_id)
            st.toast("Saving a checkpoint, then stopping.")
    if col.button("Checkpoint now", key=f"checkpoint-{run_id}", icon=":material/save:",
                  help="Save a checkpoint at the next step and keep training."):  # fmt: skip
        with ui.guard("Checkpointing"):
            run_controls.checkpoint_now(run_id)
            st.toast("A checkpoint will be saved at the next step.")


def show_run(run_id: str) -> None:
    """Status, actions, charts and log tail of one run; polled every 2 s while the run is active."""
    info = services.run_status(run_id)
    progress = f"step {info.step or 0}" + (f" / {info.max_steps}" if info.max_steps else "")
    st.markdown(f"**{run_id}** {ui.state_badge(info.state)} {progress}")
    if info.max_steps:
        st.progress(min((info.step or 0) / info.max_steps, 1.0))
    if info.error:
        # A failure is an error; a cancel or a save-and-stop was asked for, so it is news, not an error.
        show = st.error if info.state == "failed" else st.info
        show(f"{info.error}" + (f"\n\nHint: {info.hint}" if info.hint else ""), icon=":material/report:")
    show_actions(run_id, info)
    show_test_eval(info.test_eval)
    if info.state == "completed":
        show_model_card(run_id)
    ui.render_metric_charts(services.run_metrics([run_id]), key=f"run-{run_id}")
    with st.expander("Log tail", expanded=info.state in ("failed",)):
        st.code(services.read_logs(run_id, tail=60) or "(no output yet)", language=None)
    # The page polls only while the job is alive; one last full rerun shows the final state in the table.
    if not still_changing(info) and st.session_state.get(f"live-{run_id}"):
        st.session_state[f"live-{run_id}"] = False
        services.refresh_runs()
        st.rerun(scope="app")


def still_changing(info) -> bool:
    """Training, or scoring its test split right after: the page keeps polling."""
    return info.state in ACTIVE_STATES or (info.test_eval or {}).get("state") == "running"


def show_test_eval(record: dict | None) -> None:
    """The run's score on its test split (spec.evaluate_after), with a link to the full eval."""
    if not record:
        return
    state = record.get("state")
    if state == "completed":
        st.markdown(
            f"Test split ({record['n']:,} examples): {record['metric']} **{record['value']:.3f}** "
            f"(95% CI {record['ci_low']:.3f} to {record['ci_high']:.3f}), eval `{record['eval_id']}`."
        )
        if st.button("Open on the Evaluate page", key=f"eval-{record['eval_id']}", icon=":material/fact_check:"):
            st.session_state["open_eval"] = record["eval_id"]
            st.switch_page("views/evaluate.py")
    elif state == "running":
        st.caption("Scoring the run on its test split...")
    elif state == "skipped":
        st.caption(f"Not evaluated on a test split: {record.get('reason')}")
    elif state == "failed":
        st.warning(f"The test-split evaluation failed: {record.get('error')}", icon=":material/report:")


def show_model_card(run_id: str) -> None:
    """The card a clinical team reads before adopting the adapter (written when the run completed)."""
    card = services.model_card(run_id)
    if card is None:
        st.caption(f"No model card yet: it is written after the run's test-split scoring (`medcore card {run_id}`).")
        return
    with st.expander("Model card"):
        st.markdown(card)
        st.download_button("Download MODEL_CARD.md", card, file_name=f"{run_id}-MODEL_CARD.md", mime="text/markdown",
                           key=f"card-{run_id}", icon=":material/download:")  # fmt: skip


def show_compare(run_ids: list[str]) -> None:
    frame = services.run_metrics(run_ids)
    if not ui.render_metric_charts(frame, key="compare"):
        st.info("None of these runs has logged metrics yet.")


def live_run(run_id: str) -> None:
    with ui.guard(f"Showing run {run_id}"):
        show_run(run_id)


def live_table() -> None:
    with ui.guard("Listing runs"):
        show_table(services.runs_table())


def live_compare(run_ids: list[str]) -> None:
    with ui.guard("Comparing runs"):
        show_compare(run_ids)


with ui.guard("Loading runs"):
    table = services.runs_table()
    if table.empty:
        st.info("No runs yet. Launch one from the Train page.")
        st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    # The table polls with the run view while a run is active, so its step never lags the run's own.
    st.fragment(run_every=2 if table["state"].isin(ACTIVE_STATES).any() else None)(live_table)()
    run_ids = table["run_id"].tolist()
    wanted = st.session_state.get(OPEN_RUN)
    tab_run, tab_compare = st.tabs(["Run", "Compare"])
    with tab_run:
        chosen = st.selectbox("Run", run_ids, index=run_ids.index(wanted) if wanted in run_ids else 0, key="run")
        st.session_state[OPEN_RUN] = chosen
        active = still_changing(services.run_status(chosen))
        st.session_state[f"live-{chosen}"] = active
        st.fragment(run_every=2 if active else None)(live_run)(chosen)
    with tab_compare:
        compare = st.multiselect("Runs to overlay", run_ids, default=run_ids[: min(2, len(run_ids))], key="compare")
        if compare:
            any_active = bool(table[table["run_id"].isin(compare)]["state"].isin(ACTIVE_STATES).any())
            st.fragment(run_every=2 if any_active else None)(live_compare)(compare)
