"""PHI page: tune and preview detection on chosen rows, decide every column, redact a dataset, verify the audit log."""

import time

import components as ui
import services
import streamlit as st

from medcore.data.manifest import SPLITS, ColumnMapping
from medcore.phi.columns import ACTIONS
from medcore.phi.config import RedactionConfig

MODES = {  # display names of RedactionConfig.mode's values
    "Safe Harbor": "safe-harbor",
    "Research (limited data set)": "research",
}
FIELDS = RedactionConfig.model_fields
MAX_PREVIEW_ROWS = 10
DETECTOR_SEEN = "phi_detector_seen"  # this session has scanned before: the detector is loaded in this process

st.title("PHI")
st.caption(
    "See what the detector finds, choose how to replace it and what happens to each column, then redact the whole "
    "dataset with an audit record."
)


def choose_dataset():
    manifests = services.list_datasets()
    if not manifests:
        st.info("No datasets yet: import one on the Data page first.")
        st.page_link("views/data.py", label="Go to Data", icon=":material/upload_file:")
        st.stop()
    names = [m.name for m in manifests]
    wanted = st.session_state.get("phi_dataset")
    raw_first = next((m.name for m in manifests if m.redaction.status == "raw"), names[0])
    index = names.index(wanted) if wanted in names else names.index(raw_first)
    # No widget key: the choice lives in session_state["phi_dataset"] so a redaction can move it to its output.
    name = st.selectbox("Dataset", names, index=index)
    st.session_state["phi_dataset"] = name
    manifest = next(m for m in manifests if m.name == name)
    if manifest.redaction.status == "redacted":
        st.success(
            f"'{name}' is redacted ({manifest.redaction.mode}, {manifest.redaction.method}) from "
            f"'{manifest.redaction.parent}'.",
            icon=":material/verified_user:",
        )
    return manifest


def choose_method() -> tuple[str, str]:
    cols = st.columns(2)
    label = cols[0].radio("Mode", list(MODES), horizontal=True, key="phi_mode", help=FIELDS["mode"].description)
    mode = MODES[label]
    methods = services.methods_for_mode(mode)
    method = cols[1].radio(
        "Method", methods, horizontal=True, key=f"phi_method_{mode}", help=FIELDS["method"].description
    )
    return mode, method


def choose_tagger():
    """The learned tagger to detect with (the default unless the user picks another shipped one): its TaggerInfo."""
    st.subheader("Detector")
    choices = services.tagger_choices()
    if len(choices) == 1:
        return services.tagger_info(next(iter(choices.values())))
    label = st.radio("Tagger", list(choices), horizontal=True, key="phi_tagger", help=FIELDS["tagger"].description)
    info = services.tagger_info(choices[label])
    st.caption(services.tagger_description(info))
    return info


def choose_threshold(info) -> float | None:
    """The tagger's threshold, beside its cross-validated recall and precision there; None when it is missing."""
    if not info.available:
        st.error(info.problem, icon=":material/error:")
        st.caption("Until it is built, the preview and the column check below use the rules alone.")
        return None
    low, high = services.threshold_range()
    cols = st.columns([2, 1, 1])
    threshold = cols[0].slider(  # one slider per tagger: each starts at its own cross-validated threshold
        "Tagger threshold", low, high, value=info.threshold, step=0.01, key=f"phi_threshold_{info.folder}",
        help=FIELDS["threshold"].description,
    )  # fmt: skip
    measured = services.measured_at(info, threshold)
    if measured is None:
        cols[0].caption(f"Default {info.threshold:g}. No cross-validated figures are recorded for this tagger.")
        return threshold
    at, figures = measured
    cols[1].metric("Recall (cross-validated)", f"{figures['recall']:.3f}")
    cols[2].metric("Precision (cross-validated)", f"{figures['precision']:.3f}")
    where = "" if abs(at - threshold) < 1e-9 else f" (nearest measured threshold {at:g})"
    cols[0].caption(
        f"Measured at {at:g}{where} by patient-grouped cross-validation ({info.folds} folds, {info.notes} notes). "
        f"Default {info.threshold:g}: the threshold cross-validation chose."
    )
    if info.stale:
        cols[0].warning(services.stale_figures_message(), icon=":material/warning:")
    if figures.get("per_category_recall"):
        with cols[0].expander("Recall per category"):
            recall = figures["per_category_recall"]
            st.dataframe([{"category": k, "recall": v} for k, v in recall.items()], hide_index=True)
    return threshold


