"""Paired comparison of generation and entity scores (compare_rows): the same row resamples for every model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.compare_rows import compare_row_predictions
from medcore.evaluate.row_scores import ratio_estimates, row_mean

CONFIG = BootstrapConfig(resamples=500, seed=3)


def generation_frame(exact: np.ndarray, token_f1: np.ndarray, yes_no: np.ndarray | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"row": np.arange(len(exact)), "exact_match": exact.astype(float), "token_f1": token_f1,
                          "rouge_l": token_f1})  # fmt: skip
    frame["yes_no_accuracy"] = np.full(len(exact), np.nan) if yes_no is None else yes_no
    return frame


def entity_frame(gold, predicted, correct) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(len(gold)), "gold": gold, "predicted": predicted, "correct": correct})


def test_a_model_compared_with_itself_differs_by_exactly_zero():
    rng = np.random.default_rng(0)
    frame = generation_frame(rng.integers(0, 2, 80), rng.random(80))
    out = compare_row_predictions("causal-lm", {"a": frame, "b": frame.copy()}, CONFIG)
    other = out["models"]["b"]
    assert other["differences"]["token_f1"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "excludes_zero": False}
    assert other["mcnemar"] == {"b": 0, "c": 0, "p_value": 1.0}
    assert other["disagreements"] == {"count": 0, "rows": []}


def test_a_clearly_better_model_has_a_positive_interval_and_mcnemar_counts_exact_match():
    rng = np.random.default_rng(1)
    worse = rng.random(200) < 0.3
    better = worse | (rng.random(200) < 0.5)  # right wherever the reference is, and on half of the rest
    out = compare_row_predictions(
        "causal-lm",
        {"ref": generation_frame(worse, worse * 0.9), "new": generation_frame(better, better * 0.9)},
        CONFIG,
    )
    diff = out["models"]["new"]["differences"]["exact_match"]
    assert diff["value"] == pytest.approx(better.mean() - worse.mean())
    assert diff["excludes_zero"] and diff["ci_low"] > 0
    assert out["models"]["new"]["mcnemar"]["b"] == 0
    assert out["models"]["new"]["mcnemar"]["c"] == int((better & ~worse).sum())
    assert out["models"]["new"]["disagreements"]["count"] == int((better != worse).sum())


def test_the_paired_interval_is_narrower_than_the_models_own_intervals():
    """B is A with 5% of rows changed: shared errors cancel, so the difference's CI is far narrower than A's own CI."""
    rng = np.random.default_rng(2)
    a = rng.random(400)
    b = a.copy()
    flip = rng.choice(400, 20, replace=False)
    b[flip] = rng.random(20)
    out = compare_row_predictions("causal-lm", {"a": generation_frame(a > 0.5, a), "b": generation_frame(b > 0.5, b)},
                                  CONFIG)  # fmt: skip
    diff = out["models"]["b"]["differences"]["token_f1"]
    own = ratio_estimates({"token_f1": row_mean(a)}, CONFIG)["token_f1"]
    assert (diff["ci_high"] - diff["ci_low"]) < 0.4 * (own.ci_high - own.ci_low)


def test_entity_metrics_are_micro_ratios_and_have_no_mcnemar():
    gold, ref_correct, new_correct = (
        np.array([2, 1, 0, 3] * 25),
        np.array([1, 0, 0, 1] * 25),
        np.array([2, 1, 0, 2] * 25),
    )
    reference, new = entity_frame(gold, gold, ref_correct), entity_frame(gold, gold, new_correct)
    out = compare_row_predictions("token-classification", {"ref": reference, "new": new}, CONFIG)
    other = out["models"]["new"]
    assert out["reference_metrics"]["recall"] == pytest.approx(ref_correct.sum() / gold.sum())
    assert other["differences"]["f1"]["value"] == pytest.approx(
        2 * new_correct.sum() / (2 * gold.sum()) - 2 * ref_correct.sum() / (2 * gold.sum())
    )
    assert other["differences"]["f1"]["excludes_zero"]
    assert other["mcnemar"] is None
    # per-row F1 differs on the rows with gold entities where the correct counts differ; a row with none is 1.0 for both
    assert [r["row"] for r in other["disagreements"]["rows"]] == [i for i in range(100) if i % 4 in (0, 1, 3)]


def test_a_metric_undefined_on_the_split_is_none_not_zero():
    rng = np.random.default_rng(4)
    frames = {name: generation_frame(rng.integers(0, 2, 30), rng.random(30)) for name in ("a", "b")}
    out = compare_row_predictions("causal-lm", frames, CONFIG)
    assert out["reference_metrics"]["yes_no_accuracy"] is None
    assert out["models"]["b"]["differences"]["yes_no_accuracy"] == {
        "value": None, "ci_low": None, "ci_high": None, "excludes_zero": None,
    }  # fmt: skip


def test_bad_inputs_are_refused():
    frame = generation_frame(np.ones(10), np.ones(10))
    with pytest.raises(MedcoreError, match="needs two or more models"):
        compare_row_predictions("causal-lm", {"a": frame}, CONFIG)
    with pytest.raises(MedcoreError, match="scored other rows than 'a'"):
        compare_row_predictions("causal-lm", {"a": frame, "b": frame.iloc[:5]}, CONFIG)
    with pytest.raises(MedcoreError, match="classification has its own comparison"):
        compare_row_predictions("classification", {"a": frame, "b": frame}, CONFIG)
