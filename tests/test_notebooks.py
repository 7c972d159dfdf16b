"""The notebooks: committed without outputs, and each runs top to bottom (nbclient, this venv's kernel, no network)
against a workspace made by real tiny jobs and against a fresh `medcore demo` workspace with nothing run yet."""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import secrets
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from ipykernel.kernelspec import install
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from train_datasets import classification_frame, one_rank_world

from medcore import store
from medcore.cli import main as medcore_main
from medcore.data import encryption
from medcore.data.explore import read_splits
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, split_path
from medcore.demo import build_demo_workspace
from medcore.demo.register import NOTES_DATASET, register_demo_datasets
from medcore.errors import MedcoreError
from medcore.evaluate.compare import compare_models
from medcore.evaluate.review import close_review, read_items, record_verdict
from medcore.evaluate.review_sources import ReviewConfig, create_review_from_evals
from medcore.phi.datasets import read_redaction_report, redact_dataset
from medcore.store.views import reviews_table
from medcore.train import load_spec, prepare_run_dir, validate_spec
from medcore.workspace import get_workspace

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("01_explore_data.ipynb", "02_training_runs.ipynb", "03_clinical_eval_review.ipynb")
GUARD = Path(__file__).parent / "net_guard"
KERNEL = "medcore-notebook-test"  # a name no user kernel has: the spec is found only in this test's folder
CELL_TIMEOUT = 240
PLOTLY = "application/vnd.plotly.v1+json"
REDACTED = f"{NOTES_DATASET}-redacted"
# Appended to the copy each test runs: which python the kernel is, and whether the network guard is loaded in it.
PROBE = "import socket, sys\nprint('probe:', sys.executable, socket.socket.connect.__name__)"


def read_notebook(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebooks_are_committed_without_outputs():
    found = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(NAMES), f"notebooks/ holds {found}: list each in NAMES, so that the tests run it"
    for name in found:
        for index, cell in enumerate(code_cells(read_notebook(name))):
            where = f"{name} code cell {index + 1}"
            assert cell.outputs == [], f"{where} has outputs: clear all outputs before committing (they can hold PHI)"
            assert cell.execution_count is None, f"{where} has an execution count: clear all outputs"


def test_notebooks_use_the_engine_never_the_console():
    for name in NAMES:
        imported = set()
        for cell in code_cells(read_notebook(name)):
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    imported.add(node.module.split(".")[0])
        assert "medcore" in imported and not imported & {"app", "streamlit"}, f"{name} imports {sorted(imported)}"


# --- running them --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernel spec for this venv's python in the test's own folder; Jupyter's runtime and IPython's profile there too,
    so nothing comes from (or is written to) the user's home."""
    root = tmp_path_factory.mktemp("jupyter")
    install(kernel_name=KERNEL, prefix=str(root), display_name="MedCore tests")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root / "share" / "jupyter"))
        mp.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        assert Path(spec.resource_dir).is_relative_to(root) and spec.argv[0] == sys.executable
        yield root


@pytest.fixture(scope="module")
def trained_workspace(tmp_path_factory):
    """Real tiny jobs: demo notes imported and redacted, two one-rank LoRA runs of MiniLM (in this process, as
    tests/test_train_pairs.py does), both scored side by side on the test split, and a closed review of the two."""
    from medcore.train.__main__ import main as train_main

    root = tmp_path_factory.mktemp("trained") / "workspace"
    with one_rank_world() as mp:  # rank 0 of a world of one, one thread; restored afterwards
        mp.setenv("MEDCORE_HOME", str(root))
        ws = get_workspace(root)
        build_demo_workspace(ws, seed=0, n_notes=120, n_qa=10)
        register_demo_datasets(ws, seed=0)
        redact_dataset(ws, NOTES_DATASET)
        runs = [train(ws, train_main, name, lr) for name, lr in (("base", 5e-3), ("low-lr", 1e-3))]
        out = compare_models(runs[0], [runs[1]], ws, REDACTED, resamples=200)
        review_both(ws, *out["models"])
    return ws, runs, out["models"]


