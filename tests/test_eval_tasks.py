"""`medcore eval run` beyond classification: entity-level P/R/F1 for token classification; greedy generation scored by
exact match, token F1, ROUGE-L and embedding similarity; an OpenAI-compatible endpoint as the model. Metrics checked
against hand computation, the evals against the same models run directly, and the eval folders for text."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from train_datasets import write_dataset

from medcore.cli import main as medcore_main
from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, load_split, read_manifest
from medcore.demo.qa import generate_qa
from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import BootstrapConfig, resample_weights
from medcore.evaluate.entities import entity_counts, score_entities
from medcore.evaluate.generation import embedding_similarity
from medcore.evaluate.results import OUTPUTS, PREDICTIONS
from medcore.evaluate.row_scores import RowRatio, ratio_estimates, row_mean
from medcore.evaluate.runner import evaluate_model
from medcore.evaluate.text_metrics import exact_match, first_word, normalize_answer, rouge_l, token_f1
from medcore.models import load_model, load_tokenizer
from medcore.token_windows import TAG_FILE, CharSpan, TagFile, bio_tags, default_stride, predict_spans
from medcore.train import load_spec, prepare_run_dir
from medcore.train.data import format_prompt
from medcore.train.lora import apply_lora
from medcore.train.presets import load_lora_preset
from medcore.workspace import get_workspace

KEY = "eval-test-key"
MAX_NEW = 8


# --- metrics against hand computation ------------------------------------------------------------------------------


def test_exact_match_and_token_f1_by_hand():
    assert normalize_answer("  The Aspirin, 75 mg! ") == "aspirin 75 mg"
    assert exact_match("The aspirin.", "aspirin") == 1.0 and exact_match("aspirin daily", "aspirin") == 0.0
    # 4 output tokens after "the" goes (patient took aspirin daily), 1 reference token, 1 shared: P 1/4, R 1.
    assert token_f1("The patient took aspirin daily", "aspirin") == pytest.approx(2 * 0.25 * 1 / 1.25)
    assert token_f1("no no yes", "no yes yes") == pytest.approx(2 / 3)  # shared tokens count as a multiset
    assert token_f1("", "the") == 1.0 and token_f1("aspirin", "") == 0.0 and token_f1("heparin", "aspirin") == 0.0
    assert first_word("Yes, it was.") == "yes" and first_word("") == ""


def test_rouge_l_by_hand():
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)  # LCS 5 of 6 and 6
    assert rouge_l("police killed the gunman", "the gunman killed police") == pytest.approx(0.5)  # LCS 2 of 4 and 4
    assert rouge_l("a b c d e", "a c e") == pytest.approx(2 * 0.6 / 1.6)  # LCS 3: P 3/5, R 1
    # rouge-score's tokens: lower case, split on anything but a-z0-9: [aspirin, 75mg] vs [aspirin, 75, mg].
    assert rouge_l("Aspirin, 75mg!", "aspirin 75 mg") == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert rouge_l("", "aspirin") == 0.0 and rouge_l("...", "") == 0.0


def test_rouge_l_matches_the_rouge_score_package():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")  # not a dependency: checked where installed
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rng = random.Random(0)
    words = ["chest", "pain", "the", "aspirin", "75mg", "BP", "118/76", "no", "Yes."]
    for _ in range(200):
        a, b = (" ".join(rng.choices(words, k=rng.randint(0, 9))) for _ in range(2))
        assert rouge_l(a, b) == pytest.approx(scorer.score(b, a)["rougeL"].fmeasure, abs=1e-12)


def test_entity_metrics_on_planted_spans():
    """Exact span and type only: a partial overlap and a wrong type are each one false positive and one false negative."""
    types = ["NAME", "DATE", "ID"]
    gold = [[CharSpan(0, 5, "NAME"), CharSpan(10, 15, "DATE"), CharSpan(20, 25, "NAME")], [CharSpan(3, 9, "DATE")]]
    predicted = [
        [CharSpan(0, 5, "NAME", 0.9), CharSpan(10, 15, "NAME"), CharSpan(20, 24, "NAME"), CharSpan(30, 35, "ID")],
        [CharSpan(3, 9, "DATE")],
    ]
    counts = np.stack([entity_counts(g, p, types) for g, p in zip(gold, predicted, strict=True)])
    # (gold, predicted, correct) per type: NAME gets the exact, the retyped and the partial span; DATE 2 gold, 1 hit.
    assert counts.sum(axis=0).tolist() == [[2, 3, 1], [2, 1, 1], [0, 1, 0]]
    result = score_entities(counts, types, {}, BootstrapConfig(resamples=200))
    micro = {name: result["metrics"][name]["value"] for name in ("precision", "recall", "f1")}
    assert micro == pytest.approx({"precision": 2 / 5, "recall": 2 / 4, "f1": 2 * 2 / (5 + 4)})
    assert result["entities"] == {"gold": 4, "predicted": 5, "correct": 2}
    per_type = result["per_type"]
    assert per_type["NAME"]["precision"]["value"] == pytest.approx(1 / 3) and per_type["NAME"]["support"]["value"] == 2
    assert per_type["ID"]["recall"]["value"] is None and per_type["ID"]["precision"]["value"] == 0.0  # no gold ID
    assert per_type["DATE"]["precision"]["value"] == 1.0 and per_type["DATE"]["recall"]["value"] == 0.5


def test_row_bootstrap_is_the_percentile_of_row_resamples_and_shrinks_with_n():
    rng = np.random.default_rng(3)
    values = rng.random(40)
    config = BootstrapConfig(resamples=1000, seed=5)
    got = ratio_estimates({"m": row_mean(values)}, config)["m"]
    # Directly: the same seeded resample weights, the mean of each resample, its 2.5th and 97.5th percentiles.
    weights = np.concatenate(list(resample_weights(np.zeros(40, dtype=np.int64), 1000, np.random.default_rng(5))))
    low, high = np.quantile(weights @ values / weights.sum(axis=1), [0.025, 0.975])
    assert got.value == pytest.approx(values.mean()) and got.method == "percentile"
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert ratio_estimates({"m": row_mean(values)}, config)["m"] == got  # seeded: the same intervals again

    widths = []
    for n in (30, 300, 3000):
        hits = (np.random.default_rng(n).random(n) < 0.7).astype(float)
        est = ratio_estimates({"accuracy": row_mean(hits)}, BootstrapConfig())["accuracy"]
        assert est.ci_low <= est.value <= est.ci_high
        widths.append(est.ci_high - est.ci_low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]  # about 1 / sqrt(n): sqrt(10) ~ 3.2 per step

    rows_with_nan = np.array([1.0, np.nan, 0.0, 1.0])  # a row where the metric is undefined is left out
    assert ratio_estimates({"m": row_mean(rows_with_nan)}, config)["m"].value == pytest.approx(2 / 3)
    nothing = ratio_estimates({"m": RowRatio(np.zeros(3), np.zeros(3))}, config)["m"]
    assert nothing.value is None and nothing.ci_low is None  # undefined, never 0


def test_embedding_similarity_is_the_cosine_of_mean_pooled_minilm():
    from transformers import AutoModel

    from medcore.models import minilm_path

    outputs, references = ["aspirin 75 mg daily", "chest pain", ""], ["aspirin", "chest pain", "no"]
    got = embedding_similarity(outputs, references, batch_size=2)
    model, tokenizer = AutoModel.from_pretrained(minilm_path()).eval(), load_tokenizer("minilm")
    with torch.no_grad():
        vectors = [model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(dim=0) for t in outputs]
        others = [model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(dim=0) for t in references]
    expected = [
        torch.nn.functional.cosine_similarity(a, b, dim=0).item() for a, b in zip(vectors, others, strict=True)
    ]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got[1] == pytest.approx(1.0)


# --- token classification ------------------------------------------------------------------------------------------


def make_run(ws, task: str, model: str, dataset: str, max_length: int):
    spec = load_spec(
        {"name": f"fake-{task}", "model": model, "task": task, "dataset": dataset, "max_length": max_length}
    )
    return prepare_run_dir(spec, ws)


def randomise(peft_model, std: float, head: str | None = None) -> None:
    """lora_B starts at zero: random LoRA (and head) weights make an untrained adapter change the outputs."""
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or (head and head in name):
                param.normal_(0, std)


def leaks(folder, canaries: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    """Canaries found in the eval folder's files (raw bytes and, for Parquet, the cells)."""
    files = [p for p in folder.iterdir() if p.name not in skip]
    contents = [p.read_bytes().decode("latin-1") for p in files]
    contents += [pd.read_parquet(p).to_csv() for p in files if p.suffix == ".parquet"]
    return [c for c in canaries if any(c in text for text in contents)]


