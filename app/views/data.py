"""Data page: upload or point at a file, map its columns, validate, split and import; the dataset catalog."""

import hashlib
from typing import get_args

import components as ui
import services
import streamlit as st

from medcore.data.manifest import ColumnMapping
from medcore.models import Task

NONE = "(none)"
INFER = "Infer from the mapping"
FILE_TYPES = ["csv", "tsv", "json", "jsonl", "ndjson", "parquet", "pq"]

st.title("Data")
st.caption("Bring clinical text in: map its columns, check it row by row, split it and import it into the workspace.")


def choose_source():
    """The upload (or server-side file/folder) as (frame, file name, a key that changes with the source)."""
    source = st.radio("Source", ["Upload a file", "File or folder on this machine"], horizontal=True, key="source")
    if source == "Upload a file":
        uploaded = st.file_uploader("CSV, TSV, JSON, JSONL or Parquet, up to 200 MB", type=FILE_TYPES, key="upload")
        if uploaded is None:
            return None
        return services.read_upload(uploaded), uploaded.name, uploaded.file_id
    roots, where = services.import_roots()
    placeholder = f"{roots[0] / 'notes.parquet'} or a Hugging Face datasets folder"
    path = st.text_input("Path", placeholder=placeholder, key="path", help=where)
    if not path:
        return None
    return services.read_folder(path), path, path


def pick(label: str, columns: list[str], suggested: str | None, key: str, help_text: str) -> str | None:
    options = [NONE, *columns]
    index = options.index(suggested) if suggested in options else 0
    choice = st.selectbox(label, options, index=index, key=key, help=help_text)
    return None if choice == NONE else choice


def choose_mapping(frame, source_key: str) -> ColumnMapping:
    """Column roles, with medcore's suggestions preselected (widget keys follow the source, so a new file resets)."""
    columns = [str(c) for c in frame.columns]
    guess = services.suggest_mapping(frame)
    fields = ColumnMapping.model_fields
    k = "map-" + hashlib.sha256(source_key.encode()).hexdigest()[:12]
    left, right = st.columns(2)
    with left:
        text = pick("Text", columns, guess.text, f"{k}-text", fields["text"].description)
        text_pair = pick(
            "Second text (pairs)", columns, guess.text_pair, f"{k}-text-pair", fields["text_pair"].description
        )
        label = pick("Label", columns, guess.label, f"{k}-label", fields["label"].description)
        patient = pick("Patient id", columns, guess.patient_id, f"{k}-patient", fields["patient_id"].description)
        record = pick("Record id", columns, guess.id, f"{k}-id", fields["id"].description)
    with right:
        subgroups = st.multiselect(
            "Subgroups", columns, default=guess.subgroups, key=f"{k}-subgroups", help=fields["subgroups"].description
        )
        prompt = pick("Prompt", columns, guess.prompt, f"{k}-prompt", fields["prompt"].description)
        response = pick("Response", columns, guess.response, f"{k}-response", fields["response"].description)
        spans = pick("Spans", columns, guess.spans, f"{k}-spans", fields["spans"].description)
        not_phi = st.multiselect(
            "Not PHI", columns, default=guess.not_phi, key=f"{k}-not-phi", help=fields["not_phi"].description
        )
    return ColumnMapping(
        text=text or "", text_pair=text_pair, label=label, id=record, patient_id=patient, subgroups=subgroups,
        prompt=prompt, response=response, spans=spans, not_phi=not_phi,
    )  # fmt: skip


def show_report(report) -> None:
    stats = report.stats
    cols = st.columns(4)
    cols[0].metric("Rows", f"{stats.rows:,}")
    cols[1].metric("Empty texts", stats.empty_texts)
    cols[2].metric("Labels", len(stats.label_counts))
    cols[3].metric("Patients", "-" if stats.patients is None else f"{stats.patients:,}")
    for error in report.errors:
        st.error(error)
    for warning in report.warnings:
        st.warning(warning)
    if report.ok:
        st.success(f"Valid for task: {report.task or 'text only'}.", icon=":material/check_circle:")
    if report.row_problems_total:
        st.write(f"**{report.row_problems_total} row problems** (row numbers count records from 1):")
        st.dataframe([p.model_dump() for p in report.row_problems], hide_index=True, height=220)
    if stats.label_counts:
        with st.expander("Label counts"):
            st.dataframe([{"label": k, "rows": v} for k, v in stats.label_counts.items()], hide_index=True)


