"""The classic guide's evaluator API on MedCore's engine: `ClinicalEvaluator(model, tokenizer, test_dataset)`.

    from medcore.evaluate.classic import ClinicalEvaluator
    evaluator = ClinicalEvaluator(model, tokenizer, test_dataset)   # a classification model and its tokenizer
    evaluator.evaluate_all_metrics()      # the `medcore eval metrics --json` shape, every figure with a 95% CI
    evaluator.calculate_clinical_accuracy()   # accuracy, and sensitivity / specificity per class, with CIs

`test_dataset` is anything with a text and a label column: a Hugging Face Dataset, a pandas DataFrame or a list of
dicts (pass `text_pair_column=` for pair classification: question pairs, NLI). Labels may be class ids or the model's
label names (model.config.id2label). Predictions come from the same length-sorted batching as `medcore eval run`, and
the metrics from the same bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.predictions import Predictions
from medcore.evaluate.runner import class_probabilities
from medcore.evaluate.subgroups import score_predictions

DEFAULT_MAX_LENGTH = 512  # a tokenizer that states no limit (model_max_length is a huge sentinel) is cut here


class ClinicalEvaluator:
    """Predict once, then score: the classic method names over medcore.evaluate."""

    def __init__(
        self,
        model,
        tokenizer,
        test_dataset,
        text_column: str = "text",
        label_column: str = "label",
        batch_size: int = 32,
        seed: int = 0,
        resamples: int = 1000,
        text_pair_column: str | None = None,
    ):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
        self.texts, self.y_true = read_examples(test_dataset, text_column, label_column, self.labels)
        # A pair task (question pairs, NLI): each text is scored with its pair, as the tokenizer's sentence pair.
        self.pairs = read_texts(test_dataset, text_pair_column) if text_pair_column else None
        self.batch_size = batch_size
        self.config = BootstrapConfig(seed=seed, resamples=resamples)
        self._proba: np.ndarray | None = None

    def predict_proba(self) -> np.ndarray:
        """(examples, classes) probabilities, computed once and kept."""
        if self._proba is None:
            limit = getattr(self.tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
            positions = getattr(self.model.config, "max_position_embeddings", DEFAULT_MAX_LENGTH)
            self.tokenizer.model_max_length = min(limit if limit < 1e6 else DEFAULT_MAX_LENGTH, positions)
            self._proba = class_probabilities(
                self.model, self.tokenizer, self.texts, self.batch_size, pairs=self.pairs
            )
        return self._proba

    def evaluate_all_metrics(self) -> dict[str, Any]:
        """{"n", "metrics", "per_class", "subgroups", "fairness"}: every metric as {"value", "ci_low", "ci_high"}."""
        proba = self.predict_proba()
        predictions = Predictions(
            source="test_dataset",
            labels=self.labels,
            y_true=self.y_true,
            y_pred=proba.argmax(axis=1),
            proba=proba,
            subgroups={},
        )
        return score_predictions(predictions, self.config).as_dict()

    def calculate_clinical_accuracy(self) -> dict[str, Any]:
        """Accuracy, and each class's sensitivity and specificity, with their 95% intervals."""
        report = self.evaluate_all_metrics()
        return {
            "accuracy": report["metrics"]["accuracy"],
            "sensitivity": {label: scores["sensitivity"] for label, scores in report["per_class"].items()},
            "specificity": {label: scores["specificity"] for label, scores in report["per_class"].items()},
            "n": report["n"],
        }


def read_examples(dataset, text_column: str, label_column: str, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Texts and class codes from a Dataset, DataFrame or list of dicts; labels as ids or as the model's names.

    Raises:
        MedcoreError: a missing column (with the ones there are), or a label the model does not have (by row).
    """
    rows = checked_rows(dataset, (text_column, label_column))
    texts = [str(example[text_column] or "") for example in rows]
    index = {name: i for i, name in enumerate(labels)}
    codes = []
    for row, example in enumerate(rows):
        value = example[label_column]
        code = (
            int(value) if isinstance(value, (int, np.integer)) and 0 <= value < len(labels) else index.get(str(value))
        )
        if code is None:
            raise MedcoreError(
                f"test_dataset row {row}: label is not one of the model's {len(labels)} classes "
                f"({', '.join(labels[:20])}). Map the labels to the model's id2label first."
            )
        codes.append(code)
    return texts, np.asarray(codes, dtype=np.int64)


def read_texts(dataset, column: str) -> list[str]:
    """One text column of a Dataset, DataFrame or list of dicts (a missing value reads as "")."""
    return [str(example[column] or "") for example in checked_rows(dataset, (column,))]


def checked_rows(dataset, needed: tuple[str, ...]):
    """The examples, indexable as dicts, once the `needed` columns are checked (MedcoreError naming any missing)."""
    rows = dataset.to_dict("records") if hasattr(dataset, "to_dict") and not hasattr(dataset, "features") else dataset
    columns = getattr(dataset, "column_names", None) or (list(rows[0]) if len(rows) else [])
    for column in needed:
        if column not in columns:
            raise MedcoreError(f"test_dataset has no column '{column}'; columns are: {', '.join(map(str, columns))}.")
    return rows
