"""Subgroup gaps with 95% CIs and the equalized-odds difference, checked against direct computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.fairness import subgroup_gaps
from medcore.evaluate.predictions import MISSING, Predictions
from medcore.evaluate.subgroups import score_predictions

CONFIG = BootstrapConfig(resamples=300, seed=0)


def predictions(groups: np.ndarray, accuracy_by_group: dict[str, float], k: int = 2, seed: int = 0) -> Predictions:
    """Labels drawn at random; each group's predictions right with its own probability."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, groups.size)
    right = rng.random(groups.size) < np.vectorize(accuracy_by_group.get)(groups)
    y_pred = np.where(right, y_true, (y_true + rng.integers(1, k, groups.size)) % k)
    proba = np.full((groups.size, k), 0.1 / (k - 1))
    proba[np.arange(groups.size), y_pred] = 0.9
    return Predictions("test", [f"c{i}" for i in range(k)], y_true, y_pred, proba, {"site": groups})


def test_gap_is_best_minus_worst_group_and_flags_a_real_disparity():
    groups = np.repeat(np.array(["north", "south", "west"]), [200, 150, 120])
    preds = predictions(groups, {"north": 0.95, "south": 0.55, "west": 0.8})
    gap = subgroup_gaps(preds, CONFIG)["site"]["gaps"]["accuracy"]
    by_group = {
        g: accuracy_score(preds.y_true[groups == g], preds.y_pred[groups == g]) for g in ("north", "south", "west")
    }
    assert (gap["high_group"], gap["low_group"]) == (max(by_group, key=by_group.get), min(by_group, key=by_group.get))
    assert gap["value"] == pytest.approx(max(by_group.values()) - min(by_group.values()), abs=1e-12)
    assert gap["ci_low"] < gap["value"] < gap["ci_high"] and gap["excludes_zero"] and not gap["small_group"]
    f1 = subgroup_gaps(preds, CONFIG)["site"]["gaps"]["macro_f1"]
    macro = {g: f1_score(preds.y_true[groups == g], preds.y_pred[groups == g], average="macro") for g in by_group}
    assert f1["value"] == pytest.approx(max(macro.values()) - min(macro.values()), abs=1e-12)


def test_equal_groups_give_an_interval_around_zero_difference():
    groups = np.repeat(np.array(["F", "M"]), 300)
    gap = subgroup_gaps(predictions(groups, {"F": 0.8, "M": 0.8}, seed=3), CONFIG)["site"]["gaps"]["accuracy"]
    assert not gap["excludes_zero"] and gap["ci_low"] <= 0 < gap["ci_high"]


def test_equalized_odds_difference_is_the_larger_of_the_tpr_and_fpr_ranges():
    groups = np.repeat(np.array(["a", "b", "c"]), [120, 90, 60])
    preds = predictions(groups, {"a": 0.9, "b": 0.7, "c": 0.6}, seed=5)
    tpr, fpr = [], []
    for g in ("a", "b", "c"):
        t, p = preds.y_true[groups == g], preds.y_pred[groups == g]
        tpr.append(recall_score(t, p, pos_label=1))
        fpr.append(1 - recall_score(t, p, pos_label=0))
    eod = subgroup_gaps(preds, CONFIG)["site"]["equalized_odds_difference"]
    assert eod["value"] == pytest.approx(max(max(tpr) - min(tpr), max(fpr) - min(fpr)), abs=1e-12)
    assert 0 <= eod["ci_low"] <= eod["ci_high"]


def test_missing_values_and_single_groups_give_no_gap_never_zero():
    groups = np.array(["F"] * 50 + [MISSING] * 50, dtype=object)
    out = subgroup_gaps(predictions(groups, {"F": 0.9, MISSING: 0.1}), CONFIG)["site"]
    assert all(gap is None for gap in out["gaps"].values()) and out["equalized_odds_difference"] is None


def test_small_groups_are_flagged_and_multiclass_has_no_equalized_odds():
    groups = np.repeat(np.array(["big", "tiny"]), [200, 12])
    out = subgroup_gaps(predictions(groups, {"big": 0.9, "tiny": 0.5}, k=3), CONFIG)["site"]
    assert out["gaps"]["accuracy"]["small_group"] and out["equalized_odds_difference"] is None


def test_the_report_json_carries_the_gaps():
    groups = np.repeat(np.array(["F", "M"]), 100)
    report = score_predictions(predictions(groups, {"F": 0.9, "M": 0.6}), CONFIG).as_dict()
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["fairness"]["site"]["gaps"]["accuracy"]["high_group"] == "F"
