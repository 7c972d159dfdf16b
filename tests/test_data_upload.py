"""medcore.data: reading every upload format, and clear errors for broken files (never quoting their content)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medcore.data import read_upload
from medcore.data import readers as readers_module
from medcore.errors import MedcoreError

CANARY = "Zebulon Quagmire-Canary"  # planted patient text: must never appear in an error message


@pytest.fixture
def notes() -> pd.DataFrame:
    labels = ["cardiology", "neurology", "oncology"]
    return pd.DataFrame(
        {
            "id": [f"n{i}" for i in range(30)],
            "text": [f"Patient {CANARY} seen on day {i}, stable." for i in range(30)],
            "label": [labels[i % 3] for i in range(30)],
            "age": [20 + i for i in range(30)],
        }
    )


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


def _write(df: pd.DataFrame, tmp_path, fmt: str):
    path = tmp_path / f"upload.{fmt}"
    records = df.to_dict(orient="records")
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "json":
        path.write_text(json.dumps(records))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_file_formats_round_trip_from_path_and_bytes(notes, tmp_path, fmt):
    path = _write(notes, tmp_path, fmt)
    _same(read_upload(path), notes)
    _same(read_upload(path.read_bytes(), path.name), notes)


def test_json_data_envelope_and_jsonl_with_json_extension(notes, tmp_path):
    records = notes.to_dict(orient="records")
    envelope = tmp_path / "wrapped.json"
    envelope.write_text(json.dumps({"data": records, "version": 1}))
    _same(read_upload(envelope), notes)
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(r) for r in records))
    _same(read_upload(lines), notes)


def test_hf_datasets_folders(notes, tmp_path):
    import datasets

    ds = datasets.Dataset.from_pandas(notes, preserve_index=False)
    ds.save_to_disk(str(tmp_path / "single"))
    _same(read_upload(tmp_path / "single"), notes)
    both = datasets.DatasetDict({"train": ds.select(range(20)), "test": ds.select(range(20, 30))})
    both.save_to_disk(str(tmp_path / "dict"))
    _same(read_upload(tmp_path / "dict"), notes)


def test_folder_of_parquet_and_jsonl_files(notes, tmp_path):
    folder = tmp_path / "hub" / "data"
    folder.mkdir(parents=True)
    notes.iloc[:15].to_parquet(folder / "train-00000.parquet", index=False)
    notes.iloc[15:].to_parquet(folder / "train-00001.parquet", index=False)
    (tmp_path / "hub" / ".cache").mkdir()
    (tmp_path / "hub" / ".cache" / "junk.jsonl").write_text("not json\n")  # hidden folders are ignored
    _same(read_upload(tmp_path / "hub"), notes)
    jl = tmp_path / "jl"
    jl.mkdir()
    notes.iloc[:10].to_json(jl / "a.jsonl", orient="records", lines=True)
    notes.iloc[10:].to_json(jl / "b.jsonl", orient="records", lines=True)
    _same(read_upload(jl), notes)


def _error(source, name=None) -> str:
    with pytest.raises(MedcoreError) as info:
        read_upload(source, name)
    message = str(info.value)
    assert CANARY not in message and "Zebulon" not in message
    return message


def test_malformed_jsonl_names_the_line_without_content(tmp_path):
    good = json.dumps({"text": f"{CANARY} ok", "label": "a"})
    path = tmp_path / "bad.jsonl"
    path.write_text(f'{good}\n{good}\n{{"text": "{CANARY} broken", "label": \n{good}\n')
    message = _error(path)
    assert "line 3" in message and "bad.jsonl" in message
    (tmp_path / "list.jsonl").write_text(f"{good}\n[1, 2]\n")
    assert "line 2" in _error(tmp_path / "list.jsonl")


def test_bad_encoding_empty_and_unsupported(tmp_path):
    latin = f"id,text\n1,{CANARY} caf\u00e9\n".encode("cp1252")
    message = _error(latin, "notes.csv")
    assert "UTF-8" in message and "line 2" in message
    assert "empty" in _error(b"", "notes.csv")
    assert "only whitespace" in _error(b"  \n\n", "notes.jsonl")
    assert "no rows" in _error(b"id,text\n", "notes.csv")
    assert "no rows" in _error(b"[]", "notes.json")
    message = _error(b"a,b\n1,2\n", "notes.xlsx")
    assert "unsupported extension '.xlsx'" in message and ".csv" in message
    assert "file name" in _error(b"a,b\n1,2\n")
    assert "does not exist" in _error(tmp_path / "missing.csv")
    assert "holds no dataset" in _error(tmp_path)


def test_malformed_csv_json_and_parquet(tmp_path):
    ragged = f'id,text\n1,ok\n2,"{CANARY}",extra,fields\n'.encode()
    message = _error(ragged, "notes.csv")
    assert "row 2 (line 3) has 4" in message and "header's 2" in message and CANARY not in message
    message = _error(f'[{{"text": "{CANARY}"}}, oops]'.encode(), "notes.json")
    assert "not valid JSON" in message and "line 1" in message
    assert "list of records" in _error(b'{"text": "x"}', "notes.json")
    assert "record 2" in _error(b'[{"a": 1}, 5]', "notes.json")
    assert "Parquet" in _error(f"{CANARY} PAR1 garbage".encode(), "notes.parquet")


def test_broken_csvs_name_their_rows_instead_of_importing_shifted_data():
    """pandas pads a short row and lets an unclosed quote eat the records after it; the import must refuse both."""
    short = f"id,note,label\n1,{CANARY} fine,a\n2,{CANARY} short\n3,ok,b\n".encode()
    message = _error(short, "notes.csv")
    assert "row 2 (line 3) has 2" in message and CANARY not in message
    swallowed = "id,note,label,sex\n" + f'1,"{CANARY},a,F\n' + "".join(f"{i},n,b,M\n" for i in range(2, 6))
    swallowed += '6,end",a,F\n7,ok,b,M\n'
    message = _error(swallowed.encode(), "notes.csv")
    assert "row 1 (lines 2-7)" in message and "never closed" in message and CANARY not in message
    unclosed = f'id,note,label\n1,ok,a\n2,"{CANARY},b\n3,ok,a\n'.encode()
    message = _error(unclosed, "notes.csv")
    assert "starts on line 3, row 2" in message and CANARY not in message


def test_quoted_notes_with_line_breaks_and_separators_still_import():
    text = 'id,note,label\n1,"BP 120/80, HR 72\nafebrile, a&o x3\nplan: d/c",a\n2,"He said ""fine"", ok",b\n3,5\'10" tall,a\n'
    frame = read_upload(text.encode(), "notes.csv")
    assert (
        frame.shape == (3, 3)
        and frame.loc[0, "note"].count("\n") == 2
        and frame.loc[1, "note"] == 'He said "fine", ok'
    )


def test_size_limit(monkeypatch, notes, tmp_path):
    path = _write(notes, tmp_path, "csv")
    monkeypatch.setattr(readers_module, "MAX_UPLOAD_BYTES", 100)
    message = _error(path)
    assert "limited to" in message and "folder" in message
