"""Blinded clinician review: blinding, seeded order, append-only verdicts, close/unblind, win rates, kappa, export, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats  # the reference Wilson interval
from sklearn.metrics import cohen_kappa_score

from medcore.cli import main as medcore_main
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, load_split, read_manifest
from medcore.errors import MedcoreError
from medcore.evaluate.results import write_eval
from medcore.evaluate.review import (
    SEALED,
    VERDICT_CHOICES,
    Review,
    close_review,
    latest_verdicts,
    next_item,
    open_review,
    read_items,
    read_sealed,
    record_verdict,
    show_item,
)
from medcore.evaluate.review_sources import (
    ReviewConfig,
    ReviewPair,
    create_review_from_evals,
    create_review_from_pairs,
    review_config,
    review_pair,
)
from medcore.evaluate.review_summary import cohen_kappa, export_preferences, summarize_review, unblind

MODEL_A, MODEL_B = "run-cardio-alpha", "baseline-zeta"  # distinctive: grepped for in every review file
PHI_NAME, PHI_PHONE = "Maria Gonzalez", "(212) 555-0142"
FINDINGS = {
    "cardiology": ["Chest pain radiating to the left arm", "Elevated troponin", "Murmur on auscultation"],
    "neurology": ["Sudden weakness of the right hand", "Slurred speech since morning", "New onset seizure"],
}
LABELS = sorted(FINDINGS)


def import_notes(ws, n: int = 40) -> None:
    """Notes whose specialty shows in the finding; every note names the patient and her phone number."""
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        finding = FINDINGS[label][i % 3]
        rows.append({"text": f"{finding}. Patient {PHI_NAME} called from {PHI_PHONE}.", "label": label})
    mapping = ColumnMapping(text="text", label="label")
    import_dataset(ws, pd.DataFrame(rows), "notes", mapping, task="classification", split=(0.5, 0.1, 0.4))


def write_model_eval(ws, model: str, seed: int, split: str = "test") -> str:
    """An eval folder of `model` on the split: right on a random ~60% of rows, the other label elsewhere."""
    manifest = read_manifest(ws, "notes")
    y_true = load_split(ws, "notes", split)["label"].astype(str).to_numpy()
    other = np.where(y_true == LABELS[0], LABELS[1], LABELS[0])
    y_pred = np.where(np.random.default_rng(seed).random(y_true.size) < 0.6, y_true, other)
    proba = (y_pred == LABELS[1]).astype(float) * 0.6 + 0.2
    predictions = pd.DataFrame(
        {"row": np.arange(y_true.size), "y_true": y_true, "y_pred": y_pred, "p_cardiology": 1 - proba}
    ).assign(p_neurology=proba)
    accuracy = float((y_pred == y_true).mean())
    result = {"n": int(y_true.size), "metrics": {"accuracy": {"value": accuracy, "ci_low": 0.1, "ci_high": 0.9}}}
    config = {
        "model": model,
        "dataset": "notes",
        "split": split,
        "dataset_content_hash": manifest.content_hash,
        "labels": manifest.label_set,
        "model_identity": {"kind": "base", "name": model},
        "created_at": time.time(),
    }
    return write_eval(ws, predictions, result, config)[0]


def make_pairs(n: int, models=(MODEL_A, MODEL_B)) -> list[ReviewPair]:
    """Pairs whose outputs say which side wrote them ('Plan one' = models[0]), so a test can unblind by text."""
    return [
        ReviewPair(
            prompt=f"Question {i}: what is the next step for the chest pain?",
            model_a=models[i % 2],
            output_a=f"Plan {'one' if i % 2 == 0 else 'two'}: step {i}",
            model_b=models[1 - i % 2],
            output_b=f"Plan {'two' if i % 2 == 0 else 'one'}: step {i}",
            reference="Troponin and an ECG",
        )
        for i in range(n)
    ]


def author(text: str) -> str:
    return MODEL_A if text.startswith("Plan one") else MODEL_B


def folder_texts(review: Review, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {p.name: p.read_bytes().decode("latin-1") for p in review.path.iterdir() if p.name not in skip}


def test_blinding_holds_and_phi_never_reaches_the_review_folder(workspace):
    import_notes(workspace)
    eval_a, eval_b = write_model_eval(workspace, MODEL_A, 1), write_model_eval(workspace, MODEL_B, 2)
    review = create_review_from_evals(workspace, eval_a, eval_b, ReviewConfig(seed=0))
    items = read_items(review)
    assert items and all(it["response_1"] != it["response_2"] for it in items)  # disagreements only, by default
    assert all(it["response_1"] in LABELS and it["reference"] in LABELS for it in items)
    shown = next_item(review, "dr-hall")
    assert shown.item == 0 and shown.total == len(items) and shown.judged == 0
    assert "[NAME]" in shown.prompt and "[CONTACT]" in shown.prompt  # redacted, not dropped
    seen = json.dumps(dataclasses.asdict(shown))
    for secret in (MODEL_A, MODEL_B, eval_a, eval_b, "alpha", "zeta"):
        assert secret not in seen
    record_verdict(review, 0, "dr-hall", "first_better", f"Agree; {PHI_NAME} should ring {PHI_PHONE} back")
    close_review(review)
    export_preferences(review)
    for name, text in folder_texts(review, skip=(SEALED,)).items():
        for secret in (MODEL_A, MODEL_B, eval_a, eval_b):
            assert secret not in text, f"{secret} in {name}"
    assert MODEL_A in folder_texts(review)[SEALED] and oct(os.stat(review.sealed).st_mode & 0o777) == "0o600"
    for name, text in folder_texts(review).items():
        for phi in (PHI_NAME, "Gonzalez", PHI_PHONE, "555-0142"):
            assert phi not in text, f"PHI in {name}"


def test_items_are_the_evals_rows_with_each_models_prediction(workspace):
    import_notes(workspace)
    eval_a, eval_b = write_model_eval(workspace, MODEL_A, 1), write_model_eval(workspace, MODEL_B, 2)
    review = create_review_from_evals(workspace, eval_a, eval_b, ReviewConfig(seed=5, max_items=4))
    close_review(review)
    preds = {
        m: pd.read_parquet(workspace.evals / e / "predictions.parquet")
        for m, e in [(MODEL_A, eval_a), (MODEL_B, eval_b)]
    }
    test = load_split(workspace, "notes", "test")
    items, mapping = read_items(review), unblind(review)
    assert len(items) == 4 and len({m["row"] for m in mapping}) == 4
    for item, unblinded in zip(items, mapping, strict=True):
        row = unblinded["row"]
        assert preds[unblinded["response_1_model"]].at[row, "y_pred"] == item["response_1"]
        assert preds[unblinded["response_2_model"]].at[row, "y_pred"] == item["response_2"]
        assert item["reference"] == test.at[row, "label"]
        finding = test.at[row, "text"].split(".")[0]
        assert item["prompt"] == f"{finding}. Patient [NAME] called from [CONTACT]."  # the row's text, masked


def test_order_is_random_per_item_and_reproducible_with_the_seed(workspace):
    pairs = make_pairs(24)
    first = create_review_from_pairs(workspace, pairs, ReviewConfig(seed=7))
    again = create_review_from_pairs(workspace, pairs, ReviewConfig(seed=7))
    other = create_review_from_pairs(workspace, pairs, ReviewConfig(seed=8))
    assert first.items.read_bytes() == again.items.read_bytes()
    assert first.items.read_bytes() != other.items.read_bytes()
    shown_first = [author(it["response_1"]) for it in read_items(first)]
    assert 4 <= shown_first.count(MODEL_A) <= 20  # each model shown first on some items, not a fixed side
    for review in (first, other):
        close_review(review)
        sealed = read_sealed(review)
        assert [sealed["models"][k] for k in sealed["first"]] == [
            author(it["response_1"]) for it in read_items(review)
        ]
        assert [m["response_1_model"] for m in unblind(review)] == [
            author(it["response_1"]) for it in read_items(review)
        ]


def test_verdicts_are_append_only_and_the_latest_supersedes(workspace):
    review = create_review_from_pairs(workspace, make_pairs(3), ReviewConfig(seed=0))
    record_verdict(review, 0, "dr-hall", "first_better")
    record_verdict(review, 1, "dr-hall", "A better")  # the console's A/B wording: A is the first response shown
    before, inode = review.verdicts.read_bytes(), review.verdicts.stat().st_ino
    assert next_item(review, "dr-hall").item == 2 and next_item(review, "dr-okafor").item == 0
    record_verdict(review, 0, "dr-hall", "both_wrong", "second look")
    after = review.verdicts.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 3  # appended, never rewritten
    assert review.verdicts.stat().st_ino == inode  # the same file: not a copy renamed over it
    records = [json.loads(line) for line in after.splitlines()]
    assert [r["verdict"] for r in records] == ["first_better", "first_better", "both_wrong"]
    assert all(r["reviewer"] == "dr-hall" and r["at"].endswith("+00:00") for r in records)
    latest = latest_verdicts(review)
    assert len(latest) == 2 and latest[("dr-hall", 0)]["verdict"] == "both_wrong"
    assert show_item(review, 2, "dr-hall").judged == 2
    record_verdict(review, np.int64(2), "dr-hall", "both_acceptable")  # an item number read from a table
    assert next_item(review, "dr-hall") is None


def test_bad_verdicts_and_everything_after_close_are_refused(workspace):
    review = create_review_from_pairs(workspace, make_pairs(2), ReviewConfig(seed=0))
    with pytest.raises(MedcoreError, match="Unknown verdict 'model A wins'"):
        record_verdict(review, 0, "dr-hall", "model A wins")
    with pytest.raises(MedcoreError, match="there is no item 2"):
        record_verdict(review, 2, "dr-hall", "both_wrong")
    with pytest.raises(MedcoreError, match="reviewer name"):
        record_verdict(review, 0, " ", "both_wrong")
    for read in (read_sealed, summarize_review, export_preferences, unblind):
        with pytest.raises(MedcoreError, match="still open.*medcore eval review close"):
            read(review)
    record_verdict(review, 0, "dr-hall", "both_wrong")
    close_review(review)
    size = review.verdicts.stat().st_size
    with pytest.raises(MedcoreError, match="is closed: it takes no more verdicts"):
        record_verdict(review, 1, "dr-hall", "first_better")
    assert review.verdicts.stat().st_size == size and next_item(review, "dr-okafor") is None
    closed_at = review.read_manifest()["closed_at"]
    assert close_review(review)["closed_at"] == closed_at  # closing again keeps the first time
    assert summarize_review(review)["judgments"] == 1


def test_sources_are_checked(workspace):
    import_notes(workspace)
    eval_a, eval_b = write_model_eval(workspace, MODEL_A, 1), write_model_eval(workspace, MODEL_B, 2)
    on_validation = write_model_eval(workspace, MODEL_B, 3, split="validation")
    with pytest.raises(MedcoreError, match="did not score the same dataset split"):
        create_review_from_evals(workspace, eval_a, on_validation)
    with pytest.raises(MedcoreError, match="pick the evals of two different models"):
        create_review_from_evals(workspace, eval_a, eval_a)
    with pytest.raises(MedcoreError, match="contains the model name 'baseline-zeta'"):
        create_review_from_evals(workspace, eval_a, eval_b, ReviewConfig(name="alpha vs baseline-zeta"))
    with pytest.raises(MedcoreError, match="name 3 models; a review compares two"):
        create_review_from_pairs(workspace, make_pairs(2) + make_pairs(1, models=("third-model", MODEL_A)))
    with pytest.raises(MedcoreError, match="Invalid review pair: model_a and model_b must name two different"):
        review_pair(prompt="p", model_a=MODEL_A, output_a="x", model_b=MODEL_A, output_b="y")
    with pytest.raises(MedcoreError, match="'max_items'"):
        review_config(max_items=0)
    with pytest.raises(MedcoreError, match="No review 'review-nope'"):
        open_review(workspace, "review-nope")
    assert not (workspace.root / "reviews").exists() or not any((workspace.root / "reviews").iterdir())


def judge_at_random(review: Review, rng: np.random.Generator) -> dict[tuple[str, int], str]:
    """Two reviewers: dr-a judges every item (and changes her mind on some), dr-b a random half; the latest counts."""
    n = len(read_items(review))
    plan = [("dr-a", i) for i in range(n)] + [("dr-b", int(i)) for i in rng.permutation(n)[: n // 2]]
    plan += [("dr-a", int(i)) for i in rng.integers(0, n, 6)]  # re-judged: these supersede
    latest = {}
    for reviewer, item in plan:
        verdict = str(rng.choice(VERDICT_CHOICES))
        record_verdict(review, item, reviewer, verdict)
        latest[(reviewer, item)] = verdict
    return latest


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_win_rates_wilson_intervals_and_kappa_match_a_direct_computation(workspace, seed):
    review = create_review_from_pairs(workspace, make_pairs(30), ReviewConfig(seed=seed))
    latest = judge_at_random(review, np.random.default_rng(seed))
    close_review(review)
    summary = summarize_review(review)
    items = read_items(review)
    shown = [(author(it["response_1"]), author(it["response_2"])) for it in items]
    wins = {MODEL_A: 0, MODEL_B: 0}
    for (_, item), verdict in latest.items():
        if verdict in ("first_better", "second_better"):
            wins[shown[item][0 if verdict == "first_better" else 1]] += 1
    n, decisive = len(latest), sum(wins.values())
    assert summary["judgments"] == n and summary["decisive"] == decisive
    for model, k in wins.items():
        result = summary["models"][model]
        assert result["wins"] == k and result["win_rate"]["value"] == pytest.approx(k / n, abs=1e-12)
        assert (result["win_rate"]["ci_low"], result["win_rate"]["ci_high"]) == pytest.approx(wilson(k, n), abs=1e-9)
        share = result["decisive_share"]
        assert (share["ci_low"], share["ci_high"]) == pytest.approx(wilson(k, decisive), abs=1e-9)
    for tie in ("both_acceptable", "both_wrong"):
        count = list(latest.values()).count(tie)
        assert summary[tie]["count"] == count
        assert (summary[tie]["rate"]["ci_low"], summary[tie]["rate"]["ci_high"]) == pytest.approx(wilson(count, n))
    shared = sorted(i for r, i in latest if r == "dr-b")
    (agreement,) = summary["agreement"]
    assert agreement["reviewers"] == ["dr-a", "dr-b"] and agreement["items"] == len(shared)
    expected = cohen_kappa_score([latest[("dr-a", i)] for i in shared], [latest[("dr-b", i)] for i in shared])
    assert agreement["kappa"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_cohen_kappa_equals_sklearn_on_random_verdicts(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    first = [str(v) for v in rng.choice(VERDICT_CHOICES, n)]
    # the second rater copies the first on a random share of items, so kappa spans chance to near-perfect agreement
    second = [f if rng.random() < seed / 8 else str(rng.choice(VERDICT_CHOICES)) for f in first]
    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second), abs=1e-9)


def test_cohen_kappa_is_undefined_where_chance_agreement_is_one():
    assert cohen_kappa(["both_wrong"] * 5, ["both_wrong"] * 5) is None  # sklearn: nan
    assert cohen_kappa(["first_better", "both_wrong"], ["both_wrong", "first_better"]) == pytest.approx(
        cohen_kappa_score(["first_better", "both_wrong"], ["both_wrong", "first_better"])
    )


def test_preference_export_holds_the_decisive_agreed_items(workspace):
    review = create_review_from_pairs(workspace, make_pairs(5), ReviewConfig(seed=3))
    items = read_items(review)
    record_verdict(review, 0, "dr-a", "first_better")
    record_verdict(review, 0, "dr-b", "both_acceptable")  # compatible: item 0 exported
    record_verdict(review, 1, "dr-a", "second_better")
    record_verdict(review, 2, "dr-a", "first_better")
    record_verdict(review, 2, "dr-b", "second_better")  # reviewers disagree: left out
    record_verdict(review, 3, "dr-a", "first_better")
    record_verdict(review, 3, "dr-b", "both_wrong")  # someone judged both wrong: left out
    record_verdict(review, 4, "dr-a", "both_acceptable")  # no decisive verdict: left out
    close_review(review)
    path = export_preferences(review)
    assert path == review.path / "preferences.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"prompt": items[0]["prompt"], "chosen": items[0]["response_1"], "rejected": items[0]["response_2"]},
        {"prompt": items[1]["prompt"], "chosen": items[1]["response_2"], "rejected": items[1]["response_1"]},
    ]


APPEND = """
import sys, time
from pathlib import Path
from medcore.evaluate.review import Review, record_verdict
review, reviewer, count, go = Review(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
for i in range(count):
    record_verdict(review, i % 4, reviewer, ("first_better", "both_wrong")[i % 2])
"""


@pytest.mark.slow
def test_concurrent_appends_from_two_processes_lose_nothing(workspace, tmp_path):
    review = create_review_from_pairs(workspace, make_pairs(4), ReviewConfig(seed=0))
    go, count = tmp_path / "go", 150
    procs = [
        subprocess.Popen([sys.executable, "-c", APPEND, str(review.path), who, str(count), str(go)])
        for who in ("dr-a", "dr-b")
    ]
    time.sleep(1.5)  # both interpreters import medcore, then wait for the same start
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = [json.loads(line) for line in review.verdicts.read_text().splitlines()]
    assert len(records) == 2 * count
    for who in ("dr-a", "dr-b"):
        mine = [r["verdict"] for r in records if r["reviewer"] == who]
        assert mine == [("first_better", "both_wrong")[i % 2] for i in range(count)]  # all there, in order


def review_id_from(text: str) -> str:
    return re.search(r"review-\d{8}-\d{6}-[0-9a-f]{6}", text).group(0)


def test_cli_create_summary_export_end_to_end(workspace, capsys):
    import_notes(workspace)
    eval_a, eval_b = write_model_eval(workspace, MODEL_A, 1), write_model_eval(workspace, MODEL_B, 2)
    assert medcore_main(["eval", "review", "create", "--evals", eval_a, eval_b, "--name", "ward round"]) == 0
    out = capsys.readouterr().out
    review = open_review(workspace, review_id_from(out))
    assert "ward round" in out and "NAME" in out and MODEL_A not in out
    for item in range(len(read_items(review))):
        record_verdict(review, item, "dr-a", ("first_better", "second_better", "both_wrong")[item % 3])
    assert medcore_main(["eval", "review", "summary", review.review_id, "--json"]) == 1
    assert "still open" in capsys.readouterr().err
    assert medcore_main(["eval", "review", "list"]) == 0
    listing = capsys.readouterr().out
    assert review.review_id in listing and "ward round" in listing and MODEL_B not in listing
    assert medcore_main(["eval", "review", "close", review.review_id]) == 0
    capsys.readouterr()
    assert medcore_main(["eval", "review", "summary", review.review_id, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(summarize_review(review)))
    assert set(printed["models"]) == {MODEL_A, MODEL_B} and printed["judgments"] == len(read_items(review))
    assert medcore_main(["eval", "review", "summary", review.review_id]) == 0
    text = capsys.readouterr().out
    assert MODEL_A in text and "both wrong" in text and "95% Wilson CIs" in text
    assert medcore_main(["eval", "review", "export", review.review_id]) == 0
    assert str(review.preferences) in capsys.readouterr().out
    exported = [json.loads(line) for line in review.preferences.read_text().splitlines()]
    decisive = sum(1 for item in range(len(read_items(review))) if item % 3 < 2)
    assert len(exported) == decisive and all(set(r) == {"prompt", "chosen", "rejected"} for r in exported)
