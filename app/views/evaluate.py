"""Evaluate page: score runs on a held-out split with clinical metrics and 95% CIs, per class and subgroup, and
compare models side by side; the scoring runs as a detached job the page polls."""

import components as ui
import eval_charts as charts
import services
import streamlit as st

from medcore.evaluate.bootstrap import BootstrapConfig

EVAL_JOB = "eval_job"  # session key: the evaluation job this session started
OPEN_EVAL = "open_eval"  # session key: the eval shown under Results
BOOT = BootstrapConfig.model_fields
LISTED = {"eval_id": "Eval", "model": "Model", "dataset": "Dataset", "split": "Split", "n": "Examples",
          "accuracy": "Accuracy", "macro_f1": "Macro F1", "auroc": "AUROC", "compared": "Side by side"}  # fmt: skip

st.title("Evaluate")
st.caption(
    "Clinical metrics with 95% confidence intervals (stratified bootstrap) on a held-out split, per class and per "
    "subgroup, and models compared on the same examples."
)


def launch_form() -> None:
    """Dataset, split, models (the first is the reference), bootstrap settings; Evaluate starts a job."""
    tasks = services.evaluable_tasks()
    datasets = [m for m in services.list_datasets() if m.task in tasks]
    if not datasets:
        st.info(
            "No dataset to evaluate on yet: import one on the Data page with a label column (classification), spans "
            "(token classification) or prompt and response columns (generation)."
        )
        return
    by_name = {m.name: m for m in datasets}
    name = st.selectbox("Dataset", list(by_name), key="eval-dataset")
    manifest = by_name[name]
    splits = [s for s, n in manifest.rows.items() if n]
    split = st.selectbox("Split", splits, index=splits.index("test") if "test" in splits else 0, key="eval-split")
    choices = services.evaluable_models(name)
    models = st.multiselect(
        "Models (the first is the reference; each other one is compared with it)",
        choices,
        default=choices[:1],
        key="eval-models",
        help="Completed runs of this task, and the untuned base encoder with a fresh head (the chance floor).",
    )
    left, right = st.columns(2)
    resamples = left.number_input("Bootstrap resamples", value=BOOT["resamples"].default, step=100,
                                  help=BOOT["resamples"].description, key="eval-resamples")  # fmt: skip
    seed = right.number_input("Seed", value=BOOT["seed"].default, step=1, help=BOOT["seed"].description,
                              key="eval-seed")  # fmt: skip
    if st.button("Evaluate", type="primary", icon=":material/play_arrow:", disabled=not models):
        with ui.guard("Starting the evaluation"):
            st.session_state[EVAL_JOB] = services.start_evaluation(
                models[0], name, models[1:], split=split, resamples=int(resamples), seed=int(seed)
            )


def show_job(job_id: str) -> None:
    """Progress of this session's evaluation job; when it ends, open its eval under Results."""
    status = services.evaluation_status(job_id)
    state = status.get("state")
    total, done = status.get("total") or 0, status.get("done") or 0
    st.markdown(f"**{job_id}** {ui.state_badge(state)} {done:,} / {total:,} examples scored")
    if total:
        st.progress(min(done / total, 1.0), text=f"scoring {status.get('model', '')}")
    if state == "failed":
        st.error(status.get("error") or "The evaluation failed; see its job.log.", icon=":material/report:")
    if state == "completed" and st.session_state.get(OPEN_EVAL) != status["eval_ids"][0]:
        st.session_state[OPEN_EVAL] = status["eval_ids"][0]
        st.rerun(scope="app")


def live_job(job_id: str) -> None:
    with ui.guard("Following the evaluation"):
        show_job(job_id)