def test_token_classification_eval_scores_entities_as_the_adapter_tags_them(workspace):
    frame = pd.DataFrame(generate_qa(seed=0, n=30))[["qa_id", "context", "phi_spans", "specialty"]]
    mapping = ColumnMapping(text="context", spans="phi_spans", id="qa_id", subgroups=["specialty"])
    import_dataset(workspace, frame, "ner", mapping, split=(0.6, 0.1, 0.3))
    manifest = read_manifest(workspace, "ner")
    assert manifest.task == "token-classification" and manifest.label_set
    rd = make_run(workspace, "token-classification", "minilm", "ner", max_length=24)  # notes span several windows
    tags = TagFile(bio_tags(manifest.label_set), 24, default_stride(24))
    torch.manual_seed(1)
    base = load_model("minilm", "token-classification", id2label=dict(enumerate(tags.tags)), workspace=workspace)
    peft_model = apply_lora(base, load_lora_preset("default"), "token-classification", "minilm")
    randomise(peft_model, 0.3, head="classifier")
    peft_model.eval().save_pretrained(rd.adapter)
    (rd.adapter / TAG_FILE).write_text(json.dumps(tags.as_json()))

    result = evaluate_model(rd.run_id, workspace, "ner", batch_size=4, resamples=200, keep_outputs=True)

    # Directly: each note alone through the unmerged peft model, decoded, matched exactly against the gold spans.
    split = load_split(workspace, "ner", "test")
    tokenizer = load_tokenizer("minilm")
    predicted = [predict_spans(peft_model, tokenizer, text, tags, threshold=0.5) for text in split["context"]]
    gold = [{(s["start"], s["end"], s["type"]) for s in spans} for spans in split["phi_spans"]]
    found = [{(s.start, s.end, s.type) for s in spans} for spans in predicted]
    correct = sum(len(g & p) for g, p in zip(gold, found, strict=True))
    n_gold, n_pred = sum(map(len, gold)), sum(map(len, found))
    assert result["entities"] == {"gold": n_gold, "predicted": n_pred, "correct": correct} and n_pred > 0
    assert result["metrics"]["precision"]["value"] == pytest.approx(correct / n_pred)
    assert result["metrics"]["recall"]["value"] == pytest.approx(correct / n_gold)
    assert result["metrics"]["f1"]["value"] == pytest.approx(2 * correct / (n_pred + n_gold))
    assert set(result["per_type"]) == set(manifest.label_set) and result["task"] == "token-classification"
    assert set(result["subgroups"]["specialty"]) == set(split["specialty"])
    for estimate in result["metrics"].values():
        assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]

    folder = workspace.evals / result["eval_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", OUTPUTS, PREDICTIONS, "result.json"]
    preds = pd.read_parquet(folder / PREDICTIONS)
    assert list(preds.columns[:4]) == ["row", "gold", "predicted", "correct"] and len(preds) == len(split)
    assert all(pd.api.types.is_numeric_dtype(preds[c]) for c in preds.columns)  # counts only: no text, no offsets
    kept = pd.read_parquet(folder / OUTPUTS)  # asked for: the predicted spans, in their own file
    assert [[(s["start"], s["end"], s["type"]) for s in row] for row in kept["spans"]] == [
        [(s.start, s.end, s.type) for s in spans] for spans in predicted
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == "token-classification" and config["model_identity"]["run_id"] == rd.run_id
    canaries = [t[5:25] for t in frame["context"]] + [t[s["start"] : s["end"]] for t, spans in
                zip(frame["context"], frame["phi_spans"], strict=True) for s in spans if s["end"] - s["start"] > 6]  # fmt: skip
    assert not leaks(folder, canaries, skip=(OUTPUTS,))


# --- generation and the endpoint ----------------------------------------------------------------------------------


def direct_answers(model, tokenizer, frame: pd.DataFrame) -> list[str]:
    """Each prompt alone, unpadded, formatted as training formats it: greedy, stopping at [SEP] (tiny-llama's EOS)."""
    answers = []
    for question, context in zip(frame["question"], frame["context"], strict=True):
        ids = [
            tokenizer.bos_token_id,
            *tokenizer(format_prompt(question, context), add_special_tokens=False)["input_ids"],
        ]
        out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
        new = out[0, len(ids) :].tolist()
        new = new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new
        answers.append(tokenizer.decode(new, skip_special_tokens=True))
    return answers


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    """Dataset `qa` (three test answers are yes/no/maybe), a causal-lm run with a random LoRA on tiny-llama, the
    run's answers computed directly, and dataset `echo`: the same rows, half the test answers being those answers."""
    ws = get_workspace(tmp_path_factory.mktemp("qa") / "workspace")
    frame = pd.DataFrame(generate_qa(seed=1, n=60))[["qa_id", "question", "context", "answer"]]
    frame.loc[frame.index[-3:], "answer"] = ["Yes.", "no", "maybe"]
    write_dataset(ws, "qa", "causal-lm", frame=frame, redacted=False)
    rd = make_run(ws, "causal-lm", "tiny-llama", "qa", max_length=256)
    tokenizer = load_tokenizer("tiny-llama", ws)
    torch.manual_seed(0)
    peft_model = apply_lora(load_model("tiny-llama", "causal-lm", workspace=ws), load_lora_preset("default"),
                            "causal-lm", "tiny-llama")  # fmt: skip
    randomise(peft_model, 0.2)
    peft_model.eval().save_pretrained(rd.adapter)
    test = load_split(ws, "qa", "test")
    with torch.no_grad():
        answers = direct_answers(peft_model, tokenizer, test)
    echo = frame.copy()
    echo.loc[frame.index[-len(test) :: 2], "answer"] = answers[::2]
    write_dataset(ws, "echo", "causal-lm", frame=echo, redacted=False)
    return {"ws": ws, "run": rd, "frame": frame, "test": test, "answers": answers}


def test_generation_eval_scores_greedy_answers_in_the_training_format(qa):
    ws, test, answers = qa["ws"], qa["test"], qa["answers"]
    assert len(set(answers)) > 1  # the random adapter answers each prompt differently
    result = evaluate_model(qa["run"].run_id, ws, "qa", batch_size=4, resamples=200, max_new_tokens=MAX_NEW,
                            keep_outputs=True)  # fmt: skip
    folder = ws.evals / result["eval_id"]
    kept = pd.read_parquet(folder / OUTPUTS)
    assert kept["output"].tolist() == answers  # batched, left-padded, merged == one by one, unpadded, unmerged

    preds = pd.read_parquet(folder / PREDICTIONS)
    references = test["answer"].tolist()
    for name, metric in (("exact_match", exact_match), ("token_f1", token_f1), ("rouge_l", rouge_l)):
        expected = [metric(a, r) for a, r in zip(answers, references, strict=True)]
        np.testing.assert_allclose(preds[name], expected)
        assert result["metrics"][name]["value"] == pytest.approx(np.mean(expected))
    yes_no = preds["yes_no_accuracy"].to_numpy()
    assert np.isnan(yes_no[:-3]).all()  # only rows whose reference is yes, no or maybe count
    expected_yes_no = [float(first_word(a) == r) for a, r in zip(answers[-3:], ["yes", "no", "maybe"], strict=True)]
    assert yes_no[-3:].tolist() == expected_yes_no
    assert result["metrics"]["yes_no_accuracy"]["value"] == pytest.approx(np.mean(expected_yes_no))
    assert (preds["output_tokens"] <= MAX_NEW).all() and len(preds) == len(test)
    for estimate in result["metrics"].values():
        assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]

    assert list(preds.columns) == ["row", "exact_match", "token_f1", "rouge_l", "embedding_similarity",
                                   "yes_no_accuracy", "output_tokens"]  # fmt: skip
    canaries = [a for a in answers if len(a) > 8] + [c[10:30] for c in test["context"]] + ["tiotropium"]
    assert not leaks(folder, canaries, skip=(OUTPUTS,))
    config = json.loads((folder / "config.json").read_text())
    assert config["max_new_tokens"] == MAX_NEW and config["keep_outputs"] and config["task"] == "causal-lm"