def show_preview(manifest, config) -> None:
    cols = st.columns([1, 1, 1])
    split = cols[0].selectbox("Split", [s for s in SPLITS if manifest.rows.get(s)], key="phi_split")
    frame = services.load_split(manifest, split)
    first = cols[1].number_input("First row", 1, max(len(frame), 1), 1, key="phi_first")
    count = cols[2].number_input("Rows", 1, MAX_PREVIEW_ROWS, 3, key="phi_count")
    chosen = frame.iloc[int(first) - 1 : int(first) - 1 + int(count)]
    previews = scan_rows([str(text) for text in chosen[manifest.mapping.text]], config, manifest.name)
    services.record_preview(manifest.name, split, [int(n) for n in chosen["source_row"]])  # who saw which records
    counts = ui.merge_counts(preview.counts for preview in previews)
    st.markdown(ui.legend_html(counts), unsafe_allow_html=True)
    if not any(counts.values()):
        st.caption("No PHI found in these rows.")
    for row_number, text, preview in zip(chosen["source_row"], chosen[manifest.mapping.text], previews, strict=True):
        st.markdown(f"**Record {row_number}** - {len(preview.spans)} PHI spans")
        left, right = st.columns(2)
        left.markdown(ui.boxed_html(ui.highlight_html(str(text), preview.spans)), unsafe_allow_html=True)
        right.markdown(
            ui.boxed_html(ui.redacted_html(preview.redacted_text, preview.replacements)), unsafe_allow_html=True
        )
    records = zip(chosen["source_row"], previews, strict=True)
    rows = [{"record": n, **row} for n, preview in records for row in services.span_rows(preview.spans)]
    if rows:
        with st.expander("What found each span (hover a highlight for the same)"):
            st.dataframe(rows, hide_index=True, width="stretch")


def scan_rows(texts: list[str], config, dataset: str) -> list:
    """Detect PHI in the preview rows under a status that says what is happening. The first scan after a server
    start waits for the detector the console began loading in the background (spaCy, Presidio and the tagger:
    seconds), so until this session has scanned once the label names that wait as well as the rows."""
    total = len(texts)
    rows = f"{total} row" + ("" if total == 1 else "s")
    parts = "spaCy, Presidio and the PHI tagger" if config.tagger else "spaCy and Presidio"
    first = (
        f"Scanning row 1 of {total} for PHI..."
        if st.session_state.get(DETECTOR_SEEN) or services.detector_ready()
        else f"Loading the PHI detector ({parts}; once per server start), then scanning {rows}..."
    )
    started = time.monotonic()
    with st.status(first, expanded=False) as status:
        previews = []
        for number, text in enumerate(texts, 1):
            if number > 1:
                status.update(label=f"Scanning row {number} of {total} for PHI...")
            previews.append(services.preview_text(text, config, dataset))
        st.session_state[DETECTOR_SEEN] = True
        status.update(label=f"Scanned {rows} for PHI in {time.monotonic() - started:.1f} s", state="complete")
    return previews


def choose_overrides(manifest) -> dict[str, list[str]]:
    """Columns the user marks not PHI, keeps or drops for this redaction (the text columns are always redacted)."""
    columns = services.overridable_columns(manifest)
    cols = st.columns(3)
    k = f"phi_{manifest.name}"
    help_not_phi = ColumnMapping.model_fields["not_phi"].description
    return {
        "not_phi": cols[0].multiselect("Not PHI", columns, key=f"{k}_not_phi", help=help_not_phi),
        "keep": cols[1].multiselect("Keep unchanged", columns, key=f"{k}_keep", help=ACTIONS["keep"]),
        "drop": cols[2].multiselect("Drop", columns, key=f"{k}_drop", help=ACTIONS["drop"]),
    }


def show_decisions(manifest, config) -> dict[str, list[str]] | None:
    """Each column's decision under the chosen overrides; the overrides, or None when they are refused."""
    st.subheader("What happens to each column")
    st.caption("Every column is decided before redaction, from its role, name, type and a sample of its values.")
    overrides = choose_overrides(manifest)
    with ui.guard("Deciding the columns"):
        ui.decisions_table(services.column_decisions(manifest, config, **overrides))
        return overrides
    return None