def show_overview(saved) -> None:
    config, result = saved.config, saved.result
    task = config.get("task", "classification")
    what = f"{len(config.get('labels') or [])} classes" if task == "classification" else task
    how = "stratified bootstrap" if task == "classification" else "bootstrap over rows"
    st.markdown(
        f"**{config.get('model')}** on **{config.get('dataset')}/{config.get('split')}**: {result['n']:,} examples, "
        f"{what}; 95% CIs from {config.get('resamples', 0):,} {how} resamples (seed {config.get('seed')})."
    )
    st.dataframe(charts.metrics_table(result["metrics"]), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("Value", "95% CI low", "95% CI high")})  # fmt: skip
    if result.get("per_class"):
        st.markdown("**Per class** (one-vs-rest)")
        st.dataframe(charts.per_class_table(result["per_class"]), width="stretch")
    if result.get("per_type"):
        st.markdown("**Per entity type**")
        st.dataframe(charts.per_class_table(result["per_type"]), width="stretch")


def show_plots(saved) -> None:
    curves = services.eval_curves(saved.eval_id)
    left, right = st.columns(2)
    left.markdown("**Confusion matrix**")
    left.plotly_chart(charts.confusion_figure(curves["confusion"]), config=charts.PLOT_CONFIG, key="cm")
    right.markdown("**Reliability** (calibration)")
    if curves["reliability"].empty:
        right.info("No class probabilities in this eval.")
    else:
        right.plotly_chart(charts.reliability_figure(curves["reliability"]), config=charts.PLOT_CONFIG, key="rel")
    if curves["roc"].empty:
        return
    left, right = st.columns(2)
    left.markdown("**ROC**")
    left.plotly_chart(charts.curve_figure(curves["roc"], "fpr", "tpr", diagonal=True), config=charts.PLOT_CONFIG,
                      key="roc")  # fmt: skip
    right.markdown("**Precision-recall**")
    right.plotly_chart(charts.curve_figure(curves["pr"], "recall", "precision", diagonal=False),
                       config=charts.PLOT_CONFIG, key="pr")  # fmt: skip
    if len(saved.config["labels"]) == 2:
        show_operating_point(saved.eval_id)


def show_operating_point(eval_id: str) -> None:
    target = st.slider("Fix sensitivity at", 0.50, 1.00, 0.95, 0.01, key="eval-sensitivity",
                       help="The highest threshold on the positive class's probability that reaches this "
                       "sensitivity on this split, and the specificity there.")  # fmt: skip
    with ui.guard("Reading the operating point"):
        point = services.operating_point(eval_id, target)
        st.markdown(
            f"At threshold **{point['threshold']:.3f}** on p({point['positive_class']}): sensitivity "
            f"**{point['sensitivity']:.3f}**, specificity **{point['specificity']:.3f}**."
        )


def show_subgroups(saved) -> None:
    subgroups = saved.result.get("subgroups") or {}
    if not subgroups:
        st.caption("No subgroup columns are mapped for this dataset (map sex, age band... on the Data page).")
        return
    left, right = st.columns(2)
    column = left.selectbox("Subgroup column", list(subgroups), key="eval-subgroup")
    metric = right.selectbox("Metric", list(saved.result["metrics"]), key="eval-subgroup-metric",
                             format_func=lambda m: charts.METRIC_NAMES.get(m, m))  # fmt: skip
    table = charts.subgroup_table(subgroups[column], metric)
    st.plotly_chart(charts.subgroup_figure(table, metric), config=charts.PLOT_CONFIG, key="subgroups")
    st.dataframe(table, hide_index=True, width="stretch")
    if table["Small (< 30)"].any():
        st.caption("Groups under 30 examples are marked small: their intervals are wide, not hidden.")
    show_gap((saved.result.get("fairness") or {}).get(column) or {}, metric)


