"""Clinical metrics equal scikit-learn's, undefined stays None, intervals behave, `medcore eval metrics` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from medcore.cli import main as medcore_main
from medcore.errors import MedcoreError
from medcore.evaluate import metrics
from medcore.evaluate.bootstrap import BootstrapConfig, bootstrap_interval, score_sample, wilson_interval
from medcore.evaluate.predictions import MISSING, PredictionColumns, read_predictions

HEADLINE = ["accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "auroc", "auprc", "brier", "ece"]
PER_CLASS = ["sensitivity", "specificity", "ppv", "npv", "f1", "support"]


def random_task(k: int, n: int, seed: int, ties: bool = False):
    """Codes and probabilities with signal; with ties, every row picks one of 6 probability vectors."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y_true] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if ties:
        palette = rng.dirichlet(np.ones(k), size=6)
        proba = palette[rng.integers(0, 6, n)]
    y_pred = np.where(rng.random(n) < 0.8, proba.argmax(axis=1), rng.integers(0, k, n))
    return y_true, y_pred, proba


def as_array(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_count_metrics_equal_sklearn(k, seed):
    y_true, y_pred, _ = random_task(k, 400, seed)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred), abs=1e-9)
    assert metrics.balanced_accuracy(y_true, y_pred) == pytest.approx(
        sk.balanced_accuracy_score(y_true, y_pred), abs=1e-9
    )
    for average in ("macro", "micro", "weighted"):
        ours = getattr(metrics, f"{average}_f1")(y_true, y_pred)
        assert ours == pytest.approx(sk.f1_score(y_true, y_pred, average=average), abs=1e-9), average
    per_class = {name: as_array(values) for name, values in metrics.per_class(y_true, y_pred, k).items()}
    cm = sk.confusion_matrix(y_true, y_pred, labels=list(range(k)))
    tp, fn, fp = np.diag(cm), cm.sum(axis=1) - np.diag(cm), cm.sum(axis=0) - np.diag(cm)
    tn = cm.sum() - tp - fn - fp
    np.testing.assert_allclose(per_class["sensitivity"], sk.recall_score(y_true, y_pred, average=None), atol=1e-9)
    np.testing.assert_allclose(per_class["ppv"], sk.precision_score(y_true, y_pred, average=None), atol=1e-9)
    np.testing.assert_allclose(per_class["f1"], sk.f1_score(y_true, y_pred, average=None), atol=1e-9)
    np.testing.assert_allclose(per_class["specificity"], tn / (tn + fp), atol=1e-9)
    np.testing.assert_allclose(per_class["npv"], tn / (tn + fn), atol=1e-9)
    np.testing.assert_array_equal(per_class["support"], cm.sum(axis=1))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_probability_metrics_equal_sklearn(k, ties):
    y_true, _, proba = random_task(k, 500, seed=7, ties=ties)
    if k == 2:
        auroc = sk.roc_auc_score(y_true, proba[:, 1])
        auprc = sk.average_precision_score(y_true, proba[:, 1])
        brier = sk.brier_score_loss(y_true, proba[:, 1])
    else:
        auroc = sk.roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
        auprc = np.mean([sk.average_precision_score(y_true == c, proba[:, c]) for c in range(k)])
        brier = sk.brier_score_loss(y_true, proba, labels=list(range(k)), scale_by_half=False)
    assert metrics.auroc(y_true, proba) == pytest.approx(auroc, abs=1e-9)
    assert metrics.auprc(y_true, proba) == pytest.approx(auprc, abs=1e-9)
    assert metrics.brier(y_true, proba) == pytest.approx(brier, abs=1e-9)


def test_ece_equals_the_binned_definition():
    y_true, _, proba = random_task(3, 600, seed=3)
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == y_true
    expected = 0.0
    for lo, hi in zip(np.linspace(0, 1, 16)[:-1], np.linspace(0, 1, 16)[1:], strict=True):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            expected += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    assert metrics.ece(y_true, proba) == pytest.approx(expected, abs=1e-9)


