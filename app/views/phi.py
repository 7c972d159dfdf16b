"""PHI page: preview detection and redaction on chosen rows, redact a whole dataset, read and verify the audit log."""

import components as ui
import services
import streamlit as st

from medcore.data.manifest import SPLITS

MODES = {
    "Safe Harbor": "safe-harbor",
    "Research (limited data set)": "research",
}
MODE_HELP = {
    "safe-harbor": "Removes all 18 HIPAA identifiers; ages over 89 become 90+. Masks or removes, never surrogates.",
    "research": "Realistic surrogates with per-patient date shifting: a limited data set for IRB-approved use.",
}
METHODS = {"safe-harbor": ["mask", "remove"], "research": ["surrogate", "mask", "remove"]}
MAX_PREVIEW_ROWS = 10

st.title("PHI")
st.caption(
    "See what the detector finds, choose how to replace it, then redact the whole dataset with an audit record."
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
    mode = MODES[cols[0].radio("Mode", list(MODES), horizontal=True, key="phi_mode")]
    cols[0].caption(MODE_HELP[mode])
    method = cols[1].radio("Method", METHODS[mode], horizontal=True, key=f"phi_method_{mode}")
    cols[1].caption({"mask": "[DATE], [NAME]...", "remove": "deleted", "surrogate": "consistent fakes"}[method])
    return mode, method


def show_preview(manifest, mode: str, method: str) -> None:
    cols = st.columns([1, 1, 1])
    split = cols[0].selectbox("Split", [s for s in SPLITS if manifest.rows.get(s)], key="phi_split")
    frame = services.load_split(manifest, split)
    first = cols[1].number_input("First row", 1, max(len(frame), 1), 1, key="phi_first")
    count = cols[2].number_input("Rows", 1, MAX_PREVIEW_ROWS, 3, key="phi_count")
    chosen = frame.iloc[int(first) - 1 : int(first) - 1 + int(count)]
    previews = [services.preview_text(str(text), mode, method) for text in chosen[manifest.mapping.text]]
    counts = ui.merge_counts(preview.counts for preview in previews)
    st.markdown(ui.legend_html(counts) or "_No PHI found in these rows._", unsafe_allow_html=True)
    for row_number, text, preview in zip(chosen["source_row"], chosen[manifest.mapping.text], previews, strict=True):
        st.markdown(f"**Record {row_number}** - {len(preview.spans)} PHI spans")
        left, right = st.columns(2)
        left.markdown(ui.boxed_html(ui.highlight_html(str(text), preview.spans)), unsafe_allow_html=True)
        right.markdown(ui.boxed_html(ui.redacted_html(preview.redacted_text)), unsafe_allow_html=True)


def redact_whole(manifest, mode: str, method: str) -> None:
    st.subheader("Redact the whole dataset")
    out_name = st.text_input("New dataset name", value=f"{manifest.name}-redacted", key=f"phi_out_{manifest.name}")
    busy = "phi_job" in st.session_state
    disabled = manifest.redaction.status == "redacted" or busy
    if st.button("Redact dataset", type="primary", key="phi_redact", disabled=disabled):
        with ui.guard("Redaction"):
            st.session_state["phi_job"] = services.start_redaction(manifest.name, mode, method, out_name)
    if "phi_job" in st.session_state:
        follow_redaction()
    if done := st.session_state.get("phi_done"):
        st.success(
            f"Wrote '{done['output']}' ({done['rows']:,} records, {done['mode']}, {done['method']}). "
            "It is marked redacted: the Train page accepts it."
        )
        st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")


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
with ui.guard("The preview"):
    st.subheader("Preview")
    show_preview(manifest, mode, method)
redact_whole(manifest, mode, method)
with ui.guard("Reading the audit log"):
    show_audit()