def show_gap(fairness: dict, metric: str) -> None:
    """The metric's largest gap between groups with its 95% CI, flagged when the CI excludes 0; equalized odds."""
    gap = (fairness.get("gaps") or {}).get(metric)
    name = charts.METRIC_NAMES.get(metric, metric)
    if gap is None:
        st.caption(f"No gap for {name}: fewer than two groups where it is defined.")
    else:
        text = (f"Largest gap in {name}: **{gap['value']:.3f}** between {gap['high_group']} (higher) and "
                f"{gap['low_group']}, 95% CI {charts.interval_text(gap).split(' ', 1)[-1]}.")  # fmt: skip
        if gap["excludes_zero"]:
            st.warning(text + " The interval excludes 0: the groups differ beyond chance.", icon=":material/flag:")
        else:
            st.markdown(text + " The interval includes 0.")
    eod = fairness.get("equalized_odds_difference")
    if eod is not None:
        st.markdown(
            f"Equalized-odds difference (largest TPR or FPR range across groups): {charts.interval_text(eod)}."
        )


def show_comparison(saved) -> None:
    comparison = (saved.comparison or {}).get("comparison")
    if not comparison:
        st.caption("This eval was not run side by side. Pick two or more models above to compare them.")
        return
    classes = comparison.get("task", "classification") == "classification"
    resampling = "paired stratified bootstrap" if classes else "paired bootstrap over rows"
    st.markdown(
        f"Reference: **{comparison['reference']}**, {comparison['n']:,} examples. Difference = model - reference, "
        f"{resampling} 95% CI ({comparison['resamples']:,} resamples)."
    )
    for name, other in comparison["models"].items():
        st.markdown(f"**{name}** vs {comparison['reference']}")
        st.dataframe(charts.difference_table(comparison["reference_metrics"], other), hide_index=True,
                     width="stretch")  # fmt: skip
        test, disagree = other["mcnemar"], other["disagreements"]
        if test is not None:
            right = "correctness" if classes else "exact match"
            st.markdown(
                f"McNemar's exact test on {right}: {test['b']} right only by the reference, {test['c']} right only "
                f"by {name}, p = {test['p_value']:.3g}."
            )
        what = "Predictions" if classes else "Per-row scores (token F1 for answers, entity F1 for entities)"
        st.markdown(f"{what} differ on {disagree['count']:,} examples (rows of the split, first ones below).")
        st.dataframe(disagree["rows"], hide_index=True, width="stretch")


def show_results() -> None:
    table = services.list_evals()
    if table.empty:
        st.info("No evaluations yet: start one above, or run `medcore eval run RUN_ID --dataset NAME`.")
        return
    st.dataframe(table[list(LISTED)].rename(columns=LISTED), hide_index=True, width="stretch",
                 height=min(38 + 35 * len(table), 280))  # fmt: skip
    ids = table["eval_id"].tolist()
    wanted = st.session_state.get(OPEN_EVAL)
    described = {row.eval_id: f"{row.eval_id}: {row.model} on {row.dataset}/{row.split}" for row in table.itertuples()}
    eval_id = st.selectbox("Eval", ids, index=ids.index(wanted) if wanted in ids else 0,
                           format_func=described.get, key="eval-open")  # fmt: skip
    saved = services.load_eval(eval_id)
    if saved.config.get("task", "classification") != "classification":
        overview, groups, side = st.tabs(["Metrics", "Subgroups", "Side by side"])  # no class curves
        with overview:
            show_overview(saved)
        with groups:
            show_subgroups(saved)
        with side:
            show_comparison(saved)
        return
    overview, plots, groups, side = st.tabs(["Metrics", "Plots", "Subgroups", "Side by side"])
    with overview:
        show_overview(saved)
    with plots:
        show_plots(saved)
    with groups:
        show_subgroups(saved)
    with side:
        show_comparison(saved)


with st.expander("New evaluation", expanded=True):
    with ui.guard("Preparing the evaluation form"):
        launch_form()
    job_id = st.session_state.get(EVAL_JOB)
    if job_id:
        active = services.evaluation_status(job_id).get("state") in ("queued", "running")
        st.fragment(run_every=1 if active else None)(live_job)(job_id)

st.subheader("Results")
with ui.guard("Showing evaluations"):
    show_results()