def test_all_correct_and_all_wrong():
    y_true, _, _ = random_task(3, 90, seed=4)
    perfect = np.eye(3)[y_true]
    assert metrics.accuracy(y_true, y_true) == metrics.macro_f1(y_true, y_true) == 1.0
    assert metrics.auroc(y_true, perfect) == metrics.auprc(y_true, perfect) == 1.0
    assert metrics.brier(y_true, perfect) == metrics.ece(y_true, perfect) == 0.0
    wrong = (y_true + 1) % 3
    assert metrics.accuracy(y_true, wrong) == metrics.balanced_accuracy(y_true, wrong) == 0.0
    assert metrics.macro_f1(y_true, wrong) == 0.0
    assert metrics.per_class(y_true, wrong)["ppv"] == [0.0, 0.0, 0.0]  # predicted, never right: 0, not undefined


def test_a_class_absent_from_y_true_has_no_auroc_not_zero():
    y_true, _, proba = random_task(3, 300, seed=5)
    keep = y_true != 2
    y_true, proba = y_true[keep], proba[keep]
    per_class_auroc = metrics.auroc_per_class(y_true, proba)
    assert per_class_auroc[2] is None
    expected = [sk.roc_auc_score(y_true == c, proba[:, c]) for c in (0, 1)]
    assert per_class_auroc[:2] == pytest.approx(expected, abs=1e-9)
    assert metrics.auroc(y_true, proba) == pytest.approx(np.mean(expected), abs=1e-9)
    assert metrics.per_class(y_true, y_true, 3)["sensitivity"][2] is None
    assert metrics.auroc(np.zeros(10, dtype=int), np.tile([0.3, 0.7], (10, 1))) is None  # one class: undefined


def test_a_class_never_predicted_has_no_ppv():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 0, 1, 0])
    scores = metrics.per_class(y_true, y_pred, 3)
    assert scores["ppv"][2] is None
    assert scores["f1"][2] == 0.0 and scores["sensitivity"][2] == 0.0 and scores["npv"][2] == pytest.approx(4 / 6)
    sample = score_sample(y_true, y_pred, 3, config=BootstrapConfig(resamples=200))
    assert sample.per_class[2]["ppv"].as_dict() == {"value": None, "ci_low": None, "ci_high": None}


def test_probabilities_not_summing_to_one_name_the_rows():
    proba = np.full((8, 2), 0.5)
    proba[[1, 5]] = [0.5, 0.6]
    with pytest.raises(MedcoreError, match=r"do not sum to 1.*rows 2, 6"):
        metrics.auroc(np.array([0, 1] * 4), proba)


def test_a_nan_score_is_an_error_naming_the_row():
    proba = np.full((6, 2), 0.5)
    proba[3, 1] = np.nan
    with pytest.raises(MedcoreError, match=r"NaN.*row 4\b"):
        metrics.brier(np.array([0, 1] * 3), proba)


def test_the_bootstrap_is_deterministic_for_a_seed():
    y_true, y_pred, proba = random_task(3, 300, seed=8)
    first = score_sample(y_true, y_pred, 3, proba, BootstrapConfig(seed=11))
    again = score_sample(y_true, y_pred, 3, proba, BootstrapConfig(seed=11))
    other = score_sample(y_true, y_pred, 3, proba, BootstrapConfig(seed=12))
    assert first == again
    assert first.metrics["auroc"] != other.metrics["auroc"]


def test_the_interval_contains_the_estimate_on_well_behaved_data():
    y_true, y_pred, proba = random_task(3, 600, seed=9)
    sample = score_sample(y_true, y_pred, 3, proba)
    estimates = list(sample.metrics.values()) + [e for c in sample.per_class for m, e in c.items() if m != "support"]
    for e in estimates:
        assert e.ci_low < e.value < e.ci_high, e
    assert {e.method for e in sample.metrics.values()} == {"bca"}
    assert sample.metrics["accuracy"].value == pytest.approx(sk.accuracy_score(y_true, y_pred), abs=1e-12)