def test_cli_scores_a_base_model_and_keeps_no_outputs_unless_asked(qa, monkeypatch, capsys):
    monkeypatch.setenv("MEDCORE_HOME", str(qa["ws"].root))
    args = ["eval", "run", "tiny-llama", "--dataset", "qa", "--max-new-tokens", "4", "--resamples", "200"]
    assert medcore_main(args) == 0
    out = capsys.readouterr().out
    for name in ("exact_match", "token_f1", "rouge_l", "embedding_similarity", "yes_no_accuracy"):
        assert f"  {name}" in out
    eval_id = out.split("saved ")[1].split(":")[0]
    assert OUTPUTS not in {p.name for p in (qa["ws"].evals / eval_id).iterdir()}


def test_an_endpoint_scores_as_the_same_model_in_process(qa, monkeypatch):
    from medcore.procs import free_port
    from medcore.serve.config import load_serving_config
    from medcore.serve.server import serve_in_thread

    ws = qa["ws"]
    config = load_serving_config(model="tiny-llama", adapters={"qa": qa["run"].adapter}, port=free_port(), api_key=KEY)
    server = serve_in_thread(config, ws)
    try:
        monkeypatch.setenv("MEDCORE_EVAL_API_KEY", KEY)
        options = {"batch_size": 4, "resamples": 200, "max_new_tokens": MAX_NEW}
        served = evaluate_model(f"openai:{server.url}/v1#qa", ws, "echo", **options)
        chat = evaluate_model(f"openai-chat:{server.url}#qa", ws, "qa", **options)
        monkeypatch.setenv("MEDCORE_EVAL_API_KEY", "wrong")
        with pytest.raises(MedcoreError, match=r"refused row 0 with HTTP 401.*MEDCORE_EVAL_API_KEY"):
            evaluate_model(f"openai:{server.url}/v1#qa", ws, "echo", **options)
    finally:
        server.stop()
    local = evaluate_model(qa["run"].run_id, ws, "echo", **options)
    served_rows, local_rows = (pd.read_parquet(ws.evals / r["eval_id"] / PREDICTIONS) for r in (served, local))
    for name in ("exact_match", "token_f1", "rouge_l"):
        np.testing.assert_allclose(served_rows[name], local_rows[name], atol=1e-12)
        assert served["metrics"][name] == local["metrics"][name]
    assert served_rows["exact_match"].iloc[::2].eq(1.0).all()  # the echoed rows: the served model said the same
    identity = json.loads((ws.evals / served["eval_id"] / "config.json").read_text())["model_identity"]
    assert identity == {"kind": "endpoint", "api": "completions", "url": f"{server.url}/v1", "model": "qa"}
    assert KEY not in (ws.evals / served["eval_id"] / "config.json").read_text()
    assert chat["n"] == len(qa["test"]) and set(chat["metrics"]) >= {"exact_match", "token_f1", "rouge_l"}


