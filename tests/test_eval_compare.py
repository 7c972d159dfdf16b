"""Paired comparison of models: McNemar equals scipy, paired intervals behave, `medcore eval run --compare` end to end."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats  # the reference binomial test

from medcore.cli import main as medcore_main
from medcore.commands.eval import print_comparison
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, read_manifest
from medcore.demo.notes import generate_notes
from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import BootstrapConfig, score_sample
from medcore.evaluate.compare import MAX_DISAGREEMENTS, compare_predictions, unique_names
from medcore.evaluate.mcnemar import mcnemar_p_value
from medcore.evaluate.metrics import HEADLINE

CONFIG = BootstrapConfig(resamples=500, seed=0)


def with_accuracy(y_true: np.ndarray, accuracy: float, k: int, rng: np.random.Generator) -> np.ndarray:
    """Predictions right on a random `accuracy` share of rows, a wrong class elsewhere (errors independent)."""
    wrong = (y_true + rng.integers(1, k, y_true.size)) % k
    return np.where(rng.random(y_true.size) < accuracy, y_true, wrong)


def one_hot_proba(y_pred: np.ndarray, k: int, confidence: float = 0.7) -> np.ndarray:
    proba = np.full((y_pred.size, k), (1 - confidence) / (k - 1))
    proba[np.arange(y_pred.size), y_pred] = confidence
    return proba


def accuracy_ci(result: dict, model: str) -> tuple[float, float]:
    diff = result["models"][model]["differences"]["accuracy"]
    return diff["ci_low"], diff["ci_high"]


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_equals_scipys_exact_binomial_test(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    ref_right, other_right = rng.random(n) < rng.uniform(0.3, 0.9), rng.random(n) < rng.uniform(0.3, 0.9)
    y_true = rng.integers(0, 2, n)
    preds = {"ref": np.where(ref_right, y_true, 1 - y_true), "other": np.where(other_right, y_true, 1 - y_true)}
    test = compare_predictions(y_true, preds, {}, 2, BootstrapConfig(resamples=100))["models"]["other"]["mcnemar"]
    b, c = int((ref_right & ~other_right).sum()), int((~ref_right & other_right).sum())
    assert (test["b"], test["c"]) == (b, c)
    assert test["p_value"] == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


@pytest.mark.parametrize(
    "b, c", [(0, 1), (1, 0), (3, 3), (4, 5), (0, 12), (40, 60), (1400, 1600), (2990, 3000), (30_000, 30_900)]
)
def test_mcnemar_p_value_stays_accurate_for_thousands_of_pairs(b, c):
    """Exact summation, and (above 50,000 trials) the log-space sum, against scipy."""
    assert mcnemar_p_value(b, c) == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_is_one_without_discordant_pairs():
    assert mcnemar_p_value(0, 0) == 1.0
    y_true = np.array([0, 1, 1, 0])
    preds = {"a": np.array([0, 1, 0, 0]), "b": np.array([0, 1, 0, 0])}
    assert compare_predictions(y_true, preds, {}, 2, CONFIG)["models"]["b"]["mcnemar"] == {
        "b": 0,
        "c": 0,
        "p_value": 1.0,
    }


def test_identical_predictions_differ_by_exactly_zero():
    """Both models scored under the same weight rows: every resample's difference is 0, so the interval is [0, 0]."""
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 300)
    y_pred = with_accuracy(y_true, 0.7, 3, rng)
    proba = rng.dirichlet(np.ones(3), 300)
    result = compare_predictions(y_true, {"a": y_pred, "b": y_pred.copy()}, {"a": proba, "b": proba.copy()}, 3, CONFIG)
    assert result["reference"] == "a" and list(result["models"]) == ["b"] and result["n"] == 300
    other = result["models"]["b"]
    assert set(other["differences"]) == set(HEADLINE)
    for metric, diff in other["differences"].items():
        assert diff == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "excludes_zero": False}, metric
    assert other["metrics"] == result["reference_metrics"]
    assert other["mcnemar"] == {"b": 0, "c": 0, "p_value": 1.0}
    assert other["disagreements"] == {"count": 0, "rows": []}
    json.dumps(result, allow_nan=False)


def test_undefined_metrics_are_none_not_zero():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 200)
    preds = {"a": with_accuracy(y_true, 0.7, 2, rng), "b": with_accuracy(y_true, 0.8, 2, rng)}
    result = compare_predictions(y_true, preds, {"a": one_hot_proba(preds["a"], 2), "b": None}, 2, CONFIG)
    auroc = result["models"]["b"]["differences"]["auroc"]
    assert auroc == {"value": None, "ci_low": None, "ci_high": None, "excludes_zero": None}
    assert result["models"]["b"]["metrics"]["auroc"] is None and result["reference_metrics"]["auroc"] is not None
    assert result["models"]["b"]["differences"]["accuracy"]["value"] is not None
    json.dumps(result, allow_nan=False)


def test_a_clearly_better_model_has_a_positive_interval():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 2, 400)
    preds = {"weak": with_accuracy(y_true, 0.6, 2, rng), "strong": with_accuracy(y_true, 0.9, 2, rng)}
    proba = {name: one_hot_proba(p, 2) for name, p in preds.items()}
    result = compare_predictions(y_true, preds, proba, 2, CONFIG)["models"]["strong"]
    accuracy = result["differences"]["accuracy"]
    assert 0.2 < accuracy["value"] < 0.4 and accuracy["ci_low"] > 0 and accuracy["excludes_zero"]
    assert accuracy["ci_low"] < accuracy["value"] < accuracy["ci_high"]
    assert result["differences"]["brier"]["ci_high"] < 0  # lower is better: the strong model's Brier is lower
    assert result["mcnemar"]["c"] > result["mcnemar"]["b"] and result["mcnemar"]["p_value"] < 1e-6