def test_small_cells_and_proportions_at_one_get_wilson_intervals():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook example
    y_true = np.array([0] * 12 + [1] * 8)
    y_pred = np.array([0] * 10 + [1] * 2 + [1] * 8)
    sample = score_sample(y_true, y_pred, 2)
    accuracy = sample.metrics["accuracy"]
    assert accuracy.method == "wilson" and (accuracy.ci_low, accuracy.ci_high) == wilson_interval(18, 20)
    assert sample.per_class[1]["sensitivity"].method == "wilson"  # 8 of 8: at 1, and small
    big = score_sample(np.repeat([0, 1], 100), np.repeat([0, 1], 100), 2)
    assert big.metrics["accuracy"].method == "wilson" and big.metrics["accuracy"].ci_low < 1.0


def test_constant_bootstrap_values_fall_back_to_percentile():
    e = bootstrap_interval(0.7, np.full(1000, 0.7), np.full(50, 0.7))
    assert (e.ci_low, e.ci_high, e.method) == (0.7, 0.7, "percentile")


@pytest.mark.slow
def test_accuracy_intervals_cover_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    truth, n, simulations, covered = 0.8, 200, 200, 0
    for simulation in range(simulations):
        y_true = rng.integers(0, 2, n)
        y_pred = np.where(rng.random(n) < truth, y_true, 1 - y_true)
        accuracy = score_sample(y_true, y_pred, 2, config=BootstrapConfig(seed=simulation)).metrics["accuracy"]
        assert accuracy.method == "bca"
        covered += accuracy.ci_low <= truth <= accuracy.ci_high
    assert 0.91 <= covered / simulations <= 0.99


# The predictions file and the command.