def choose_split() -> tuple[tuple[float, float, float], int]:
    cols = st.columns(4)
    train = cols[0].number_input("Train %", 0, 100, 80, step=5, key="split-train")
    validation = cols[1].number_input("Validation %", 0, 100, 10, step=5, key="split-validation")
    test = cols[2].number_input("Test %", 0, 100, 10, step=5, key="split-test")
    seed = cols[3].number_input("Seed", 0, 2**31 - 1, 0, key="split-seed")
    st.caption("Splits are stratified by label and keep each patient's notes in one split.")
    return (train / 100, validation / 100, test / 100), int(seed)


def show_catalog() -> None:
    st.subheader("Datasets in the workspace")
    manifests = services.list_datasets()
    if not manifests:
        st.info("No datasets yet: import one above, or run `medcore demo` for synthetic notes.")
        return
    rows = [
        {
            "name": m.name,
            "task": m.task or "text only",
            "rows": m.total_rows,
            **{split: m.rows.get(split, 0) for split in ("train", "validation", "test")},
            "labels": len(m.label_set),
            "redaction": m.redaction.status + (" (override)" if m.redaction.override else ""),
            "encrypted at rest": "yes" if m.encrypted else "no",
            "redacted from": m.redaction.parent or "",
            "source": m.source_file or "",
        }
        for m in manifests
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    labelled = [m for m in manifests if m.mapping.label]
    if labelled:
        with st.expander("Label balance"):
            by_name = {m.name: m for m in labelled}
            chosen = st.selectbox("Dataset", list(by_name), key="balance-dataset")
            show_label_balance(by_name[chosen])


def show_label_balance(manifest) -> None:
    """Rows per label and split, and a warning when one class dwarfs another."""
    counts = services.label_counts(manifest)
    if counts.empty:
        return
    note = services.imbalance_note(counts)
    if note:
        st.warning(note, icon=":material/balance:")
    st.dataframe(counts, width="stretch")


with ui.guard("Reading the data"):
    chosen = choose_source()
    if chosen is not None:
        frame, file_name, source_key = chosen
        st.write(
            f"**{file_name.rsplit('/', 1)[-1]}**: {len(frame):,} rows, columns: {', '.join(map(str, frame.columns))}"
        )
        with st.expander("First rows (stays on this machine)"):
            st.dataframe(frame.head(5), hide_index=True)
        st.subheader("Columns")
        mapping = choose_mapping(frame, source_key)
        choice = st.selectbox("Task", [INFER, *get_args(Task)], key="task")
        task = None if choice == INFER else choice
        st.subheader("Validation")
        report = services.validate_dataset(frame, mapping, task)
        show_report(report)
        st.subheader("Split and import")
        split, seed = choose_split()
        name = st.text_input("Dataset name", value=services.suggest_dataset_name(file_name), key=f"name-{source_key}")
        overwrite = st.checkbox(ui.LABELS["overwrite"], key="overwrite")
        if st.button("Import", type="primary", disabled=not report.ok, key="import"):
            with ui.guard("The import"), st.spinner("Splitting and writing Parquet..."):
                manifest = services.import_dataset(
                    frame, name, mapping, task=task, split=split, seed=seed, source_file=file_name, overwrite=overwrite
                )
                counts = ", ".join(f"{k} {v:,}" for k, v in manifest.rows.items())
                st.success(f"Imported '{manifest.name}': {counts}. Next: preview and redact PHI.")
                show_label_balance(manifest)
                st.session_state["phi_dataset"] = manifest.name  # the link opens the PHI page on this dataset
                st.page_link("views/phi.py", label=f"Go to PHI ({manifest.name})", icon=":material/shield_person:")

with ui.guard("Listing datasets"):
    show_catalog()
