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


def test_a_pair_column_is_scored_as_the_tokenizers_sentence_pair(model_and_tokenizer):
    import torch

    from medcore.models import PAIR_TRUNCATION

    model, tokenizer = model_and_tokenizer
    follow_ups = ["Is it the heart?", "Could this be a stroke?"] * (len(TEXTS) // 2)
    frame = pd.DataFrame({"text": TEXTS, "follow_up": follow_ups, "label": [LABELS[i % 2] for i in range(len(TEXTS))]})
    pairs = ClinicalEvaluator(model, tokenizer, frame, resamples=100, text_pair_column="follow_up").predict_proba()
    with torch.inference_mode():
        encoded = tokenizer(TEXTS[1], follow_ups[1], truncation=PAIR_TRUNCATION, return_tensors="pt")
        expected = torch.softmax(model(**encoded).logits.double(), dim=-1)[0].numpy()
    np.testing.assert_allclose(pairs[1], expected, atol=1e-5)
    alone = ClinicalEvaluator(model, tokenizer, frame, resamples=100).predict_proba()
    assert np.abs(pairs - alone).max() > 1e-3  # the second text was read
    with pytest.raises(MedcoreError, match="no column 'question2'; columns are: text, follow_up, label"):
        ClinicalEvaluator(model, tokenizer, frame, text_pair_column="question2")