def write_predictions(tmp_path, n: int = 120, seed: int = 0) -> pd.DataFrame:
    y_true, y_pred, proba = random_task(3, n, seed)
    names = np.array(["copd", "chf", "pneumonia"])
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"y_true": names[y_true], "y_pred": names[y_pred], "note": [f"Pt note {i}" for i in range(n)]}
    )
    for c, name in enumerate(names):
        frame[f"p_{name}"] = proba[:, c]
    frame["sex"] = rng.choice(["F", "M"], n)
    frame.loc[:4, "sex"] = None
    frame.to_csv(tmp_path / "preds.csv", index=False)
    return frame


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = medcore_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_metrics_json_has_the_documented_shape(tmp_path, capsys):
    frame = write_predictions(tmp_path)
    args = ["eval", "metrics", str(tmp_path / "preds.csv"), "--label-column", "y_true", "--pred-column", "y_pred"]
    code, out, _ = run_cli(capsys, *args, "--proba-prefix", "p_", "--subgroups", "sex", "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"n", "metrics", "per_class", "subgroups", "fairness"} and report["n"] == len(frame)
    gaps = report["fairness"]["sex"]
    assert list(gaps["gaps"]) == HEADLINE and gaps["equalized_odds_difference"] is None  # 3 classes: no EOD
    assert {"value", "ci_low", "ci_high", "excludes_zero", "high_group", "low_group"} <= set(gaps["gaps"]["accuracy"])
    assert list(report["metrics"]) == HEADLINE
    assert all(set(m) == {"value", "ci_low", "ci_high"} for m in report["metrics"].values())
    assert set(report["per_class"]) == {"copd", "chf", "pneumonia"}
    assert all(list(c) == PER_CLASS for c in report["per_class"].values())
    groups = report["subgroups"]["sex"]
    assert list(groups)[-1] == MISSING and groups[MISSING]["n"] == 5 and groups[MISSING]["small"] is True
    assert sum(g["n"] for g in groups.values()) == len(frame)
    assert all(set(g) == {*HEADLINE, "n", "small"} for g in groups.values())
    codes = pd.Categorical(frame["y_true"], categories=["chf", "copd", "pneumonia"]).codes
    preds = pd.Categorical(frame["y_pred"], categories=["chf", "copd", "pneumonia"]).codes
    assert report["metrics"]["macro_f1"]["value"] == pytest.approx(sk.f1_score(codes, preds, average="macro"))

    code, out, _ = run_cli(capsys, *args)  # the readable table, without probabilities
    assert code == 0 and "accuracy" in out and "auroc" in out and "undefined" in out
    code, out, _ = run_cli(capsys, *args, "--subgroups", "sex")
    accuracy_gap = report["fairness"]["sex"]["gaps"]["accuracy"]
    assert code == 0 and "gaps across sex" in out and f"accuracy           {accuracy_gap['value']:.3f}" in out


def test_eval_help_lists_the_metrics_action(capsys):
    for argv in (["eval", "--help"], ["eval", "metrics", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            medcore_main(argv)
        assert exit_info.value.code == 0
    assert "--proba-prefix" in capsys.readouterr().out


def test_a_missing_column_names_it_and_lists_the_columns(tmp_path, capsys):
    write_predictions(tmp_path)
    code, out, err = run_cli(
        capsys, "eval", "metrics", str(tmp_path / "preds.csv"), "--label-column", "truth", "--pred-column", "y_pred"
    )
    assert code == 1 and out == ""
    assert "'truth'" in err and "y_true, y_pred, note, p_copd, p_chf, p_pneumonia, sex" in err


def test_file_errors_name_rows_and_never_quote_note_text(tmp_path, capsys):
    frame = write_predictions(tmp_path)
    base = ["eval", "metrics", str(tmp_path / "preds.csv"), "--label-column", "y_true"]
    code, _, err = run_cli(capsys, *base, "--pred-column", "note")  # free text where labels belong
    assert code == 1 and "rows 1, 2, 3" in err and "free text" in err and "Pt note" not in err
    frame.loc[[2, 7], "y_true"] = None
    frame.loc[3, "p_chf"] += 0.2
    frame.to_csv(tmp_path / "preds.csv", index=False)
    code, _, err = run_cli(capsys, *base, "--pred-column", "y_pred")
    assert code == 1 and "'y_true'" in err and "rows 3, 8" in err
    frame["y_true"] = frame["y_true"].fillna("copd")
    frame.to_csv(tmp_path / "preds.csv", index=False)
    code, _, err = run_cli(capsys, *base, "--pred-column", "y_pred", "--proba-prefix", "p_")
    assert code == 1 and "do not sum to 1" in err and "row 4" in err


def test_predicted_labels_outside_the_classes_are_listed(tmp_path):
    pd.DataFrame({"y": ["yes", "no", "no"], "hat": ["yes", "maybe", "no"]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(MedcoreError, match=r"'maybe' \(row 2\)"):
        read_predictions(tmp_path / "p.csv", PredictionColumns(label_column="y", pred_column="hat"))


def test_parquet_with_integer_labels_and_one_probability_column(tmp_path):
    y_true, y_pred, proba = random_task(2, 80, seed=6)
    frame = pd.DataFrame({"y": y_true.astype(float), "hat": y_pred, "score_1": proba[:, 1]})
    frame.to_parquet(tmp_path / "p.parquet")
    columns = PredictionColumns(label_column="y", pred_column="hat", proba_prefix="score_")
    predictions = read_predictions(tmp_path / "p.parquet", columns)
    assert predictions.labels == ["0", "1"]
    np.testing.assert_array_equal(predictions.y_true, y_true)
    assert metrics.auroc(predictions.y_true, predictions.proba) == pytest.approx(sk.roc_auc_score(y_true, proba[:, 1]))


def test_empty_and_header_only_files_are_errors(tmp_path):
    columns = PredictionColumns(label_column="y", pred_column="hat")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("y,hat\n")
    with pytest.raises(MedcoreError, match="is empty"):
        read_predictions(tmp_path / "empty.csv", columns)
    with pytest.raises(MedcoreError, match="has no rows"):
        read_predictions(tmp_path / "header.csv", columns)
