"""Import roots: on a user's behalf the engine reads server paths only under MEDCORE_IMPORT_ROOTS (default: the
workspace's imports/ folder), with symlinks resolved and '..' refused; the console's path box says so."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from app_helpers import open_page, texts, widget

from medcore.access.actor import Actor, Refused
from medcore.data.import_roots import check_import_path, import_roots, read_server_path
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping
from medcore.phi.audit import read_audit_log

ENGINEER = Actor("eve", "ml-engineer")
MAPPING = ColumnMapping(text="text", label="label")


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCORE_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("MEDCORE_AUDIT_KEY", "MEDCORE_AUDIT_KEY_FILE", "MEDCORE_USERS_FILE", "MEDCORE_IMPORT_ROOTS"):
        monkeypatch.delenv(name, raising=False)


def write_notes(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": [f"note {i}" for i in range(10)], "label": ["a", "b"] * 5}).to_csv(path, index=False)
    return path


def test_the_default_root_is_the_workspaces_imports_folder(workspace):
    [root] = import_roots(workspace)
    assert root == workspace.root / "imports" and root.is_dir()
    path = write_notes(root / "notes.csv")
    assert check_import_path(workspace, path) == path
    assert check_import_path(workspace, "notes.csv") == path  # a relative path is taken under the first root
    assert len(read_server_path(workspace, ENGINEER, str(path))) == 10
    manifest = import_dataset(workspace, path, "notes", MAPPING, actor=ENGINEER)
    assert manifest.total_rows == 10 and manifest.source_file == "notes.csv"


def test_a_path_outside_is_refused_with_the_roots_and_how_to_add_one(workspace, tmp_path):
    outside = write_notes(tmp_path / "elsewhere" / "notes.csv")
    with pytest.raises(Refused) as refused:
        read_server_path(workspace, ENGINEER, str(outside))
    message = str(refused.value)
    assert (
        str(workspace.root / "imports") in message and "MEDCORE_IMPORT_ROOTS" in message and "lies outside" in message
    )
    with pytest.raises(Refused, match="outside"):
        import_dataset(workspace, outside, "notes", MAPPING, actor=ENGINEER)  # the engine's import, not just the page
    assert [(r["kind"], r["outcome"], r["user"]) for r in read_audit_log(workspace)] == [
        ("dataset_imported", "refused", "eve"), ("dataset_imported", "refused", "eve"),
    ]  # fmt: skip
    assert import_dataset(workspace, outside, "notes", MAPPING).total_rows == 10  # the shell's own import: unlimited


def test_dot_dot_is_refused_even_when_it_would_land_inside(workspace):
    root = import_roots(workspace)[0]
    write_notes(root / "notes.csv")
    for path in (root / ".." / "imports" / "notes.csv", "../../etc/passwd", root / ".." / ".." / "etc"):
        with pytest.raises(Refused, match="climbs out of its folder with '..'"):
            check_import_path(workspace, path)


def test_symlinks_pointing_out_are_refused(workspace, tmp_path):
    root = import_roots(workspace)[0]
    secret = write_notes(tmp_path / "secret" / "notes.csv")
    os.symlink(secret, root / "link.csv")
    with pytest.raises(Refused, match="a symlink in it points outside"):
        check_import_path(workspace, root / "link.csv")
    folder = root / "batch"
    write_notes(folder / "part1.csv")
    os.symlink(secret.parent, folder / "more")  # a folder whose entry leads out
    with pytest.raises(Refused, match="its entry more links outside"):
        check_import_path(workspace, folder)
    (folder / "more").unlink()
    os.symlink(folder / "part1.csv", root / "inner.csv")  # a link that stays inside is fine
    assert check_import_path(workspace, root / "inner.csv") == folder / "part1.csv"
    assert check_import_path(workspace, folder) == folder


def test_configured_roots_replace_the_default(workspace, tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    path = write_notes(second / "notes.csv")
    first.mkdir()
    monkeypatch.setenv("MEDCORE_IMPORT_ROOTS", f"{first}{os.pathsep}{second}")
    assert import_roots(workspace) == [first, second]
    assert check_import_path(workspace, path) == path
    default = write_notes(workspace.root / "imports" / "notes.csv")
    with pytest.raises(Refused, match=f"imports only from {first}, {second}"):
        check_import_path(workspace, default)


def test_the_console_path_box_refuses_a_path_outside(workspace, tmp_path):
    outside = write_notes(tmp_path / "notes.csv")
    at = open_page("data")
    widget(at.radio, "Source").set_value("File or folder on this machine")
    at.run()
    box = widget(at.text_input, "Path")
    assert str(workspace.root / "imports") in box.help and "MEDCORE_IMPORT_ROOTS" in box.help
    box.set_value(str(outside))
    at.run()
    assert not at.exception
    assert any("Cannot import" in e and "MEDCORE_IMPORT_ROOTS" in e for e in texts(at, "error"))
    assert not [b for b in at.button if b.label == "Import"]