def train(ws, train_main, name: str, lr: float) -> str:
    spec = load_spec(
        {
            "name": name, "dataset": REDACTED, "task": "classification", "model": "minilm", "lr": lr, "max_steps": 6,
            "micro_batch": 8, "max_length": 64, "eval_interval": 3, "warmup_ratio": 0.0, "device": "cpu",
            "precision": "fp32", "seed": 0,
        }
    )  # fmt: skip
    validate_spec(spec, ws)
    rd = prepare_run_dir(spec, ws)
    assert train_main([str(rd.path)]) == 0, rd.status.read_text()
    return rd.run_id


def review_both(ws, eval_a: str, eval_b: str) -> None:
    """Two reviewers judge every item of a review of the two evals; then it is closed."""
    review = create_review_from_evals(ws, eval_a, eval_b, ReviewConfig(seed=0, max_items=6))
    for item in read_items(review):
        record_verdict(review, item["item"], "dr-hall", "first_better" if item["item"] % 2 else "both_acceptable")
        record_verdict(review, item["item"], "dr-okafor", "first_better")
    close_review(review)


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    """A fresh workspace from `medcore demo`: raw datasets, no runs, evaluations or reviews."""
    root = tmp_path_factory.mktemp("demo") / "workspace"
    assert medcore_main(["demo", "--notes", "200", "--qa", "20", "--workspace", str(root)]) == 0
    return get_workspace(root, create=False)


def run_notebook(name: str, ws, tmp_path) -> tuple[str, list[dict]]:
    """Execute a copy of the notebook with MEDCORE_HOME = ws; returns its printed and displayed text, and its figures.

    The kernel gets tests/net_guard on PYTHONPATH: any connection beyond loopback is refused and logged.
    """
    nb = read_notebook(name)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    log = tmp_path / "connections.log"
    env = {
        **os.environ,
        "MEDCORE_HOME": str(ws.root),
        "PYTHONPATH": os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]),
        "MEDCORE_NET_GUARD_LOG": str(log),
    }
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)  # raises CellExecutionError, naming the cell, if any cell fails
    texts, figures = [], []
    for cell in code_cells(nb):
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stdout":
                texts.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                texts.append(output.data.get("text/plain", ""))
                if PLOTLY in output.data:
                    figures.append(output.data[PLOTLY])
    text = "\n".join(texts)
    assert f"probe: {sys.executable} guarded_connect" in text  # this venv's python, with the guard loaded
    assert not log.exists() or not log.read_text(), f"{name} tried the network: {log.read_text()}"
    return text, figures