def test_models_of_another_task_and_bad_endpoints_are_refused(qa):
    ws = qa["ws"]
    frame = pd.DataFrame(generate_qa(seed=0, n=12))[["context", "phi_spans"]]
    import_dataset(ws, frame, "ner", ColumnMapping(text="context", spans="phi_spans"), split=(0.5, 0.1, 0.4))
    with pytest.raises(MedcoreError, match="endpoint is evaluated on generation"):
        evaluate_model("openai:http://127.0.0.1:9/v1#qa", ws, "ner")
    with pytest.raises(MedcoreError, match=r"'openai:nowhere' is not of the form openai:URL#MODEL"):
        evaluate_model("openai:nowhere", ws, "qa")
    with pytest.raises(MedcoreError, match=r"Cannot reach the endpoint http://127.0.0.1:9/v1"):
        evaluate_model("openai:http://127.0.0.1:9#qa", ws, "qa", max_new_tokens=2)
    with pytest.raises(MedcoreError, match=r"is a causal-lm run and dataset 'ner' is a token-classification dataset"):
        evaluate_model(qa["run"].run_id, ws, "ner")
    with pytest.raises(MedcoreError, match="max_new_tokens 300 leaves no room for the prompt in max_length 256"):
        evaluate_model(qa["run"].run_id, ws, "qa", max_new_tokens=300)


