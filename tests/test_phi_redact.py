"""Redaction: operators, surrogate consistency, date shifting, files in/out, datasets, bad input, canary PHI."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

import pandas as pd
import pytest

from medcore.cli import main
from medcore.errors import MedcoreError
from medcore.phi.audit import read_audit_log
from medcore.phi.config import build_config
from medcore.phi.datasets import redact_dataset
from medcore.phi.detect import get_analyzer
from medcore.phi.pipeline import redact_file
from medcore.phi.redact import preview_text
from medcore.phi.surrogates import shift_date

SALT = b"test-salt-0123456789abcdef"
NOTE = "Seen by Dr. Rose Hall on 03/14/2023, MRN: 00376744. Ms. Okafor is 94 years old."


@pytest.fixture(scope="session", autouse=True)
def analyzer():
    return get_analyzer()


def test_mask_tags_each_category_and_ages_become_90_plus():
    preview = preview_text(NOTE, mode="safe-harbor", method="mask", salt=SALT)
    assert preview.redacted_text == "Seen by Dr. [NAME] on [DATE], MRN: [ID]. Ms. [NAME] is 90+ years old."
    assert [NOTE[s.start : s.end] for s in preview.spans] == ["Rose Hall", "03/14/2023", "00376744", "Okafor", "94"]
    assert preview.counts == {"NAME": 2, "DATE": 1, "ID": 1, "AGE": 1}
    assert all(s.recognizer and 0 < s.score <= 1 for s in preview.spans)


def test_remove_deletes_the_phi():
    redacted = preview_text(NOTE, method="remove", salt=SALT).redacted_text
    assert "Rose" not in redacted and "00376744" not in redacted and redacted.startswith("Seen by Dr.  on ,")


def test_safe_harbor_refuses_surrogates():
    with pytest.raises(MedcoreError, match="not allowed in mode 'safe-harbor'"):
        build_config(mode="safe-harbor", method="surrogate")


def test_surrogates_are_consistent_realistic_and_keyed_by_the_salt():
    text = "Dr. Rose Hall reviewed. Later Dr. Rose Hall called; MRN: 00376744 and MRN: 00376744 again."
    first = preview_text(text, mode="research", salt=SALT).redacted_text
    again = preview_text(text, mode="research", salt=SALT).redacted_text
    other = preview_text(text, mode="research", salt=b"another-salt-abcdefghijkl").redacted_text
    assert first == again  # deterministic given the salt
    assert first != other
    names = re.findall(r"Dr\. (\w+ \w+)", first)
    assert len(names) == 2 and names[0] == names[1] and names[0] != "Rose Hall"
    ids = re.findall(r"MRN: (\S+?)(?= and|\s|$| again)", first)
    assert ids[0] == ids[1] != "00376744" and re.fullmatch(r"\d{8}", ids[0])


def test_dates_shift_by_one_offset_per_patient_keeping_intervals_and_formats():
    text = "Admitted 03/14/2023; discharged 2023-03-20; follow-up March 27, 2023."
    fmt = ("%m/%d/%Y", "%Y-%m-%d", "%B %d, %Y")
    out_a = redact_text_for(text, "patient-a")
    out_b = redact_text_for(text, "patient-b")
    dates_a = parse_three(out_a, fmt)
    dates_b = parse_three(out_b, fmt)
    assert [(d - dates_a[0]).days for d in dates_a] == [0, 6, 13]  # intervals survive
    assert dates_a[0] != dt.date(2023, 3, 14)
    assert dates_a != dates_b  # each patient has their own offset
    assert redact_text_for(text, "patient-a") == out_a


def redact_text_for(text: str, patient: str) -> str:
    from medcore.phi.redact import redact_texts

    config = build_config(mode="research")
    return next(redact_texts([text], config, SALT, [patient]))[0]


def parse_three(text: str, formats: tuple[str, ...]) -> list[dt.date]:
    found = re.findall(r"(\d{2}/\d{2}/\d{4})|(\d{4}-\d{2}-\d{2})|([A-Z][a-z]+ \d{1,2}, \d{4})", text)
    values = [next(v for v in group if v) for group in found]
    return [dt.datetime.strptime(v, f).date() for v, f in zip(values, formats, strict=True)]


def test_shift_date_preserves_each_written_format():
    assert shift_date("03/14/1952", -30) == "02/13/1952"
    assert shift_date("14-Mar-2023", -1) == "13-Mar-2023"
    assert shift_date("March 14th", -11) == "March 3rd"
    assert shift_date("3/14/23", 1) == "3/15/23"
    assert shift_date("Christmas", -5) is None


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_redact_file_jsonl_keeps_fields_and_writes_original_offsets(workspace, tmp_path):
    records = [
        {"id": 1, "text": NOTE, "phi_spans": [{"start": 0, "end": 4, "type": "GOLD", "value": "secret"}]},
        {"id": 2, "text": "", "extra": "kept"},
        {"id": 3, "text": None},
        {"id": 4, "text": 1234567},
    ]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, records)
    report = redact_file(src, out, ws=workspace)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4] and rows[1]["extra"] == "kept"
    assert rows[0]["text"].startswith("Seen by Dr. [NAME] on [DATE]")
    spans = rows[0]["phi_spans"]
    assert all(set(s) == {"start", "end", "type", "score"} for s in spans)  # gold field overwritten, no values
    assert NOTE[spans[0]["start"] : spans[0]["end"]] == "Rose Hall"
    assert rows[3]["text"] == "[ID]"  # a number in the text column is still redacted
    assert report.rows_in == 4 and report.rows_empty == 2 and report.rows_non_text == 1
    assert report.audit_hash == read_audit_log(workspace)[-1]["hash"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_redact_file_csv_and_parquet_round_trip(workspace, tmp_path, suffix):
    src = tmp_path / f"in.{suffix}"
    frame = pd.DataFrame({"note": [NOTE, "No PHI here."], "label": ["a", "b"]})
    frame.to_csv(src, index=False) if suffix == "csv" else frame.to_parquet(src)
    out = tmp_path / f"out.{suffix}"
    redact_file(src, out, text_field="note", ws=workspace)
    result = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
    assert list(result["label"]) == ["a", "b"]
    assert "Rose Hall" not in result["note"][0] and result["note"][1] == "No PHI here."
    spans = json.loads(result["phi_spans"][0]) if suffix == "csv" else list(result["phi_spans"][0])
    assert len(spans) == 5


def test_bad_input_is_skipped_with_row_numbers_and_never_loses_output(workspace, tmp_path):
    src = tmp_path / "in.jsonl"
    good = json.dumps({"text": NOTE}).encode()
    src.write_bytes(good + b"\n{not json\n" + b'{"text": "caf\xe9 Dr. Rose Hall"}\n' + good + b"\n[1, 2]\n")
    out = tmp_path / "out.jsonl"
    report = redact_file(src, out, ws=workspace, report_path=tmp_path / "report.json")
    assert report.rows_out == 2
    assert report.skipped == {"invalid_json": 1, "not_utf8": 1, "not_an_object": 1}
    assert report.problem_rows["invalid_json"] == [2] and report.problem_rows["not_utf8"] == [3]
    assert json.loads((tmp_path / "report.json").read_text())["rows_out"] == 2


def test_missing_text_field_names_the_field_and_writes_nothing(workspace, tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"body": [NOTE]}).to_csv(src, index=False)
    with pytest.raises(MedcoreError, match="Field 'text' not found in in.csv; columns are: body"):
        redact_file(src, out, ws=workspace)
    assert not out.exists() and list(tmp_path.glob(".out.csv.tmp*")) == []


def make_dataset(ws, name: str) -> None:
    from medcore.data.manifest import ColumnMapping, DatasetManifest, dataset_dir, write_manifest

    folder = dataset_dir(ws, name)
    folder.mkdir(parents=True)
    rows = {"train": [NOTE, "Dr. Rose Hall again on 03/15/2023."], "validation": ["Nothing."], "test": [NOTE]}
    for split, texts in rows.items():
        pd.DataFrame({"text": texts, "pid": ["p1"] * len(texts), "label": ["x"] * len(texts)}).to_parquet(
            folder / f"{split}.parquet"
        )
    manifest = DatasetManifest(
        name=name, mapping=ColumnMapping(text="text", patient_id="pid"), rows={k: len(v) for k, v in rows.items()}
    )
    write_manifest(folder, manifest)


def test_redact_dataset_writes_a_new_audited_dataset(workspace):
    from medcore.data.manifest import load_split, read_manifest

    make_dataset(workspace, "notes")
    seen = []
    manifest = redact_dataset(
        workspace, "notes", mode="research", progress=lambda done, total: seen.append((done, total))
    )
    assert manifest.name == "notes-redacted" and read_manifest(workspace, "notes-redacted") == manifest
    assert manifest.redaction.status == "redacted" and manifest.redaction.parent == "notes"
    assert (manifest.redaction.mode, manifest.redaction.method) == ("research", "surrogate")
    assert manifest.redaction.audit_hash == read_audit_log(workspace)[-1]["hash"]
    train = load_split(workspace, "notes-redacted", "train")
    assert "Rose Hall" not in " ".join(train["text"]) and list(train["label"]) == ["x", "x"]
    assert seen[-1] == (4, 4)
    assert not list((workspace.datasets / ".staging").glob("*"))
    with pytest.raises(MedcoreError, match="already exists"):
        redact_dataset(workspace, "notes")


CANARY = {"name": "Zebediah Quixotewell", "mrn": "90817263", "phone": "(617) 555-0142"}


def test_canary_phi_never_reaches_logs_report_audit_or_errors(workspace, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    note = f"Pt seen by Dr. {CANARY['name']}, MRN: {CANARY['mrn']}, phone {CANARY['phone']}."
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [{"text": note, "patient_id": "p1"}, {"body": note}])
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    assert (
        main(
            [
                "redact",
                str(src),
                str(out),
                "--report",
                str(report),
                "--mode",
                "research",
                "--patient-field",
                "patient_id",
            ]
        )
        == 0
    )
    assert main(["audit", "show", "--json"]) == 0
    # A user error (wrong field) must not quote the records either.
    assert main(["redact", str(src), str(tmp_path / "x.jsonl"), "--text-field", "missing"]) == 1
    with pytest.raises(MedcoreError) as error:
        redact_file(src, tmp_path / "y.jsonl", text_field="missing", ws=workspace)
    captured = capsys.readouterr()
    places = {
        "stdout": captured.out,
        "stderr": captured.err,
        "logs": caplog.text,
        "exception": str(error.value),
        "report": report.read_text(),
        "audit": (workspace.audit / "audit.jsonl").read_text(),
        "output": json.loads(out.read_text().splitlines()[0])["text"],
    }
    for where, content in places.items():
        for value in CANARY.values():
            assert value not in content, f"canary PHI leaked into {where}"
            assert value.split()[-1] not in content, f"canary PHI leaked into {where}"


def test_worker_processes_give_the_same_output(workspace, tmp_path):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [{"text": f"{NOTE} Visit {i}.", "patient_id": f"p{i % 3}"} for i in range(12)])
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}.jsonl"
        config = build_config(mode="research", workers=workers)
        redact_file(src, out, config=config, salt=SALT, ws=workspace, patient_field="patient_id", chunk_rows=3)
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] and "Rose Hall" not in outputs[0]


def test_token_scoring_counts_tokens_and_strict_entities():
    from medcore.phi.scoring import PhiScore

    text = "Dr Rose Hall on 03/14/2023 ok"
    score = PhiScore()
    score.add(text, gold=[(3, 12, "NAME"), (16, 26, "DATE")], predicted=[(3, 7, "NAME"), (16, 26, "DATE")])
    # gold tokens: Rose, Hall, 03, 14, 2023 (5); predicted: Rose, 03, 14, 2023 (4), all correct
    assert (score.gold_tokens, score.predicted_tokens, score.true_positive_tokens) == (5, 4, 4)
    assert score.recall == 0.8 and score.precision == 1.0
    assert score.entity_f1 == 0.5  # only the date matches exactly: 2 * 1 / (2 + 2)
    assert score.per_category_recall() == {"DATE": 1.0, "NAME": 0.5}


def test_types_survive_and_a_column_empty_at_first_may_hold_numbers_later(workspace, tmp_path):
    import pyarrow.parquet as pq

    records = [{"text": "No PHI.", "score": None, "flag": True, "code": 3, "extra": {"a": 1}} for _ in range(3)]
    records += [{"text": "No PHI.", "score": 7, "flag": False, "code": "3a"}, {"text": "Ok.", "score": 8.5}]
    src = tmp_path / "in.jsonl"
    write_jsonl(src, records)
    redact_file(src, tmp_path / "out.parquet", ws=workspace, chunk_rows=2)  # the first chunk has no score at all
    table = pq.read_table(tmp_path / "out.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert types["score"] == "double" and types["flag"] == "bool" and types["code"] == "string"
    rows = table.to_pylist()
    assert [r["score"] for r in rows] == [None, None, None, 7.0, 8.5]
    assert [r["code"] for r in rows] == ["3", "3", "3", "3a", None]  # a mixed column stores every value as text
    assert json.loads(rows[0]["extra"]) == {"a": 1}
    # Parquet in: the input's own schema, even where the first chunk is all null.
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "n": pd.array([None, None, 5, 6], dtype="Int64")})
    frame["day"] = pd.to_datetime(["2023-01-01"] * 4).date
    frame.to_parquet(tmp_path / "in.parquet")
    redact_file(tmp_path / "in.parquet", tmp_path / "out2.parquet", ws=workspace, chunk_rows=2)
    schema = pq.read_schema(tmp_path / "out2.parquet")
    assert str(schema.field("n").type) == "int64" and str(schema.field("day").type) == "date32[day]"


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_jsonl_keys_that_vary_by_line_are_all_kept(workspace, tmp_path, suffix):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [{"text": "One."}, {"text": "Two.", "ward": "5B"}, {"late": 1, "text": "Three."}])
    out = tmp_path / f"out.{suffix}"
    redact_file(src, out, ws=workspace, chunk_rows=1)
    if suffix == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert rows[1]["ward"] == "5B" and rows[2]["late"] == 1 and "ward" not in rows[0]
        return
    frame = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
    assert {"text", "ward", "late", "phi_spans"} <= set(frame.columns)
    assert frame["ward"].tolist()[1] == "5B" and frame["late"].tolist()[2] == 1


def test_all_columns_for_files_decides_every_column(workspace, tmp_path, capsys):
    src = tmp_path / "in.csv"
    pd.DataFrame(
        {
            "note": ["No PHI here.", "Nothing.", "Stable.", "Fine."],
            "mrn": ["00123", "A-77", "123", "00123"],  # numbers and strings in one identifier column
            "surname": ["Okafor", "Hall", "Okafor", "Hall"],
            "seen": ["03/14/2023", "03/15/2023", "03/16/2023", "03/17/2023"],
            "unit": ["ICU", "ED", "ICU", "ED"],
        }
    ).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert main(["redact", str(src), str(out), "--text-field", "note", "--all-columns", "--drop", "unit"]) == 0
    assert "mrn pseudonymise" in capsys.readouterr().out
    result = pd.read_csv(out, dtype=str)
    assert "surname" not in result and "unit" not in result and set(result["seen"]) == {"2023"}
    assert result["mrn"][0] == result["mrn"][3] != result["mrn"][2] and "00123" not in out.read_text()
    record = read_audit_log(workspace)[-1]
    assert {c["column"]: c["action"] for c in record["columns"]}["surname"] == "drop"
    # Without the flag the other columns are copied and listed as not checked.
    report = redact_file(src, tmp_path / "plain.csv", text_field="note", ws=workspace)
    assert {d.column: d.kind for d in report.columns}["mrn"] == "unchecked"
    assert pd.read_csv(tmp_path / "plain.csv", dtype=str)["mrn"][0] == "00123"


def test_bad_notes_redact_or_are_reported_by_row(workspace, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [
        b"",  # an empty note
        "Der Patient Müller wurde gesehen; 患者已出院. E-Mail: hans.mueller@example.de".encode(),  # another language
        b"\x00\xff\xfe garbage \x89PNG\r\n",  # binary garbage
        NOTE.encode(),
    ]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary()), "n": [1, 2, 3, 4]}), src)
    report = redact_file(src, tmp_path / "out.parquet", ws=workspace)
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert rows[0]["text"] == "" and report.rows_empty == 1
    # Identifiers go; the note survives (the tagger, trained on English notes, may also mask a German word or two).
    other_language = rows[1]["text"]
    assert "hans.mueller@example.de" not in other_language and "Müller" not in other_language
    assert "Patient" in other_language and "患者已出院" in other_language
    assert "garbage" in rows[2]["text"] and report.problem_rows["binary_decoded:text"] == [2, 3, 4]
    assert "Rose Hall" not in rows[3]["text"]
    # A column of numbers mapped as text is redacted as its text form; a lone surrogate in JSONL is replaced.
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": 4155550142}\n{"text": "ok \\ud800 Dr. Rose Hall"}\n')
    report = redact_file(src, tmp_path / "out.jsonl", ws=workspace)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert "4155550142" not in rows[0]["text"] and report.rows_non_text == 1
    assert "Rose Hall" not in rows[1]["text"] and report.problem_rows["not_utf8_replaced"] == [2]


def test_a_value_the_detector_fails_on_names_row_and_column_and_leaves_nothing(workspace, tmp_path, monkeypatch):
    from medcore.phi import pipeline

    real = pipeline.redact_texts

    def fragile(texts, *args, **kwargs):
        texts = list(texts)
        if any("Quixotewell" in t for t in texts):
            raise ValueError(f"cannot handle {texts}")  # a library message that quotes the text
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(pipeline, "redact_texts", fragile)
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [{"text": "Fine."}, {"text": "Fine too."}, {"text": "Dr. Zebediah Quixotewell saw him."}])
    out = tmp_path / "out.parquet"
    with pytest.raises(MedcoreError, match=r"Row 3, column 'text': the PHI detector failed") as error:
        redact_file(src, out, ws=workspace, chunk_rows=2)
    assert "Quixotewell" not in str(error.value) and "ValueError" in str(error.value)
    assert not out.exists() and list(tmp_path.glob(".out*")) == []
    make_dataset(workspace, "notes")
    with open(workspace.datasets / "notes" / "test.parquet", "wb") as handle:
        pd.DataFrame({"text": ["Dr. Zebediah Quixotewell"], "pid": ["p1"], "label": ["x"]}).to_parquet(handle)
    with pytest.raises(MedcoreError, match=r"Row 1, column 'text'"):
        redact_dataset(workspace, "notes")
    assert not (workspace.datasets / "notes-redacted").exists()
    assert not list((workspace.datasets / ".staging").glob("*"))


@pytest.mark.slow
def test_a_two_megabyte_note_is_redacted_whole(workspace, tmp_path):
    filler = "Patient stable on current medication, plan unchanged. " * 40_000  # about 2 MB
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [{"text": f"Seen by Dr. Rose Hall. {filler}Call Dr. Rose Hall on 03/14/2023."}])
    # The fast tagger: the same windows over the whole note as the default, in a fifth of the time (a 2 MB note takes
    # the combined tagger 50 s on 2 cores); tests of the tagger's windows cover the default's stitching.
    config = build_config(tagger="fast")
    report = redact_file(src, tmp_path / "out.jsonl", config=config, ws=workspace)
    text = json.loads((tmp_path / "out.jsonl").read_text())["text"]
    assert report.chars > 2_000_000 and "Rose Hall" not in text and "03/14/2023" not in text


@pytest.mark.parametrize("method", ["mask", "surrogate", "remove"])
def test_the_preview_says_where_each_replacement_landed(method):
    from medcore.phi.config import build_config
    from medcore.phi.redact import preview_text

    text = "Seen by Dr. John Smith on 03/14/2021, call 617-555-0142. Afebrile."
    config = build_config(mode="research" if method == "surrogate" else "safe-harbor", method=method)
    preview = preview_text(text, salt=b"0" * 32, config=config)
    assert len(preview.replacements) == len(preview.spans) >= 2
    out, cursor, original = preview.redacted_text, 0, 0
    for (start, end, kind), span in zip(
        preview.replacements, sorted(preview.spans, key=lambda s: s.start), strict=True
    ):
        assert kind == span.type
        assert out[cursor:start] == text[original : span.start]  # the text between replacements is untouched
        if method == "mask":
            assert out[start:end] == f"[{span.type}]"
        cursor, original = end, span.end
    assert out[cursor:] == text[original:]


def test_the_tagger_is_named_a_folder_or_none(tmp_path):
    from medcore.phi.config import DEFAULT_TAGGER, ENCODER_TAGGER, FAST_TAGGER, RedactionConfig

    assert RedactionConfig().tagger == DEFAULT_TAGGER
    assert RedactionConfig(tagger="fast").tagger == FAST_TAGGER
    assert RedactionConfig(tagger=" Encoder ").tagger == ENCODER_TAGGER
    assert RedactionConfig(tagger="none").tagger is None and RedactionConfig(tagger=None).tagger is None
    assert RedactionConfig(tagger=str(tmp_path)).tagger == tmp_path
    assert build_config(tagger="fast").tagger == FAST_TAGGER


def test_cli_tagger_and_threshold_reach_the_report_and_a_missing_tagger_stops_first(workspace, tmp_path, capsys):
    from medcore.phi.config import FAST_TAGGER
    from medcore.phi.tagger import has_tagger, weights_file, weights_sha256

    if not has_tagger(FAST_TAGGER):
        pytest.skip(f"no fast tagger at {FAST_TAGGER}: build it with `medcore phi train-student`")
    src, out, report = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "report.json"
    src.write_text(json.dumps({"text": NOTE}) + "\n")
    missing = tmp_path / "no-tagger"
    assert main(["redact", str(src), str(out), "--tagger", str(missing)]) == 1
    error = capsys.readouterr().err
    assert f"No PHI tagger at {missing}" in error and "--tagger none" in error
    assert not out.exists() and not read_audit_log(workspace)  # refused before anything was read or audited
    assert (
        main(["redact", str(src), str(out), "--tagger", "fast", "--threshold", "0.45", "--report", str(report)]) == 0
    )
    settings = json.loads(report.read_text())["config"]
    weights = weights_file(FAST_TAGGER)
    assert settings["tagger"]["sha256"] == weights_sha256(weights, weights.stat().st_mtime_ns)
    assert settings["threshold"] == 0.45
    assert "Rose Hall" not in out.read_text()
    assert main(["redact", str(src), str(out), "--tagger", "none", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["config"]["tagger"] is None
