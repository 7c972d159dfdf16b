"""Every column decided: rules, planted PHI in extra columns never reaching any output, overrides, the checking gate."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcore.cli import main
from medcore.data.importer import import_dataset
from medcore.data.manifest import SPLITS, ColumnMapping, RedactionInfo, load_split, read_manifest
from medcore.errors import CLI_OPTIONS, MedcoreError
from medcore.phi.audit import log_path, read_audit_log
from medcore.phi.columns import decide_columns, preview_column_decisions
from medcore.phi.datasets import REPORT_FILE, read_redaction_report, redact_dataset
from medcore.phi.detect import get_analyzer
from medcore.phi.verify import verify_redaction
from medcore.train import load_spec, prepare_run_dir, validate_spec

PLANTED = {
    "mrn": "MRN-90817263",
    "name": "Zebediah Quixotewell",
    "dob_old": "1931-03-14",  # over 89 years ago: Safe Harbor removes even the year
    "dob": "1975-06-02",
    "admit": "2023-03-14",
    "phone": "617-555-0142",
}
MAPPING = ColumnMapping(text="text", label="label", patient_id="patient_id", subgroups=["sex"])


@pytest.fixture(scope="module", autouse=True)
def analyzer():
    return get_analyzer()  # spaCy loads once for the whole file


def planted_frame(n: int = 24) -> pd.DataFrame:
    """Notes with PHI in extra columns: MRN, name, DOB, admission date, phone; six patients, four notes each."""
    return pd.DataFrame(
        {
            "text": [f"Follow-up visit {i}: chest pain resolved, continue aspirin." for i in range(n)],
            "label": ["cardiology", "neurology", "respiratory"] * (n // 3),
            "patient_id": [f"PT{i % 6:04d}" for i in range(n)],
            "mrn": [PLANTED["mrn"] if i % 6 == 0 else f"MRN-{50000000 + i % 6}" for i in range(n)],
            "patient_name": [PLANTED["name"] if i % 6 == 0 else "Ada Lovelace" for i in range(n)],
            "date_of_birth": [PLANTED["dob_old"] if i % 6 == 0 else PLANTED["dob"] for i in range(n)],
            "admission_date": [PLANTED["admit"]] * n,
            "contact": [PLANTED["phone"]] * n,
            "sex": ["F", "M"] * (n // 2),
            "length_of_stay": [i % 5 for i in range(n)],
        }
    )


@pytest.fixture
def notes(workspace):
    import_dataset(workspace, planted_frame(), "notes", MAPPING)
    return workspace


def all_output_text(ws, name: str) -> str:
    """Every file under the dataset folder, Parquet decoded to values as well as its raw bytes, plus the audit log."""
    parts = []
    for path in sorted((ws.datasets / name).rglob("*")):
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        parts.append(path.read_bytes().decode("utf-8", "replace"))
    parts.append(log_path(ws).read_text())
    return "\n".join(parts)


def planted_forms() -> list[str]:
    forms = [PLANTED["mrn"], "90817263", PLANTED["name"], "Zebediah", "Quixotewell", PLANTED["phone"], "5550142"]
    for date in (PLANTED["dob_old"], PLANTED["dob"], PLANTED["admit"]):
        year, month, day = date.split("-")
        forms += [date, f"{month}/{day}/{year}"]
    return forms


@pytest.mark.parametrize("mode", ["safe-harbor", "research"])
def test_planted_phi_in_extra_columns_reaches_no_output_file(notes, mode):
    manifest = redact_dataset(notes, "notes", mode)
    text = all_output_text(notes, manifest.name)
    for value in planted_forms():
        assert value not in text, f"planted PHI reached the {mode} output"
    train = pd.concat(load_split(notes, manifest.name, s) for s in SPLITS).sort_values("source_row")
    source = pd.concat(load_split(notes, "notes", s) for s in SPLITS).sort_values("source_row")
    for kept in ("label", "sex", "length_of_stay", "source_row"):
        assert list(train[kept]) == list(source[kept])
    assert train["patient_id"].nunique() == 6 and not set(train["patient_id"]) & set(source["patient_id"])
    if mode == "safe-harbor":
        assert "patient_name" not in train and "patient_name" not in manifest.columns
        years = train.set_index("source_row")["date_of_birth"]
        assert years[1] is None or pd.isna(years[1])  # 1931: over 89, the year goes too
        assert years[2] == 1975 and set(train["admission_date"]) == {2023}
        report = json.loads((notes.datasets / manifest.name / REPORT_FILE).read_text())
        assert report["values_removed"] == {"date_of_birth": 4}
        assert any(k.endswith("age_over_89:date_of_birth") for k in report["problem_rows"])
    else:
        assert train["patient_name"].nunique() == 2
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in train["admission_date"])


def test_decisions_are_listed_in_report_and_audit_record(notes):
    manifest = redact_dataset(notes, "notes", "safe-harbor")
    actions = {
        "source_row": "keep",
        "text": "redact",
        "label": "keep",
        "patient_id": "pseudonymise",
        "mrn": "pseudonymise",
        "patient_name": "drop",
        "date_of_birth": "year_only",
        "admission_date": "year_only",
        "contact": "pseudonymise",
        "sex": "keep",
        "length_of_stay": "keep",
    }
    record = read_audit_log(notes)[-1]
    assert record["hash"] == manifest.redaction.audit_hash
    assert {c["column"]: c["action"] for c in record["columns"]} == actions
    report = json.loads((notes.datasets / manifest.name / REPORT_FILE).read_text())
    assert {c["column"]: c["action"] for c in report["columns"]} == actions
    assert read_redaction_report(notes, manifest.name).model_dump(mode="json") == report
    assert all(c["reason"] for c in report["columns"])
    preview = preview_column_decisions(notes, "notes", "safe-harbor")
    assert [d.model_dump() for d in preview] == report["columns"]  # the console's preview is what the run did


def test_pseudonyms_keep_patients_grouped_across_splits(notes):
    manifest = redact_dataset(notes, "notes", "research")
    assert manifest.mapping.patient_id == "patient_id"  # still mapped: grouped splits still work
    source = {s: load_split(notes, "notes", s) for s in SPLITS}
    output = {s: load_split(notes, manifest.name, s) for s in SPLITS}
    mapping = {}
    for split in SPLITS:
        for before, after in zip(source[split]["patient_id"], output[split]["patient_id"], strict=True):
            assert mapping.setdefault(before, after) == after and after != before
    assert len(set(mapping.values())) == 6
    groups = {s: set(output[s]["patient_id"]) for s in SPLITS}
    assert not (groups["train"] & groups["validation"]) and not (groups["train"] & groups["test"])
    # Research: a patient's dates move by the patient's own offset, the same in every column.
    frame = pd.concat(output.values())
    shifts = frame.groupby("patient_id")["admission_date"].nunique()
    assert (shifts == 1).all() and frame["admission_date"].nunique() > 1
    # Research pseudonyms are keyed by the workspace salt (stable across runs); Safe Harbor's by a key per run.
    again = redact_dataset(notes, "notes", "research", out_name="again")
    assert load_split(notes, again.name, "train")["patient_id"].equals(output["train"]["patient_id"])
    first, second = (redact_dataset(notes, "notes", out_name=f"sh{i}") for i in (1, 2))
    assert not set(load_split(notes, first.name, "train")["patient_id"]) & set(
        load_split(notes, second.name, "train")["patient_id"]
    )


def test_overrides_drop_keep_and_not_phi_are_applied_and_audited(notes):
    manifest = redact_dataset(
        notes, "notes", "safe-harbor", drop=["mrn", "patient_id"], keep=["length_of_stay"], not_phi=["contact"]
    )
    columns = manifest.columns
    assert "mrn" not in columns and "patient_id" not in columns and manifest.mapping.patient_id is None
    assert manifest.mapping.not_phi == ["contact"]
    train = load_split(notes, manifest.name, "train")
    assert set(train["contact"]) == {PLANTED["phone"]}  # the user vouched for it: kept as is
    record = read_audit_log(notes)[-1]
    assert record["not_phi"] == ["contact"] and record["drop"] == ["mrn", "patient_id"]
    assert record["keep"] == ["length_of_stay"]
    kinds = {c["column"]: (c["action"], c["kind"]) for c in record["columns"]}
    assert kinds["contact"] == ("keep", "not_phi") and kinds["mrn"] == ("drop", "user_drop")
    assert verify_redaction(notes, manifest.name).ok


def test_not_phi_in_the_import_mapping_keeps_the_column(workspace):
    mapping = MAPPING.model_copy(update={"not_phi": ["admission_date"]})
    import_dataset(workspace, planted_frame(), "notes", mapping)
    decisions = {d.column: d for d in preview_column_decisions(workspace, "notes", "safe-harbor")}
    assert decisions["admission_date"].action == "keep" and decisions["admission_date"].kind == "not_phi"
    manifest = redact_dataset(workspace, "notes")
    assert set(load_split(workspace, manifest.name, "train")["admission_date"]) == {PLANTED["admit"]}
    assert read_audit_log(workspace)[-1]["not_phi"] == ["admission_date"]


def test_bad_overrides_are_refused_by_name(notes):
    with pytest.raises(MedcoreError, match="unknown column.*nope.*columns are: source_row, text"):
        preview_column_decisions(notes, "notes", drop=["nope"])
    with pytest.raises(MedcoreError, match="text are mapped text columns"):
        redact_dataset(notes, "notes", keep=["text"])
    with pytest.raises(MedcoreError, match="both kept and dropped"):
        redact_dataset(notes, "notes", keep=["mrn"], drop=["mrn"])
    assert not (notes.datasets / "notes-redacted").exists()
    assert not list((notes.datasets / ".staging").glob("*"))


def test_cli_redact_with_overrides_and_dry_run(notes, capsys):
    assert main(["data", "redact", "notes", "--dry-run", "--drop", "mrn"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mrn\s+drop", out) and re.search(r"date_of_birth\s+year_only", out)
    assert not (notes.datasets / "notes-redacted").exists()
    assert main(["data", "redact", "notes", "--drop", "mrn", "--not-phi", "contact", "--keep", "sex"]) == 0
    manifest = read_manifest(notes, "notes-redacted")
    assert "mrn" not in manifest.columns and manifest.mapping.not_phi == ["contact"]


@pytest.mark.parametrize(
    ("column", "arrow_type", "values", "safe_harbor", "research"),
    [
        ("MRN", pa.string(), ["A1"], "pseudonymise", "pseudonymise"),
        ("patientPhone", pa.string(), ["x"], "pseudonymise", "pseudonymise"),
        ("emergency_contact", pa.string(), ["617-555-0100"], "pseudonymise", "pseudonymise"),
        ("record_no", pa.int64(), [1, 2], "pseudonymise", "pseudonymise"),
        ("email", pa.string(), ["x"], "pseudonymise", "pseudonymise"),
        ("dob", pa.string(), ["1950-01-02"], "year_only", "shift_dates"),
        ("discharged_at", pa.timestamp("us"), [], "year_only", "shift_dates"),
        ("visit_time", pa.string(), ["10:22", "11:00"], "keep", "keep"),  # a time of day, not a date
        ("first_name", pa.string(), ["Ann"], "drop", "surrogate"),
        ("next_of_kin", pa.string(), ["Ann Lee"], "drop", "surrogate"),
        ("home_address", pa.string(), ["1 Elm St"], "drop", "surrogate"),
        ("zip_code", pa.string(), ["02118"], "drop", "surrogate"),
        ("latitude", pa.float64(), [42.1], "drop", "drop"),
        ("drug_name", pa.string(), ["aspirin"], "keep", "keep"),
        ("age", pa.int64(), [45, 95], "cap_age", "cap_age"),
        ("age_band", pa.string(), ["60-69"], "keep", "keep"),
        ("x1", pa.string(), ["MR00376744", "MR00376745"], "pseudonymise", "pseudonymise"),
        ("x2", pa.string(), ["jo@example.org", "al@example.org"], "pseudonymise", "pseudonymise"),
        ("x3", pa.string(), ["03/14/2023", "March 4, 2021"], "year_only", "shift_dates"),
        ("x4", pa.int64(), [12345678, 23456789], "pseudonymise", "pseudonymise"),
        ("x5", pa.string(), ["pain in the left arm since monday"] * 3, "redact", "redact"),
        ("x6", pa.list_(pa.string()), [["a"]], "drop", "drop"),
        ("x7", pa.float64(), [1.5, 2.25], "keep", "keep"),
        ("x8", pa.string(), [{"a": 1}, [2]], "drop", "drop"),  # JSON objects from a JSONL file
        ("has_phone", pa.bool_(), [True, False], "keep", "keep"),
        ("nurse_remarks", pa.string(), ["patient comfortable overnight, no new complaints"], "redact", "redact"),
        ("empty", pa.null(), [], "keep", "keep"),
    ],
)
def test_rules(column, arrow_type, values, safe_harbor, research):
    mapping = ColumnMapping(text="note")
    for mode, expected in (("safe-harbor", safe_harbor), ("research", research)):
        types = {"note": pa.string(), column: arrow_type}
        decisions = decide_columns(mapping, {column: values}, types, mode)
        assert [d.column for d in decisions] == ["note", column]
        assert decisions[1].action == expected, (mode, decisions[1])
        assert all(str(v) not in decisions[1].reason for v in values if str(v) not in column)


def test_a_short_column_holding_names_is_caught_by_the_detector():
    from medcore.phi.config import build_config

    values = ["Seen by Dr. Rose Hall", "Dr. Alice Moreau", "Dr. Rose Hall"]
    decisions = decide_columns(
        ColumnMapping(text="note"), {"seen_by": values}, {"note": pa.string(), "seen_by": pa.string()}, "research",
        config=build_config(mode="research"),
    )  # fmt: skip
    assert decisions[1].action == "redact" and decisions[1].kind == "phi_found"
    assert "Rose" not in decisions[1].reason


# The training gate: a dataset marked redacted is checked against the audit log, not trusted.


def spec_for(name: str, **fields):
    return load_spec({"dataset": name, "task": "classification", "model": "minilm", "max_length": 64, **fields})


def gate_problem(ws, name: str) -> str:
    with pytest.raises(MedcoreError) as err:
        validate_spec(spec_for(name), ws)
    return err.value.render(CLI_OPTIONS)


def edit_manifest(ws, name: str, **redaction) -> None:
    path = ws.datasets / name / "manifest.json"
    data = json.loads(path.read_text())
    data["redaction"].update(redaction)
    path.write_text(json.dumps(data))


def test_a_really_redacted_dataset_passes_the_gate(notes):
    manifest = redact_dataset(notes, "notes")
    validate_spec(spec_for(manifest.name), notes)
    rd = prepare_run_dir(spec_for(manifest.name), notes)
    assert not (rd.path / "redaction_override.json").exists()


def test_a_hand_edited_manifest_is_refused(notes):
    edit_manifest(notes, "notes", status="redacted", override=True)
    assert "is marked redacted but names no audit record" in gate_problem(notes, "notes")
    edit_manifest(notes, "notes", audit_hash="ab" * 32)
    message = gate_problem(notes, "notes")
    assert "which is not in the audit log" in message and "medcore data redact notes" in message
    other = redact_dataset(notes, "notes", out_name="other")
    edit_manifest(notes, "notes", audit_hash=other.redaction.audit_hash)  # a real record, of another dataset
    assert "not the redaction that wrote 'notes'" in gate_problem(notes, "notes")


def test_a_dataset_reimported_after_redaction_is_refused(notes):
    manifest = redact_dataset(notes, "notes")
    import_dataset(notes, planted_frame(), manifest.name, MAPPING, overwrite=True, redaction=manifest.redaction)
    message = gate_problem(notes, manifest.name)
    assert "changed after its audited redaction" in message
    assert "medcore data redact notes --out-name notes-redacted --overwrite" in message


def test_an_edited_audit_log_is_refused(notes):
    manifest = redact_dataset(notes, "notes")
    lines = log_path(notes).read_text().splitlines()
    lines[-1] = lines[-1].replace('"rows_in":24', '"rows_in":23')
    log_path(notes).write_text("\n".join(lines) + "\n")
    assert "audit log fails verification" in gate_problem(notes, manifest.name)


def test_the_override_still_trains_and_is_audited_even_when_marked_redacted(notes):
    edit_manifest(notes, "notes", status="redacted")
    spec = spec_for("notes", allow_unredacted=True)
    validate_spec(spec, notes)
    rd = prepare_run_dir(spec, notes)
    record = read_audit_log(notes)[-1]
    assert record["kind"] == "redaction_override" and record["run_id"] == rd.run_id
    assert "names no audit record" in record["unverified"]
    assert json.loads((rd.path / "redaction_override.json").read_text())["audit_hash"] == record["hash"]


def test_the_manifest_status_flag_alone_no_longer_passes(workspace):
    frame = planted_frame()
    marked = RedactionInfo(status="redacted", mode="safe-harbor", method="mask", parent="raw")
    import_dataset(workspace, frame, "notes", MAPPING, redaction=marked)
    assert not verify_redaction(workspace, "notes").ok


def test_not_phi_must_name_existing_non_text_columns(workspace):
    from medcore.data.validate import DatasetValidationError

    for not_phi, message in ((["nope"], "Column 'nope' \\(mapped as not-PHI nope\\) not found"), (["text"], "cannot")):
        mapping = MAPPING.model_copy(update={"not_phi": not_phi})
        with pytest.raises(DatasetValidationError, match=message):
            import_dataset(workspace, planted_frame(), "notes", mapping)


# A text pair (question pairs, NLI): the second text is a note like the first.


def pair_frame() -> pd.DataFrame:
    """The planted notes plus a second text, mostly too short to pass for free text, with the name in every sixth."""
    frame = planted_frame()
    frame["question2"] = [
        f"Was {PLANTED['name']} seen again?" if i % 6 == 0 else "Any change since?" for i in range(len(frame))
    ]
    return frame


def test_a_name_planted_in_the_second_text_is_redacted_as_text(workspace):
    import_dataset(workspace, pair_frame(), "pairs", MAPPING.model_copy(update={"text_pair": "question2"}))
    manifest = redact_dataset(workspace, "pairs")
    text = all_output_text(workspace, manifest.name)
    for value in (PLANTED["name"], "Zebediah", "Quixotewell"):
        assert value not in text, "a name in the second text reached the output"
    decision = {c["column"]: c for c in read_audit_log(workspace)[-1]["columns"]}["question2"]
    assert (decision["action"], decision["kind"]) == ("redact", "text")  # by its role, not by a guess on values
    assert read_redaction_report(workspace, manifest.name).text_fields == ["text", "question2"]
    redacted = pd.concat(load_split(workspace, manifest.name, s) for s in SPLITS).set_index("source_row")
    assert redacted.loc[2, "question2"] == "Any change since?" and redacted.loc[1, "question2"].startswith("Was ")
    assert manifest.mapping.text_pair == "question2"
    validate_spec(spec_for(manifest.name), workspace)  # the gate accepts it: both texts were redacted


def test_the_gate_refuses_a_second_text_left_unredacted(workspace):
    from medcore.data.manifest import dataset_dir
    from medcore.phi.audit import append_audit_record
    from medcore.phi.verify import REDACTION_KIND, dataset_content_hash

    import_dataset(workspace, pair_frame(), "pairs", MAPPING.model_copy(update={"text_pair": "question2"}))
    manifest = read_manifest(workspace, "pairs")
    columns = [{"column": c, "action": "redact" if c == "text" else "keep"} for c in manifest.columns]
    record = append_audit_record(
        workspace, REDACTION_KIND, dataset="pairs", output_dataset="pairs", columns=columns,
        content_hash=dataset_content_hash(dataset_dir(workspace, "pairs")),
    )  # fmt: skip
    edit_manifest(workspace, "pairs", status="redacted", audit_hash=record["hash"])
    assert "column(s) question2 of 'pairs' are mapped as text but were not redacted" in gate_problem(
        workspace, "pairs"
    )