def test_generation_models_compare_side_by_side_on_their_saved_rows(qa):
    """--compare on a generation dataset: the differences are those of the two saved evals, McNemar reads exact match,
    the disagreeing rows are those whose token F1 differs; numbers only, no answer text in the comparison."""
    from medcore.evaluate.compare import compare_models

    ws = qa["ws"]
    out = compare_models(qa["run"].run_id, ["tiny-llama"], ws, "qa", max_new_tokens=MAX_NEW, resamples=200)
    comparison = out["comparison"]
    assert comparison["task"] == "causal-lm" and comparison["n"] == len(qa["test"])
    reference, model = (pd.read_parquet(ws.evals / eval_id / PREDICTIONS) for eval_id in out["models"])
    other = comparison["models"]["tiny-llama"]
    for name in ("exact_match", "token_f1", "rouge_l", "embedding_similarity"):
        diff = other["differences"][name]
        assert diff["value"] == pytest.approx(model[name].mean() - reference[name].mean())
        assert diff["ci_low"] <= diff["value"] <= diff["ci_high"]
    right_ref, right_model = reference["exact_match"] == 1, model["exact_match"] == 1
    assert other["mcnemar"]["b"] == int((right_ref & ~right_model).sum())
    assert other["mcnemar"]["c"] == int((~right_ref & right_model).sum())
    differs = np.flatnonzero(~np.isclose(reference["token_f1"], model["token_f1"]))
    assert [r["row"] for r in other["disagreements"]["rows"]] == differs.tolist()
    saved = (ws.evals / out["models"][0] / "comparison.json").read_text()
    assert not [a for a in qa["answers"] if len(a) > 8 and a in saved]


