"""Evaluate page (AppTest): the eval list, metrics with CIs, plots, subgroups, side by side, and a launched job."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from app_helpers import open_page, texts, widget
from polling import wait_for

from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.compare import compare_evals
from medcore.evaluate.job import evaluation_status
from medcore.evaluate.predictions import Predictions
from medcore.evaluate.results import COMPARISON, write_eval
from medcore.evaluate.subgroups import score_predictions
from medcore.rundir import write_json_atomic

LABELS = ["negative", "positive"]


def planted_eval(ws, model: str, seed: int, skill: float) -> str:
    """A binary eval folder as `eval run` writes it, scored by the engine: 120 examples, a `sex` subgroup."""
    rng = np.random.default_rng(0)  # the same examples for every model
    y_true = rng.integers(0, 2, 120)
    sex = np.where(rng.random(120) < 0.8, "F", "M")
    noise = np.random.default_rng(seed).normal(size=120)
    p_pos = 1 / (1 + np.exp(-(skill * (2 * y_true - 1) + noise)))
    proba = np.c_[1 - p_pos, p_pos]
    y_pred = proba.argmax(axis=1)
    frame = pd.DataFrame({"row": np.arange(120), "y_true": np.asarray(LABELS)[y_true],
                          "y_pred": np.asarray(LABELS)[y_pred], "p_negative": proba[:, 0], "p_positive": p_pos})  # fmt: skip
    report = score_predictions(
        Predictions(model, LABELS, y_true, y_pred, proba, {"sex": sex}), BootstrapConfig(resamples=200)
    )
    config = {"model": model, "dataset": "notes", "split": "test", "labels": LABELS, "resamples": 200, "seed": 0,
              "dataset_content_hash": "h", "created_at": float(seed)}  # fmt: skip
    eval_id, _ = write_eval(ws, frame, report.as_dict(), config)
    return eval_id


def test_no_dataset_and_no_eval_say_what_to_do(workspace):
    at = open_page("evaluate")
    assert not at.exception
    shown = texts(at, "info")
    assert any("No dataset to evaluate on yet" in t for t in shown)
    assert any("No evaluations yet" in t for t in shown)


def test_an_eval_shows_its_metrics_with_intervals_plots_and_subgroups(workspace):
    eval_id = planted_eval(workspace, "run-a", seed=1, skill=1.5)
    result = json.loads((workspace.evals / eval_id / "result.json").read_text())
    at = open_page("evaluate")
    assert not at.exception
    metrics = at.dataframe[1].value  # [0] is the eval list
    accuracy = metrics[metrics["Metric"] == "Accuracy"].iloc[0]
    assert accuracy["Value"] == pytest.approx(result["metrics"]["accuracy"]["value"])
    assert accuracy["95% CI low"] == pytest.approx(result["metrics"]["accuracy"]["ci_low"])
    figures = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert {"cm", "rel", "roc", "pr", "subgroups"} <= set(figures)
    counts = np.asarray(figures["cm"]["data"][0]["z"]["bdata"] if isinstance(figures["cm"]["data"][0]["z"], dict)
                        else figures["cm"]["data"][0]["z"])  # fmt: skip
    assert counts.size  # the matrix is drawn
    assert any("sensitivity" in m and "specificity" in m for m in texts(at, "markdown"))
    widget(at.slider, "Fix sensitivity at").set_value(0.80).run()
    assert not at.exception and any(
        "sensitivity **0.8" in m or "sensitivity **0.9" in m for m in texts(at, "markdown")
    )
    groups = [d.value for d in at.dataframe if "Group" in d.value.columns][0]
    assert sorted(groups["Group"]) == ["F", "M"]
    assert groups.set_index("Group").loc["M", "n"] == result["subgroups"]["sex"]["M"]["n"]
    gap = result["fairness"]["sex"]["gaps"]["accuracy"]
    shown = texts(at, "markdown") + texts(at, "warning")
    assert any(f"Largest gap in Accuracy: **{gap['value']:.3f}**" in t for t in shown)
    assert any("Equalized-odds difference" in t for t in shown)


def test_a_side_by_side_eval_shows_differences_and_disagreements(workspace):
    reference = planted_eval(workspace, "run-a", seed=1, skill=0.3)
    better = planted_eval(workspace, "run-b", seed=2, skill=2.5)
    comparison = compare_evals(workspace, [reference, better], ["run-a", "run-b"], BootstrapConfig(resamples=200))
    write_json_atomic(workspace.evals / reference / COMPARISON,
                      {"models": [reference, better], "names": ["run-a", "run-b"], "comparison": comparison})  # fmt: skip
    at = open_page("evaluate", state={"open_eval": reference})
    assert not at.exception
    diffs = [d.value for d in at.dataframe if "Difference" in d.value.columns][0]
    accuracy = diffs[diffs["Metric"] == "Accuracy"].iloc[0]
    assert accuracy["Difference"] == pytest.approx(comparison["models"]["run-b"]["differences"]["accuracy"]["value"])
    assert accuracy["CI excludes 0"]
    assert any("McNemar" in m for m in texts(at, "markdown"))


@pytest.mark.slow
def test_evaluate_button_runs_a_job_and_opens_its_result(workspace):
    from test_eval_job import import_notes

    import_notes(workspace)
    at = open_page("evaluate")
    assert widget(at.multiselect, "Models (the first is the reference; each other one is compared with it)").value == [
        "minilm"
    ]
    widget(at.number_input, "Bootstrap resamples").set_value(200)
    widget(at.button, "Evaluate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job_id = at.session_state["eval_job"]
    status = wait_for(lambda: (s := evaluation_status(workspace, job_id))["state"] in ("completed", "failed") and s,
                      timeout=180, what="the evaluation job")  # fmt: skip
    assert status["state"] == "completed", status.get("error")
    at.run()
    at.run()  # the fragment saw the end and asked for a full rerun
    assert at.session_state["open_eval"] == status["eval_ids"][0]
    listed = at.dataframe[0].value
    assert listed["Eval"].tolist() == status["eval_ids"]


def test_a_generation_eval_shows_its_own_metrics_without_class_plots(workspace):
    import pandas as pd

    metrics = {name: {"value": 0.5, "ci_low": 0.3, "ci_high": 0.7} for name in ("exact_match", "token_f1", "rouge_l")}
    frame = pd.DataFrame({"row": [0, 1], "exact_match": [1.0, 0.0]})
    config = {"model": "tiny-llama", "dataset": "qa", "split": "test", "task": "causal-lm", "resamples": 1000,
              "seed": 0, "created_at": 1.0}  # fmt: skip
    write_eval(workspace, frame, {"n": 2, "metrics": metrics, "subgroups": {}}, config)
    at = open_page("evaluate")
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[1].value
    assert set(table["Metric"]) == {"exact_match", "token_f1", "rouge_l"} and table["Value"].tolist() == [0.5] * 3
    assert [t.label for t in at.tabs] == ["Metrics", "Subgroups", "Side by side"] and not at.get("plotly_chart")
