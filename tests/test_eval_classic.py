"""The classic evaluator API (`ClinicalEvaluator`) answers from MedCore's engine, with CIs, on the packaged MiniLM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score

from medcore.errors import MedcoreError
from medcore.evaluate import ClinicalEvaluator
from medcore.models import load_model, load_tokenizer

LABELS = ["cardiology", "neurology"]
TEXTS = [
    "Chest pain radiating to the left arm, troponin rising.",
    "Sudden weakness of the right side and slurred speech.",
    "Palpitations and atrial fibrillation with rapid rate.",
    "Seizure overnight; EEG shows focal slowing.",
    "Hypertension and heart failure, on lisinopril.",
    "Migraine with aura, photophobia, nausea.",
] * 6


@pytest.fixture(scope="module")
def model_and_tokenizer():
    model = load_model("minilm", "classification", id2label=dict(enumerate(LABELS)))
    return model, load_tokenizer("minilm")


def test_metrics_come_with_intervals_and_match_the_predictions(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    frame = pd.DataFrame({"text": TEXTS, "label": [LABELS[i % 2] for i in range(len(TEXTS))]})
    evaluator = ClinicalEvaluator(model, tokenizer, frame, resamples=200)
    report = evaluator.evaluate_all_metrics()
    predicted = evaluator.predict_proba().argmax(axis=1)
    truth = np.array([i % 2 for i in range(len(TEXTS))])
    assert report["n"] == len(TEXTS)
    assert report["metrics"]["accuracy"]["value"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    low, high = report["metrics"]["accuracy"]["ci_low"], report["metrics"]["accuracy"]["ci_high"]
    assert low <= report["metrics"]["accuracy"]["value"] <= high
    clinical = evaluator.calculate_clinical_accuracy()
    sensitivity = recall_score(truth, predicted, labels=[0, 1], average=None, zero_division=np.nan)
    for code, label in enumerate(LABELS):
        expected = None if np.isnan(sensitivity[code]) else sensitivity[code]
        assert clinical["sensitivity"][label]["value"] == pytest.approx(expected, abs=1e-12)


def test_labels_may_be_class_ids_in_a_list_of_dicts(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    by_id = ClinicalEvaluator(model, tokenizer, rows, resamples=100).evaluate_all_metrics()
    frame = pd.DataFrame({"text": TEXTS, "label": [LABELS[i % 2] for i in range(len(TEXTS))]})
    by_name = ClinicalEvaluator(model, tokenizer, frame, resamples=100).evaluate_all_metrics()
    assert by_id["metrics"]["accuracy"] == by_name["metrics"]["accuracy"]
    from datasets import Dataset

    hf = ClinicalEvaluator(model, tokenizer, Dataset.from_list(rows), resamples=100).evaluate_all_metrics()
    assert hf["metrics"]["accuracy"] == by_id["metrics"]["accuracy"]


def test_a_missing_column_or_an_unknown_label_is_named(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(MedcoreError, match="no column 'label'; columns are: text, y"):
        ClinicalEvaluator(model, tokenizer, pd.DataFrame({"text": TEXTS, "y": 0}))
    frame = pd.DataFrame({"text": TEXTS[:2], "label": ["cardiology", "oncology"]})
    with pytest.raises(MedcoreError, match=r"row 1: label is not one of the model's 2 classes"):
        ClinicalEvaluator(model, tokenizer, frame)
