"""medcore.data: validation reports, split properties, atomic import/replace/delete, the catalog and the CLI."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from medcore.cli import main
from medcore.data import (
    ColumnMapping,
    DatasetValidationError,
    delete_dataset,
    import_dataset,
    list_datasets,
    load_split,
    read_manifest,
    suggest_mapping,
    validate_dataset,
)
from medcore.data.manifest import SPLITS, dataset_dir
from medcore.data.split import assign_splits
from medcore.errors import MedcoreError

CANARY = "Ophelia Canarywood"
MAPPING = ColumnMapping(text="text", label="label", id="id", patient_id="patient_id", subgroups=["sex"])


def make_notes(n: int = 600, patients: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(["cardiology", "neurology", "oncology", "renal"], size=n, p=[0.5, 0.25, 0.15, 0.1])
    return pd.DataFrame(
        {
            "id": [f"note-{i}" for i in range(n)],
            "patient_id": [f"p{int(x)}" for x in rng.integers(0, patients, n)],
            "text": [f"{CANARY} note {i}: chest pain, {'x' * int(rng.integers(5, 80))}" for i in range(n)],
            "label": labels,
            "sex": rng.choice(["F", "M"], size=n),
        }
    )


def test_validation_reports_rows_and_columns_never_text():
    df = make_notes(40)
    df.loc[[3, 7], "text"] = ["   ", None]
    df.loc[5, "label"] = None
    df.loc[9, "id"] = df.loc[2, "id"]
    df.loc[11, "label"] = "dermatology"  # a label with one row cannot be stratified
    report = validate_dataset(df, MAPPING)
    assert not report.ok and report.task == "classification"
    problems = {(p.row, p.column): p.problem for p in report.row_problems}
    assert problems[(4, "text")] == problems[(8, "text")] == "empty or missing text"
    assert problems[(6, "label")] == "missing label"
    assert problems[(10, "id")] == "duplicate id (same as row 3)"
    assert report.stats.empty_texts == 2 and report.stats.duplicate_ids == 1
    assert any("'dermatology'" in e for e in report.errors)
    assert CANARY not in report.model_dump_json()

    missing = validate_dataset(df, ColumnMapping(text="note", label="label"))
    assert (
        "Column 'note' (mapped as text) not found; columns are: id, patient_id, text, label, sex" in missing.errors[0]
    )


def test_validation_caps_row_problems_and_refuses_free_text_as_label():
    df = make_notes(500)
    df["text"] = ""
    report = validate_dataset(df, ColumnMapping(text="text"))
    assert report.row_problems_total == 500 and len(report.row_problems) == 200
    free = make_notes(200)
    report = validate_dataset(free, ColumnMapping(text="id", label="text"))
    assert any("looks like free text" in e for e in report.errors)
    assert CANARY not in report.model_dump_json() and report.stats.label_counts == {}


def test_validation_stats_match_pandas():
    df = make_notes(300)
    report = validate_dataset(df, MAPPING)
    assert report.ok, report.errors
    assert report.stats.label_counts == df["label"].value_counts().to_dict()
    assert report.stats.text_length["p50"] == df["text"].str.len().median()
    assert report.stats.patients == df["patient_id"].nunique()


def test_suggest_mapping_by_name_and_by_values():
    df = make_notes(100).rename(columns={"text": "clinical_note", "label": "specialty"})
    mapping = suggest_mapping(df)
    assert (mapping.text, mapping.label, mapping.id, mapping.patient_id) == (
        "clinical_note", "specialty", "id", "patient_id",
    )  # fmt: skip
    assert mapping.subgroups == ["sex"]
    odd = pd.DataFrame({"a": ["short"] * 50, "b": [f"a much longer free text body {i}" for i in range(50)],
                        "c": ["x", "y"] * 25})  # fmt: skip
    guessed = suggest_mapping(odd)
    assert (guessed.text, guessed.label) == ("b", "c")  # "a" is constant: no use as a label


def test_split_is_stratified_grouped_and_seeded():
    df = make_notes(2000, patients=400)
    assign = assign_splits(df, (0.8, 0.1, 0.1), label="label", group="patient_id", seed=3)
    by_patient = pd.Series(assign).groupby(df["patient_id"]).nunique()
    assert (by_patient == 1).all()  # one patient never spans two splits
    share = pd.Series(assign).value_counts(normalize=True)
    for name, expected in zip(SPLITS, (0.8, 0.1, 0.1), strict=True):
        assert abs(share[name] - expected) < 0.04
    overall = df["label"].value_counts(normalize=True)
    for name in SPLITS:
        within = df["label"][assign == name].value_counts(normalize=True)
        assert (within.reindex(overall.index).fillna(0) - overall).abs().max() < 0.06
    assert (assign_splits(df, label="label", group="patient_id", seed=3) == assign).all()
    assert (assign_splits(df, label="label", group="patient_id", seed=4) != assign).any()
    plain = assign_splits(df, (0.7, 0.3, 0.0), label="label", seed=0)
    assert set(plain) == {"train", "validation"} and abs((plain == "validation").mean() - 0.3) < 0.02


def test_import_writes_splits_manifest_hash_and_catalog(workspace):
    df = make_notes(400)
    manifest = import_dataset(workspace, df, "notes", MAPPING, source_file="/secret/path/notes.csv")
    assert manifest.source_file == "notes.csv" and manifest.task == "classification"
    assert manifest.label_set == sorted(df["label"].unique())
    splits = {s: load_split(workspace, "notes", s) for s in SPLITS}
    assert {s: len(f) for s, f in splits.items()} == manifest.rows and manifest.total_rows == 400
    together = pd.concat(splits.values()).sort_values("source_row").reset_index(drop=True)
    pd.testing.assert_frame_equal(together.drop(columns="source_row"), df, check_dtype=False)
    assert together["source_row"].tolist() == list(range(1, 401))
    patients = [set(f["patient_id"]) for f in splits.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert read_manifest(workspace, "notes") == manifest
    again = import_dataset(workspace, df, "notes-copy", MAPPING)
    assert again.content_hash == manifest.content_hash  # same data, same seed: same bytes
    con = duckdb.connect(str(workspace.catalog), read_only=True)
    rows = dict(con.execute("SELECT name, rows FROM datasets").fetchall())
    con.close()
    assert rows == {"notes": 400, "notes-copy": 400}


def test_import_from_path_with_folder_and_redaction(workspace, tmp_path):
    from medcore.data import RedactionInfo

    df = make_notes(100)
    path = tmp_path / "upload.jsonl"
    df.to_json(path, orient="records", lines=True)
    redaction = RedactionInfo(status="redacted", mode="safe-harbor", parent="notes")
    manifest = import_dataset(workspace, path, "notes-redacted", MAPPING, redaction=redaction)
    assert manifest.source_format == "jsonl" and manifest.redaction.status == "redacted"
    assert [m.name for m in list_datasets(workspace)] == ["notes-redacted"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_imports_leave_the_workspace_untouched(workspace, monkeypatch):
    good = make_notes(200)
    import_dataset(workspace, good, "notes", MAPPING)
    before = _snapshot(dataset_dir(workspace, "notes"))
    bad = make_notes(200)
    bad.loc[17, "text"] = None
    with pytest.raises(DatasetValidationError) as info:
        import_dataset(workspace, bad, "notes", MAPPING, overwrite=True)
    assert "row 18, column 'text': empty or missing text" in str(info.value)
    assert info.value.report.row_problems_total == 1 and CANARY not in str(info.value)
    with pytest.raises(MedcoreError, match="already exists"):
        import_dataset(workspace, good, "notes", MAPPING)

    calls = []

    def failing_to_parquet(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(self, path, *args, **kwargs)

    original = pd.DataFrame.to_parquet
    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing_to_parquet)
    with pytest.raises(MedcoreError, match="No space left on device.*left unchanged"):
        import_dataset(workspace, make_notes(200, seed=9), "notes", MAPPING, overwrite=True)
    monkeypatch.undo()
    assert _snapshot(dataset_dir(workspace, "notes")) == before
    assert not any((workspace.datasets / ".staging").iterdir())
    assert [m.name for m in list_datasets(workspace)] == ["notes"]

    replaced = import_dataset(workspace, make_notes(300, seed=1), "notes", MAPPING, overwrite=True)
    assert read_manifest(workspace, "notes").total_rows == 300 == replaced.total_rows
    assert not any((workspace.datasets / ".staging").iterdir())


def test_delete_dataset(workspace):
    import_dataset(workspace, make_notes(50), "notes", MAPPING)
    delete_dataset(workspace, "notes")
    assert list_datasets(workspace) == [] and not dataset_dir(workspace, "notes").exists()
    with pytest.raises(MedcoreError, match="Dataset 'nope' not found"):
        delete_dataset(workspace, "nope")
    with pytest.raises(MedcoreError, match="not allowed"):
        import_dataset(workspace, make_notes(50), "../escape", MAPPING)


def test_cli_import_list_show(workspace, tmp_path, capsys):
    path = tmp_path / "notes.csv"
    make_notes(120).to_csv(path, index=False)
    args = ["data", "import", str(path), "--name", "notes", "--text-column", "text", "--label-column", "label"]
    assert main([*args, "--patient-id-column", "patient_id", "--subgroups", "sex"]) == 0
    assert "imported 'notes'" in capsys.readouterr().out
    assert main(["data", "list"]) == 0 and "notes" in capsys.readouterr().out
    assert main(["data", "show", "notes"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mapping"]["patient_id"] == "patient_id" and shown["mapping"]["subgroups"] == ["sex"]
    assert main(["data", "import", str(path), "--name", "other", "--text-column", "body"]) == 1
    err = capsys.readouterr().err
    assert "Column 'body' (mapped as text) not found" in err and "Traceback" not in err


def test_mixed_type_fields_and_causal_lm_mapping(workspace, tmp_path):
    records = [
        {"prompt": f"Q{i}", "response": f"A{i}", "text": f"ctx {i}", "code": i if i % 2 else str(i)} for i in range(20)
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    half = ColumnMapping(text="text", prompt="prompt")
    assert any(
        "both a prompt and a response" in e for e in validate_dataset(pd.read_json(path, lines=True), half).errors
    )
    manifest = import_dataset(workspace, path, "qa", ColumnMapping(text="text", prompt="prompt", response="response"))
    assert manifest.task == "causal-lm" and manifest.total_rows == 20
    codes = pd.concat(load_split(workspace, "qa", s) for s in SPLITS).sort_values("source_row")["code"]
    assert codes.tolist() == [str(i) for i in range(20)]  # 3 and "3" in one field are stored as text, none lost


def test_cli_redacts_a_catalog_dataset_into_a_new_audited_dataset(workspace, capsys):
    from medcore.cli import main
    from medcore.data.manifest import load_split, read_manifest
    from medcore.phi.audit import verify_audit_log

    frame = pd.DataFrame(
        {
            "text": [f"Seen by Dr. Alice Moreau on 03/14/2023, MRN 55{i:05d}." for i in range(12)],
            "label": ["a", "b"] * 6,
        }
    )
    import_dataset(workspace, frame, "notes", ColumnMapping(text="text", label="label"))
    assert main(["data", "redact", "notes"]) == 0
    manifest = read_manifest(workspace, "notes-redacted")
    assert manifest.redaction.status == "redacted" and manifest.redaction.parent == "notes"
    texts = " ".join(load_split(workspace, "notes-redacted", "train")["text"])
    assert "Moreau" not in texts and "03/14/2023" not in texts and "[NAME]" in texts
    assert verify_audit_log(workspace).ok
    assert "Moreau" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "file_name,expected",
    [("Notes 2024.csv", "notes-2024"), ("/tmp/ICU_notes.v2.parquet", "icu_notes.v2"), ("___.jsonl", "dataset")],
)
def test_a_suggested_dataset_name_is_one_the_engine_accepts(file_name, expected):
    from medcore.data.manifest import check_dataset_name, suggest_dataset_name

    assert check_dataset_name(suggest_dataset_name(file_name)) == expected


def test_a_long_suggested_name_still_validates():
    from medcore.data.manifest import check_dataset_name, suggest_dataset_name

    check_dataset_name(suggest_dataset_name("a" * 63 + "-" + "b" * 10 + ".csv"))


def question_pairs(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "question1": [f"{CANARY} asks: is chest pain {i} serious?" for i in range(n)],
            "question2": [f"Should {CANARY} worry about chest pain {i % 7}?" for i in range(n)],
            "label": ["same", "different"] * (n // 2),
        }
    )


def test_the_second_text_is_checked_like_the_text():
    mapping = ColumnMapping(text="question1", text_pair="question2", label="label")
    df = question_pairs()
    assert validate_dataset(df, mapping).ok
    df.loc[[2, 9], "question2"] = ["  ", None]
    report = validate_dataset(df, mapping)
    assert not report.ok and any("2 rows have empty text in column 'question2'" in e for e in report.errors)
    problems = {(p.row, p.column): p.problem for p in report.row_problems}
    assert problems == {(3, "question2"): "empty or missing text", (10, "question2"): "empty or missing text"}
    assert report.stats.empty_texts == 0  # the stats describe the first text
    assert CANARY not in report.model_dump_json()
    missing = validate_dataset(df.drop(columns="question2"), mapping)
    assert "Column 'question2' (mapped as text_pair) not found" in missing.summary()
    refused = {
        "not PHI": (mapping.model_copy(update={"not_phi": ["question2"]}), None, "cannot be marked not PHI"),
        "same column": (mapping.model_copy(update={"text_pair": "question1"}), None, "both the text and the second"),
        "one-text task": (mapping.model_copy(update={"label": None}), "causal-lm", "Task 'causal-lm' reads one text"),
    }
    for why, (bad, task, message) in refused.items():
        errors = validate_dataset(question_pairs(), bad, task).errors
        assert any(message in e for e in errors), (why, errors)


@pytest.mark.parametrize(
    "first,second",
    [("question1", "question2"), ("sentence1", "sentence2"), ("premise", "hypothesis"), ("text", "text_b")],
)
def test_suggest_mapping_pairs_the_usual_column_names(first, second):
    df = question_pairs().rename(columns={"question1": first, "question2": second})
    guessed = suggest_mapping(df)
    assert (guessed.text, guessed.text_pair, guessed.label) == (first, second, "label")
    assert suggest_mapping(df[[second, "label"]]).text_pair is None  # a lone text is the text, never a pair


def test_cli_imports_a_pair_dataset(workspace, tmp_path, capsys):
    path = tmp_path / "pairs.csv"
    question_pairs().to_csv(path, index=False)
    args = ["data", "import", str(path), "--name", "qpairs", "--text-column", "question1"]
    assert main([*args, "--text-pair-column", "question2", "--label-column", "label"]) == 0
    manifest = read_manifest(workspace, "qpairs")
    assert manifest.mapping.text_pair == "question2" and manifest.task == "classification"
    assert "question2" in load_split(workspace, "qpairs", "train").columns
    assert main([*args, "--text-pair-column", "question3", "--label-column", "label", "--name", "bad"]) == 1
    assert "Column 'question3' (mapped as text_pair) not found" in capsys.readouterr().err


def test_cli_roles_given_without_a_text_column_win_over_the_guess(workspace, tmp_path, capsys):
    path = tmp_path / "notes.csv"
    make_notes(60).assign(outcome=lambda f: f["label"]).to_csv(path, index=False)
    args = ["data", "import", str(path), "--name", "notes", "--label-column", "outcome", "--subgroups", "sex"]
    assert main(args) == 0, capsys.readouterr().err
    mapping = json.loads((dataset_dir(workspace, "notes") / "manifest.json").read_text())["mapping"]
    assert mapping["text"] == "text" and mapping["label"] == "outcome" and mapping["subgroups"] == ["sex"]