def values(array) -> list:
    """A plotly JSON array: a list, or numbers packed as {"dtype", "bdata": base64}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def logged_rows(ws, run_id: str) -> list[dict]:
    return [json.loads(line) for line in (ws.runs / run_id / "metrics.jsonl").read_text().splitlines()]


def titled(figures: list[dict], title: str) -> dict:
    (figure,) = [f for f in figures if title in f["layout"].get("title", {}).get("text", "")]
    return figure


@pytest.mark.slow
def test_explore_data_shows_splits_labels_lengths_and_phi_found(kernel, trained_workspace, tmp_path):
    ws, _, _ = trained_workspace
    text, figures = run_notebook("01_explore_data.ipynb", ws, tmp_path)
    assert f"exploring '{REDACTED}': classification, redacted" in text
    assert "audit: verified against the audit log" in text
    report = read_redaction_report(ws, REDACTED)
    phi = titled(figures, "PHI spans per category")["data"][0]
    assert dict(zip(values(phi["x"]), values(phi["y"]), strict=True)) == report.counts  # the report's, as they are
    for title in ("label share per split", "words per note", ": sex", ": age_band", "columns per decision"):
        titled(figures, title)


@pytest.mark.slow
def test_training_runs_compares_curves_specs_and_memory(kernel, trained_workspace, tmp_path):
    ws, runs, _ = trained_workspace
    text, figures = run_notebook("02_training_runs.ipynb", ws, tmp_path)
    assert f"comparing: {runs[0]}, {runs[1]}" in text
    assert re.search(r"^name +base +low-lr$", text, re.M) and re.search(r"^lr +0\.005 +0\.001$", text, re.M)
    loss = titled(figures, "Training loss")["data"]
    assert sorted(trace["name"] for trace in loss) == sorted(runs)
    assert all(values(trace["x"]) == [1, 2, 3, 4, 5, 6] for trace in loss)  # every logged step of both runs
    memory = {trace["name"]: trace for trace in titled(figures, "measured peak")["data"]}
    assert {"weights", "optimizer", "activations", "runtime"} <= memory.keys()  # the estimate's parts, per rank
    peaks = [max(row["peak_mem_mb"] for row in logged_rows(ws, run)) for run in runs]
    assert values(memory["measured peak"]["y"]) == pytest.approx(peaks)  # against what each run measured
    assert "measured / estimated" in text
    titled(figures, "Validation scores"), titled(figures, "Tokens per second")


@pytest.mark.slow
def test_eval_review_shows_cis_gaps_disagreements_and_verdicts(kernel, trained_workspace, tmp_path):
    ws, runs, evals = trained_workspace
    text, figures = run_notebook("03_clinical_eval_review.ipynb", ws, tmp_path)
    comparison = json.loads((ws.evals / evals[0] / "comparison.json").read_text())
    disagree = comparison["comparison"]["models"][runs[1]]["disagreements"]["count"]
    assert f"reading: {evals[0]}" in text  # the eval holding the side-by-side comparison
    assert f"{runs[1]} vs {runs[0]}: McNemar" in text and f"{disagree} rows disagree" in text
    items = int(reviews_table(ws)["items"].iloc[0])  # two reviewers judged every item
    assert f"{2 * items} judgments of {items}/{items} items by 2 reviewer(s)" in text
    assert f"{runs[0]} better" in text and f"{runs[1]} better" in text
    for title in ("metrics with 95% CIs", "Subgroup gaps", "Accuracy per group", "share of judgments"):
        titled(figures, title)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_on_a_fresh_demo_workspace_says_what_is_missing(kernel, demo_workspace, tmp_path, name):
    text, figures = run_notebook(name, demo_workspace, tmp_path)
    missing = {
        NAMES[0]: f"'{NOTES_DATASET}' is raw: it has no redaction report",
        NAMES[1]: "No training runs with metrics in",
        NAMES[2]: "No evaluations in",
    }
    assert missing[name] in text
    if name == NAMES[0]:
        assert f"`medcore data redact {NOTES_DATASET}`" in text and "Text not shown" in text
        notes = [json.loads(line) for line in (demo_workspace.datasets / "demo_notes.jsonl").read_text().splitlines()]
        phi = {note["text"][s["start"] : s["end"]] for note in notes for s in note["phi_spans"]}
        assert not [value for value in phi if len(value) > 5 and value in text]  # a raw dataset's text never shown
    else:
        assert figures == []
    if name == NAMES[2]:
        assert "No reviews yet" in text


# --- raw datasets encrypted at rest --------------------------------------------------------------------------------

NOTES_MAPPING = ColumnMapping(text="note", label="specialty", patient_id="patient_id", subgroups=["sex"])
PER_SPLIT = "SELECT split, count(*) AS records, count(DISTINCT specialty) AS labels FROM records GROUP BY split"


def notes_frame() -> pd.DataFrame:
    frame = classification_frame(40, seed=0).drop(columns="source_row")
    frame["sex"] = ["F", "M", None, "F"] * 10
    frame["patient_id"] = [f"p{i // 2}" for i in range(40)]
    return frame


@pytest.fixture
def encrypting(workspace, monkeypatch):
    """Raw imports encrypted at rest under a data key given in the environment (the notebook's kernel inherits it)."""
    monkeypatch.setenv(encryption.ENCRYPT_ENV, "1")
    monkeypatch.setenv(encryption.KEY_ENV, base64.b64encode(secrets.token_bytes(32)).decode())
    return workspace


def explore_notes(ws) -> dict:
    """What the notebook's SQL sees of dataset 'notes' in `ws`, through `read_splits` as the notebook calls it."""
    con = store.connect(ws)
    records = read_splits(con, ws, "notes")
    records.create_view("records")  # the notebook's queries all run over this view
    return {
        "columns": records.columns,
        "types": records.types,
        "per_split": con.sql(f"{PER_SPLIT} ORDER BY split").df(),
        "rows": records.order("split, source_row").df(),
        "temp_directory": con.sql("SELECT current_setting('temp_directory')").fetchall()[0][0],
    }


def test_read_splits_decrypts_in_memory_what_a_plain_import_reads_from_parquet(encrypting, tmp_path, monkeypatch):
    manifest = import_dataset(encrypting, notes_frame(), "notes", NOTES_MAPPING)
    assert manifest.encrypted and split_path(encrypting, "notes", "train").read_bytes().startswith(encryption.MAGIC)
    monkeypatch.setenv(encryption.ENCRYPT_ENV, "0")
    plain_ws = get_workspace(tmp_path / "plain")
    assert not import_dataset(plain_ws, notes_frame(), "notes", NOTES_MAPPING).encrypted

    encrypted, plain = explore_notes(encrypting), explore_notes(plain_ws)
    assert encrypted["columns"][0] == "split" and {"note", "specialty", "sex", "source_row"} < set(
        encrypted["columns"]
    )
    assert (encrypted["columns"], encrypted["types"]) == (plain["columns"], plain["types"])
    per_split = encrypted["per_split"]
    assert dict(zip(per_split.split, per_split.records, strict=True)) == manifest.rows
    pd.testing.assert_frame_equal(per_split, plain["per_split"])
    pd.testing.assert_frame_equal(encrypted["rows"], plain["rows"])
    assert encrypted["temp_directory"] == ""  # decrypted text never spills to a temp file
    assert plain["temp_directory"] != ""  # plain Parquet keeps DuckDB's default


def test_read_splits_of_an_encrypted_dataset_with_the_wrong_key_names_the_dataset(encrypting, monkeypatch):
    import_dataset(encrypting, notes_frame(), "notes", NOTES_MAPPING)
    monkeypatch.setenv(encryption.KEY_ENV, base64.b64encode(secrets.token_bytes(32)).decode())
    with pytest.raises(MedcoreError, match=r"Dataset 'notes' \(train split\) is encrypted at rest with key id"):
        read_splits(store.connect(encrypting), encrypting, "notes")


@pytest.mark.slow
def test_explore_data_reads_an_encrypted_raw_dataset_without_showing_its_text(kernel, encrypting, tmp_path):
    frame = notes_frame()
    manifest = import_dataset(encrypting, frame, "notes", NOTES_MAPPING)
    text, figures = run_notebook("01_explore_data.ipynb", encrypting, tmp_path)
    assert "exploring 'notes': classification, raw, encrypted at rest, text column 'note'" in text
    for split, rows in manifest.rows.items():
        assert re.search(rf"^\d+ +{split} +{rows}$", text, re.M), text  # the records-per-split table
    words = titled(figures, "words per note")["data"]
    assert sum(len(values(trace["x"])) for trace in words) == manifest.total_rows
    titled(figures, "label share per split"), titled(figures, ": sex")
    assert "Text not shown: 'notes' is raw." in text
    assert not [note for note in frame.note if note in text]
