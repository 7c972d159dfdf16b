"""The store's evals and reviews views: one row per eval folder with its headline CI, one per review with progress."""

from __future__ import annotations

import time

import duckdb
import pandas as pd
import pytest

from medcore import store
from medcore.evaluate import results, review
from medcore.evaluate.results import write_eval
from medcore.evaluate.review import close_review, record_verdict
from medcore.evaluate.review_sources import ReviewConfig, ReviewPair, create_review_from_pairs
from medcore.store import views
from medcore.store.views import evals_table, reviews_table


def eval_folder(ws, model: str, accuracy: float, created_at: float, run_id: str | None = None) -> str:
    predictions = pd.DataFrame({"row": [0, 1], "y_true": ["a", "b"], "y_pred": ["a", "a"], "p_a": [0.9, 0.6]})
    result = {
        "n": 2,
        "metrics": {
            "accuracy": {"value": accuracy, "ci_low": accuracy - 0.2, "ci_high": 1.0},
            "macro_f1": {"value": accuracy / 2, "ci_low": 0.1, "ci_high": 0.9},
            "auroc": {"value": None, "ci_low": None, "ci_high": None},  # undefined stays undefined, never 0
        },
    }
    identity = {"kind": "run", "run_id": run_id} if run_id else {"kind": "base", "name": model}
    config = {
        "model": model,
        "dataset": "notes",
        "split": "test",
        "model_identity": identity,
        "created_at": created_at,
    }
    return write_eval(ws, predictions, result, config)[0]


def test_view_file_names_match_the_folder_contracts():
    """The store sits below medcore.evaluate and cannot import its constants: they must agree."""
    assert (views.EVAL_CONFIG, views.EVAL_RESULT, views.EVAL_COMPARISON) == (
        results.CONFIG,
        results.RESULT,
        results.COMPARISON,
    )
    assert views.EVALS_DIR == "evals"  # Workspace.evals
    assert (views.REVIEWS_DIR, views.REVIEW_MANIFEST, views.REVIEW_VERDICTS) == (
        review.REVIEWS_DIR,
        review.MANIFEST,
        review.VERDICTS,
    )


def test_evals_view_lists_complete_evals_with_their_headline(workspace):
    assert evals_table(workspace).empty and reviews_table(workspace).empty
    older = eval_folder(workspace, "minilm", 0.5, created_at=1_000.0)
    newer = eval_folder(workspace, "run-x", 0.8, created_at=2_000.0, run_id="run-x")
    unfinished = workspace.evals / f"{results.TMP_PREFIX}eval-half"
    unfinished.mkdir()
    (unfinished / results.CONFIG).write_text('{"model": "half", "created_at": 3000}')
    (unfinished / results.RESULT).write_text('{"n": 1}')
    table = evals_table(workspace)
    assert table["eval_id"].tolist() == [newer, older]  # newest first, the unfinished folder left out
    row = table.iloc[0]
    assert (row["model"], row["model_kind"], row["run_id"], row["dataset"], row["split"], row["n"]) == (
        "run-x", "run", "run-x", "notes", "test", 2,
    )  # fmt: skip
    assert row[["accuracy", "accuracy_low", "accuracy_high", "macro_f1_high"]].tolist() == pytest.approx(
        [0.8, 0.6, 1.0, 0.9]
    )
    assert pd.isna(row["auroc"]) and pd.isna(row["auroc_low"])
    assert row["created_at"].timestamp() == 2_000.0 and row["path"] == str(workspace.evals / newer)
    assert pd.isna(table.iloc[1]["run_id"]) and not table["compared"].any()
    (workspace.evals / older / results.COMPARISON).write_text('{"models": []}')
    assert evals_table(workspace)["compared"].tolist() == [False, True]


def test_catalog_snapshot_holds_the_evals(workspace):
    store.sync_catalog(workspace, tables=("datasets",))  # a first sync of other tables still creates evals
    con = duckdb.connect(str(workspace.catalog), read_only=True)
    assert con.execute("SELECT count(*) FROM evals").fetchone() == (0,)
    con.close()
    eval_id = eval_folder(workspace, "minilm", 0.75, created_at=time.time())
    store.sync_catalog(workspace)
    con = duckdb.connect(str(workspace.catalog), read_only=True)
    assert con.execute("SELECT eval_id, model, accuracy FROM evals").fetchall() == [(eval_id, "minilm", 0.75)]
    con.close()


def test_reviews_view_counts_items_latest_verdicts_and_closed(workspace):
    pairs = [
        ReviewPair(prompt=f"Question {i}", model_a="model-left", output_a="yes", model_b="model-right", output_b="no")
        for i in range(3)
    ]
    first = create_review_from_pairs(workspace, pairs, ReviewConfig(name="ward round", seed=0))
    second = create_review_from_pairs(workspace, pairs[:1], ReviewConfig(name="night shift", seed=1))
    record_verdict(first, 0, "dr-a", "first_better")
    record_verdict(first, 0, "dr-a", "both_wrong")  # supersedes: still one verdict
    record_verdict(first, 1, "dr-a", "second_better")
    record_verdict(first, 0, "dr-b", "both_acceptable")
    table = reviews_table(workspace).set_index("review_id")
    assert sorted(table.index) == sorted([first.review_id, second.review_id])
    columns = ["name", "source", "items", "verdicts", "reviewers", "closed"]
    assert table.loc[first.review_id, columns].tolist() == ["ward round", "pairs", 3, 3, 2, False]
    assert table.loc[second.review_id, columns].tolist() == ["night shift", "pairs", 1, 0, 0, False]
    assert "model-left" not in table.to_csv() and "model-right" not in table.to_csv()  # identities stay sealed
    close_review(first)
    con = store.connect(workspace)  # the view is live: closing shows without re-creating it
    assert con.execute("SELECT review_id, closed_at IS NOT NULL FROM reviews WHERE closed").fetchall() == [
        (first.review_id, True)
    ]
