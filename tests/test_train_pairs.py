"""Text-pair classification: pairs tokenised as the tokenizer's sentence pair, and a one-rank LoRA run that learns a
label only the two texts together decide, scored by `medcore eval run`'s engine exactly as training scored it."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from train_datasets import certify_redacted, one_rank_world

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, load_split
from medcore.evaluate.runner import predict_split
from medcore.models import PAIR_TRUNCATION, load_tokenizer
from medcore.train import load_spec, prepare_run_dir, validate_spec
from medcore.train.data import collate, load_units, tokenize_classification
from medcore.workspace import get_workspace

MAPPING = ColumnMapping(text="question1", text_pair="question2", label="label")
PARTS = ["chest", "knee", "back", "throat", "stomach", "ankle"]  # one word piece each in MiniLM's vocabulary
FIRST = ["Why does my {} hurt after running?", "My {} has been sore since Monday.", "What helps a {} that aches?"]
SECOND = ["Is {} pain a sign of infection?", "Should I see a doctor about my {}?", "Can stress cause {} trouble?"]
STEPS = 30


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def pair_frame(n: int, seed: int) -> pd.DataFrame:
    """Question pairs labelled "same" when both name the same body part. Each part is equally likely in either
    question and half the pairs match, so neither question alone says anything about the label."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        first = rng.choice(PARTS)
        second = first if i % 2 == 0 else rng.choice([p for p in PARTS if p != first])
        rows.append(
            {
                "question1": rng.choice(FIRST).format(first),
                "question2": rng.choice(SECOND).format(second),
                "label": "same" if first == second else "different",
            }
        )
    return pd.DataFrame(rows)


def test_pair_units_are_the_tokenizers_sentence_pairs(tokenizer):
    texts = ["Chest pain on exertion. " * 20, "Knee sore.", "Back ache since Monday."]
    pairs = ["Is it cardiac?", "Is knee pain a sign of infection? " * 10, "Back pain worse at night?"]
    units = tokenize_classification(texts, ["a", "b", "a"], ["a", "b"], tokenizer, 24, pairs)
    for unit, text, pair in zip(units, texts, pairs, strict=True):
        expected = tokenizer(text, pair, truncation=PAIR_TRUNCATION, max_length=24)
        assert unit.input_ids == expected["input_ids"] and unit.token_type_ids == expected["token_type_ids"]
    assert [u.labels for u in units] == [0, 1, 0]
    # longest_first: the long note gives way and the short question survives whole, whichever side the long text is.
    question = tokenizer("Is it cardiac?", add_special_tokens=False)["input_ids"]
    assert units[0].length == 24 and units[0].input_ids[-len(question) - 1 : -1] == question
    knee = tokenizer("Knee sore.", add_special_tokens=False)["input_ids"]
    assert units[1].length == 24 and units[1].input_ids[1 : 1 + len(knee)] == knee
    batch = collate(units, tokenizer.pad_token_id, "classification")
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert batch["token_type_ids"][2, units[2].length :].eq(0).all()  # padding is segment 0, masked out anyway
    single = tokenize_classification(texts, ["a", "b", "a"], ["a", "b"], tokenizer, 24)
    assert single[0].token_type_ids is None and "token_type_ids" not in collate(single, 0, "classification")


def test_load_units_reads_the_pair_column(workspace, tokenizer):
    import_dataset(workspace, pair_frame(40, seed=1), "pairs", MAPPING, split=(0.5, 0.25, 0.25))
    spec = SimpleNamespace(dataset="pairs", task="classification", max_length=32, pack=False)
    units = load_units(spec, workspace, tokenizer, "train", ["different", "same"])
    train = load_split(workspace, "pairs", "train")
    expected = tokenizer(
        train["question1"].tolist(), train["question2"].tolist(), truncation=PAIR_TRUNCATION, max_length=32
    )
    assert [u.input_ids for u in units] == expected["input_ids"]
    assert [u.labels for u in units] == [int(label == "same") for label in train["label"]]


# --- a one-rank LoRA run on MiniLM -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One completed `python -m medcore.train RUN_DIR` run on question pairs, in this process (a world of one)."""
    from medcore.train.__main__ import main

    root = tmp_path_factory.mktemp("pairs") / "workspace"
    with one_rank_world() as mp:  # rank 0 of a world of one, one thread; restored afterwards
        mp.setenv("MEDCORE_HOME", str(root))
        ws = get_workspace(root)
        import_dataset(ws, pair_frame(240, seed=0), "pairs", MAPPING, split=(0.6, 0.2, 0.2))
        certify_redacted(ws, "pairs")  # synthetic questions: the audit record the training gate checks
        spec = load_spec(
            {
                "dataset": "pairs", "task": "classification", "model": "minilm", "lr": 5e-3, "max_steps": STEPS,
                "micro_batch": 16, "max_length": 32, "eval_interval": STEPS, "warmup_ratio": 0.0, "device": "cpu",
                "precision": "fp32", "seed": 3,
            }
        )  # fmt: skip
        validate_spec(spec, ws)
        rd = prepare_run_dir(spec, ws)
        assert main([str(rd.path)]) == 0, rd.status.read_text()
        yield ws, rd


def test_a_lora_run_learns_what_only_the_pair_decides(trained):
    ws, rd = trained
    evals = [r for r in map(json.loads, rd.metrics.read_text().splitlines()) if "eval_accuracy" in r]
    assert evals[-1]["eval_accuracy"] >= 0.8  # chance is 0.5: neither question alone carries the label
    # The eval engine scores the pairs as training did: the same accuracy on the validation split, and well above
    # chance on the held-out test split.
    validation = predict_split(rd.run_id, ws, "pairs", "validation")
    assert np.mean(validation["y_true"] == validation["y_pred"]) == pytest.approx(evals[-1]["eval_accuracy"])
    test = predict_split(rd.run_id, ws, "pairs", "test")
    assert np.mean(test["y_true"] == test["y_pred"]) >= 0.8


def test_the_fine_tune_beats_the_untuned_base_with_a_paired_interval_above_zero(trained):
    """What a clinical team asks before adoption: better than what it replaces, beyond chance, on the same examples."""
    from medcore.evaluate.compare import compare_models

    ws, rd = trained
    out = compare_models("minilm", [rd.run_id], ws, "pairs", "test", resamples=500)
    tuned = out["comparison"]["models"][rd.run_id]
    accuracy = tuned["differences"]["accuracy"]  # tuned run minus the base encoder with a fresh head
    assert accuracy["value"] > 0.2 and accuracy["ci_low"] > 0 and accuracy["excludes_zero"]
    assert tuned["mcnemar"]["p_value"] < 0.05 and tuned["mcnemar"]["c"] > tuned["mcnemar"]["b"]