def redact_whole(manifest, mode: str, method: str, info, threshold: float | None, overrides) -> None:
    st.subheader("Redact the whole dataset")
    out_name = st.text_input("New dataset name", value=f"{manifest.name}-redacted", key=f"phi_out_{manifest.name}")
    busy = "phi_job" in st.session_state
    if not info.available:
        st.caption("Redacting a dataset needs the PHI tagger (see Detector above).")
    disabled = busy or overrides is None or not info.available
    if st.button("Redact dataset", type="primary", key="phi_redact", disabled=disabled):
        with ui.guard("Redaction"):
            st.session_state["phi_job"] = services.start_redaction(
                manifest.name, mode, method, out_name, threshold=threshold, tagger=info.folder, **overrides
            )
    if "phi_job" in st.session_state:
        follow_redaction()


def show_redaction(manifest) -> None:
    """A redacted dataset: whether the audit log proves it, and what its redaction did to each column."""
    st.subheader("This dataset's redaction")
    if done := st.session_state.get("phi_done"):
        if done.get("output") == manifest.name:
            st.success(
                f"Wrote '{done['output']}' ({done['rows']:,} records, {done['mode']}, {done['method']}). "
                "It is marked redacted: the Train page accepts it."
            )
            st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    check = services.verify_redaction(manifest.name)
    if check.ok:
        st.success(
            f"Verified: audit record {check.record['hash'][:16]} is the redaction that wrote this dataset, and its "
            "files are unchanged since.",
            icon=":material/verified:",
        )
    else:
        st.error(f"Not verified: {check.problem}", icon=":material/gpp_bad:")
    report = services.redaction_report(manifest.name)
    if report is None:
        st.caption("No redaction report in this dataset's folder.")
        return
    st.markdown(ui.legend_html(report.counts), unsafe_allow_html=True)
    st.caption(f"{report.rows_out:,} records written, {report.rows_with_phi:,} with PHI in their text.")
    ui.decisions_table(report.columns)


@st.fragment(run_every=1)
def follow_redaction() -> None:
    """Poll the redaction job (its own process) every second; on completion rerun the page to show the new dataset."""
    job_id = st.session_state.get("phi_job")
    if not job_id:
        return
    with ui.guard("Redaction"):
        status = services.redaction_status(job_id)
        done, total = status.get("done") or 0, status.get("total")
        if status["state"] in ("queued", "running"):
            label = f"{done:,} / {total:,} records" if total else "Starting the detector..."
            st.progress(min(done / total, 1.0) if total else 0.0, text=label)
            return
        del st.session_state["phi_job"]
        if status["state"] == "failed":
            st.error(f"Redaction failed: {status.get('error')}")
            return
        st.session_state["phi_done"] = status
        st.session_state["phi_dataset"] = status["output"]
        st.rerun(scope="app")


def show_audit() -> None:
    st.subheader("Audit log")
    st.caption(
        "One record per redaction run: counts and hashes, never the PHI itself; each record is chained by hash."
    )
    verdict = services.verify_audit_log()
    if verdict.ok and not verdict.records:
        st.caption("No redaction runs yet.")
        return
    if verdict.ok:
        st.success(f"Verified: {verdict.records} records, every hash and link intact.", icon=":material/verified:")
    else:
        st.error("The audit log fails verification:\n\n" + "\n".join(f"- {p}" for p in verdict.problems))
    records = services.audit_records() if verdict.records else []
    if records:
        st.dataframe(ui.audit_rows(records), hide_index=True, width="stretch")


with ui.guard("Loading datasets", stop=True):
    manifest = choose_dataset()
    mode, method = choose_method()
with ui.guard("Reading the PHI tagger", stop=True):
    info = choose_tagger()
    threshold = choose_threshold(info)
    config = services.detector_config(mode, method, threshold, info)
with ui.guard("The preview"):
    st.subheader("Preview")
    show_preview(manifest, config)
if manifest.redaction.status == "redacted":
    with ui.guard("Reading the redaction report"):
        show_redaction(manifest)
else:
    overrides = show_decisions(manifest, config)
    redact_whole(manifest, mode, method, info, threshold, overrides)
with ui.guard("Reading the audit log"):
    show_audit()