def test_generated_answers_of_two_models_go_to_a_blinded_review(qa):
    """Two generation evals kept their answers: the review's items are the rows where the answers differ, with the
    question as the models were asked it, each model's answer and the reference answer; evals that kept no answers
    are refused with how to keep them."""
    from medcore.evaluate.review import close_review, read_items
    from medcore.evaluate.review_sources import ReviewConfig, create_review_from_evals
    from medcore.evaluate.review_summary import unblind

    ws = qa["ws"]
    options = {"batch_size": 4, "resamples": 100, "max_new_tokens": MAX_NEW}
    tuned = evaluate_model(qa["run"].run_id, ws, "qa", keep_outputs=True, **options)["eval_id"]
    base = evaluate_model("tiny-llama", ws, "qa", keep_outputs=True, **options)["eval_id"]
    answers = {e: pd.read_parquet(ws.evals / e / OUTPUTS).set_index("row")["output"] for e in (tuned, base)}
    differ = [r for r in answers[tuned].index if answers[tuned][r].split() != answers[base][r].split()]
    assert differ  # a random adapter answers differently from its base
    review = create_review_from_evals(ws, tuned, base, ReviewConfig(seed=1, max_items=1000, name="qa answers"))
    items = read_items(review)
    assert len(items) == len(differ)
    close_review(review)
    assert sorted(m["row"] for m in unblind(review)) == sorted(differ)
    assert all(item["prompt"].rstrip().endswith("Answer:") for item in items)  # the question as it was asked
    plain = evaluate_model(qa["run"].run_id, ws, "qa", **options)["eval_id"]  # no --keep-outputs
    with pytest.raises(MedcoreError, match="kept no generated answers.*--keep-outputs"):
        create_review_from_evals(ws, plain, base)