def test_equally_good_models_mostly_include_zero():
    """Same error rate, independent errors: on these fixed seeds at most one 95% interval misses 0."""
    includes = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        y_true = rng.integers(0, 3, 300)
        preds = {"a": with_accuracy(y_true, 0.75, 3, rng), "b": with_accuracy(y_true, 0.75, 3, rng)}
        low, high = accuracy_ci(compare_predictions(y_true, preds, {}, 3, BootstrapConfig(seed=seed)), "b")
        includes.append(low <= 0 <= high)
    assert sum(includes) >= 4, includes


def test_the_paired_interval_is_narrower_when_errors_are_shared():
    """B is A with 4% of its predictions changed: the paired CI is far narrower than independent CIs imply."""
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, 400)
    a = with_accuracy(y_true, 0.8, 2, rng)
    b = a.copy()
    changed = rng.choice(400, 16, replace=False)
    b[changed] = 1 - b[changed]
    low, high = accuracy_ci(compare_predictions(y_true, {"a": a, "b": b}, {}, 2, CONFIG), "b")
    widths = [
        (lambda e: e.ci_high - e.ci_low)(
            score_sample(y_true, pred, 2, config=BootstrapConfig(seed=s)).metrics["accuracy"]
        )
        for pred, s in ((a, 1), (b, 2))
    ]
    independent = float(np.hypot(*widths))  # width of a difference of two independent estimates
    assert 0 < high - low < 0.5 * independent


def test_disagreements_list_labels_capped_with_the_total():
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 3, 500)
    preds = {"a": with_accuracy(y_true, 0.5, 3, rng), "b": with_accuracy(y_true, 0.5, 3, rng)}
    labels = ["cardiology", "neurology", "oncology"]
    table = compare_predictions(y_true, preds, {}, 3, BootstrapConfig(resamples=100), labels)["models"]["b"]
    differ = np.flatnonzero(preds["a"] != preds["b"])
    assert table["disagreements"]["count"] == differ.size > MAX_DISAGREEMENTS
    rows = table["disagreements"]["rows"]
    assert [r["row"] for r in rows] == differ[:MAX_DISAGREEMENTS].tolist()
    first = rows[0]["row"]
    assert rows[0] == {
        "row": first,
        "y_true": labels[y_true[first]],
        "reference": labels[preds["a"][first]],
        "model": labels[preds["b"][first]],
    }


def test_bad_inputs_are_refused():
    y_true = np.array([0, 1, 0, 1])
    with pytest.raises(MedcoreError, match="two or more models"):
        compare_predictions(y_true, {"a": y_true}, {}, 2)
    with pytest.raises(MedcoreError, match=r"Model 'b' has predictions of shape \(3,\)"):
        compare_predictions(y_true, {"a": y_true, "b": y_true[:3]}, {}, 2)
    with pytest.raises(MedcoreError, match="probabilities of model 'b'"):
        compare_predictions(y_true, {"a": y_true, "b": y_true}, {"b": np.full((4, 2), 0.7)}, 2)
    assert unique_names(["minilm", "run-1", "minilm", "minilm"]) == ["minilm", "run-1", "minilm#2", "minilm#3"]


def test_cli_compares_a_model_with_itself(workspace, capsys):
    notes = pd.DataFrame(generate_notes(seed=0, n=60))[["note_id", "text", "specialty", "sex"]]
    mapping = ColumnMapping(text="text", label="specialty", id="note_id", subgroups=["sex"])
    import_dataset(workspace, notes, "notes", mapping, task="classification", split=(0.6, 0.1, 0.3))
    argv = ["eval", "run", "minilm", "--dataset", "notes", "--compare", "minilm", "--resamples", "200", "--json"]
    assert medcore_main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"models", "names", "comparison"} and printed["names"] == ["minilm", "minilm#2"]
    assert sorted(p.name for p in workspace.evals.iterdir()) == sorted(printed["models"])  # one folder per model
    comparison = printed["comparison"]
    other = comparison["models"]["minilm#2"]
    assert comparison["reference"] == "minilm" and comparison["n"] == read_manifest(workspace, "notes").rows["test"]
    for metric, diff in other["differences"].items():
        assert diff == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "excludes_zero": False}, metric
    assert other["mcnemar"] == {"b": 0, "c": 0, "p_value": 1.0}
    assert other["disagreements"] == {"count": 0, "rows": []}
    saved = json.loads((workspace.evals / printed["models"][0] / "comparison.json").read_text())
    assert saved["comparison"] == comparison and saved["config"]["compare"] == ["minilm"]
    print_comparison(printed, argparse.Namespace(dataset="notes", split="test"))
    out = capsys.readouterr().out
    assert re.search(r"accuracy\s+\d\.\d{3} -> \d\.\d{3}\s+\+0\.000 \[\+0\.000, \+0\.000\]", out), out
    assert "p = 1" in out and "differ on 0 of" in out and "comparison.json" in out
    assert medcore_main(["eval", "run", "minilm", "--dataset", "notes", "--compare", "no-such-run"]) == 1
    assert "No run 'no-such-run'" in capsys.readouterr().err
    assert len(list(workspace.evals.iterdir())) == 2  # refused before any model ran
