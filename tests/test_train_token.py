"""Token classification: char spans <-> BIO word pieces over windows, span validation, and a one-rank LoRA run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, load_split
from medcore.data.validate import validate_dataset
from medcore.models import load_tokenizer, minilm_path
from medcore.rundir import RunDir
from medcore.token_windows import (
    TAG_FILE,
    CharSpan,
    TagFile,
    bio_tags,
    decode_spans,
    encode_windows,
    predict_spans,
    read_tag_file,
    window_labels,
)
from medcore.train import load_spec, prepare_run_dir, torchrun_command, validate_spec
from medcore.train.data import IGNORE, collate, eval_batches, load_units, tokenize_spans
from medcore.train.launch import free_port
from medcore.train.metrics import score_token_phi, token_phi_counts
from medcore.workspace import get_workspace

TAGS = bio_tags(["DATE", "NAME"])
TAG_INDEX = {tag: i for i, tag in enumerate(TAGS)}
SURNAMES = ["Okonkwo-Smithson", "Abernathy", "Lee", "Fitzgerald", "Nakamura", "Oyelaran", "Brown", "Kowalczyk"]
FILLER = ["Patient seen on the ward.", "Bloods sent.", "Plan discussed with family.", "Obs stable overnight."]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as each rank under torchrun: on 2 busy cores, two threads make a step ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def one_hot(windows, spans) -> list[np.ndarray]:
    """Perfect model output for `spans`: probability 1 on each piece's gold tag (O on special tokens)."""
    probs = []
    for window in windows:
        labels = window_labels(window, spans, TAG_INDEX)
        p = np.zeros((len(labels), len(TAGS)))
        p[np.arange(len(labels)), [label if label != IGNORE else 0 for label in labels]] = 1.0
        probs.append(p)
    return probs


def note_with_spans(rng: random.Random, sentences: int) -> tuple[str, list[CharSpan]]:
    """A note of filler, doctor names (NAME) and dates (DATE), with the gold spans of the names and dates."""
    text, spans = "", []
    for _ in range(sentences):
        choice = rng.random()
        if choice < 0.4:
            text += "Reviewed by Dr. "
            name = rng.choice(SURNAMES)
            spans.append(CharSpan(len(text), len(text) + len(name), "NAME"))
            text += name + ". "
        elif choice < 0.6:
            text += "Admitted on "
            date = f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/20{rng.randint(10, 25)}"
            spans.append(CharSpan(len(text), len(text) + len(date), "DATE"))
            text += date + ". "
        else:
            text += rng.choice(FILLER) + " "
    return text, spans


def test_bio_tags_put_outside_first():
    assert TAGS == ["O", "B-DATE", "I-DATE", "B-NAME", "I-NAME"]


def test_short_text_is_one_window_with_special_tokens_unmapped(tokenizer):
    (window,) = encode_windows(tokenizer, "Seen by Dr. Lee.", max_length=32, stride=8)
    assert window.offsets[0] is None and window.offsets[-1] is None
    assert window.owned == (1, len(window.input_ids) - 1)
    labels = window_labels(window, [{"start": 12, "end": 15, "type": "NAME"}], TAG_INDEX)
    assert labels[0] == labels[-1] == IGNORE
    assert [TAGS[x] for x in labels[1:-1]] == ["O", "O", "O", "O", "B-NAME", "O"]


def test_windows_overlap_and_each_piece_is_owned_once(tokenizer):
    text, _ = note_with_spans(random.Random(0), 30)
    whole = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    windows = encode_windows(tokenizer, text, max_length=24, stride=6)
    assert len(windows) > 5 and all(len(w.input_ids) <= 24 for w in windows)
    owned = [w.offsets[i] for w in windows for i in range(*w.owned)]
    assert owned == [tuple(o) for o in whole]  # every piece once, in order
    for w in windows:
        pieces = [o for o in w.offsets if o is not None]
        assert pieces == [tuple(o) for o in whole[w.token_start : w.token_start + len(pieces)]]


def test_a_span_across_a_window_border_is_found_once_and_whole(tokenizer):
    name = "Okonkwo-Smithson"  # 6 word pieces: ok ##on ##k ##wo - smith ##son
    for pad in range(12):  # slide the name over the border of the first window, one word at a time
        text = "seen " * pad + f"by Dr. {name} today on the ward with the family present."
        start = text.index(name)
        spans = [CharSpan(start, start + len(name), "NAME")]
        windows = encode_windows(tokenizer, text, max_length=12, stride=4)
        assert len(windows) > 1
        assert decode_spans(text, windows, one_hot(windows, spans), TAGS, threshold=0.5) == spans, pad


def test_round_trip_spans_labels_decode(tokenizer):
    rng = random.Random(1)
    for _ in range(20):
        text, spans = note_with_spans(rng, rng.randint(1, 12))
        for max_length, stride in ((16, 4), (64, 16)):
            windows = encode_windows(tokenizer, text, max_length, stride)
            assert decode_spans(text, windows, one_hot(windows, spans), TAGS, threshold=0.5) == spans


def test_decode_grows_to_whole_words_merges_across_b_and_keeps_the_best_score(tokenizer):
    text = "MRN12345 for John Smith."
    (window,) = encode_windows(tokenizer, text, max_length=32, stride=8)
    pieces = tokenizer.convert_ids_to_tokens(window.input_ids)
    probs = np.zeros((len(pieces), len(TAGS)))
    probs[:, 0] = 1.0
    p12 = pieces.index("##12")  # only a piece inside "MRN12345": the whole word is the span
    probs[p12] = [0.3, 0.0, 0.0, 0.7, 0.0]
    john, smith = pieces.index("john"), pieces.index("smith")
    probs[john] = [0.2, 0.1, 0.0, 0.7, 0.0]  # B-NAME, with a little DATE
    probs[smith] = [0.4, 0.0, 0.0, 0.6, 0.0]  # B-NAME again: still one span
    assert decode_spans(text, [window], [probs], TAGS, threshold=0.5) == [
        CharSpan(0, 8, "NAME", pytest.approx(0.7)),
        CharSpan(13, 23, "NAME", pytest.approx(0.8)),
    ]
    assert decode_spans(text, [window], [probs], TAGS, threshold=0.65) == [
        CharSpan(0, 8, "NAME", pytest.approx(0.7)),
        CharSpan(13, 17, "NAME", pytest.approx(0.8)),
    ]


def test_decode_never_cuts_a_word_with_accents(tokenizer):
    text = "Seen by Dr. Müllerová today."
    (window,) = encode_windows(tokenizer, text, max_length=32, stride=8)
    pieces = tokenizer.convert_ids_to_tokens(window.input_ids)
    probs = np.zeros((len(pieces), len(TAGS)))
    probs[:, 0] = 1.0
    probs[[i for i, p in enumerate(pieces) if p.startswith("##")][-1]] = [0.1, 0.0, 0.0, 0.0, 0.9]  # a last piece
    assert decode_spans(text, [window], [probs], TAGS, threshold=0.5) == [CharSpan(12, 21, "NAME", 0.9)]


def test_units_label_owned_pieces_and_collate_pads_with_ignore(tokenizer):
    text, spans = note_with_spans(random.Random(2), 8)
    units = tokenize_spans([text, "Bloods sent."], [spans, []], TAGS, tokenizer, max_length=16)
    windows = encode_windows(tokenizer, text, 16, 4)
    assert len(units) == len(windows) + 1
    # Every piece of the note is labelled exactly once over its windows.
    assert sum(u.targets for u in units[:-1]) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    batch = collate(units[-2:], tokenizer.pad_token_id, "token-classification")
    short = units[-1].length
    assert batch["labels"].shape == batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][1, short:].sum() == 0 and (batch["labels"][1, short:] == IGNORE).all()
    assert batch["targets"] == units[-2].targets + units[-1].targets and "position_ids" not in batch


def test_span_validation_reports_rows_not_text():
    secret = "Zebediah Quarrington"
    frame = pd.DataFrame(
        {
            "note": [f"Seen by {secret}.", "Nothing here.", f"{secret} again.", "Short."],
            "ents": [
                [{"start": 8, "end": 28, "type": "NAME"}],
                [],
                [{"start": 0, "end": 99, "type": "NAME"}],
                f"[{secret}]",
            ],
        }
    )
    report = validate_dataset(frame, ColumnMapping(text="note", spans="ents"))
    assert report.task == "token-classification" and not report.ok
    assert [(p.row, p.column) for p in report.row_problems] == [(3, "ents"), (4, "ents")]
    everything = report.model_dump_json()
    assert secret not in everything and "Zebediah" not in everything
    good = validate_dataset(frame.iloc[:2], ColumnMapping(text="note", spans="ents"))
    assert good.ok and good.stats.label_counts == {"NAME": 1}


def test_import_keeps_spans_as_a_list_of_structs(workspace, tmp_path):
    import pyarrow.parquet as pq

    upload = tmp_path / "ner.jsonl"
    upload.write_text("".join(json.dumps(row) + "\n" for row in ner_frame(20, seed=3).to_dict("records")))
    manifest = import_dataset(workspace, upload, "ner", ColumnMapping(text="note", spans="ents"))
    assert manifest.task == "token-classification" and manifest.label_set == ["DATE", "NAME"]
    kind = pq.read_schema(workspace.datasets / "ner" / "train.parquet").field("ents").type
    assert str(kind) == "list<element: struct<start: int64, end: int64, type: string>>"
    train = load_split(workspace, "ner", "train")  # spans read back as arrays of dicts: still valid
    assert len(train) and validate_dataset(train, manifest.mapping).ok


# --- a one-rank LoRA run on MiniLM -------------------------------------------------------------------------------


def ner_frame(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text, spans = note_with_spans(rng, rng.randint(1, 3))
        rows.append({"note": text, "ents": [{"start": s.start, "end": s.end, "type": s.type} for s in spans]})
    return pd.DataFrame(rows)


STEPS = 24
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def make_spec(**overrides):
    return load_spec(
        {
            "dataset": "ner",
            "task": "token-classification",
            "model": "minilm",
            "lr": 5e-3,
            "max_steps": STEPS,
            "micro_batch": 8,
            "max_length": 32,
            "eval_interval": STEPS // 2,
            "warmup_ratio": 0.0,
            "device": "cpu",
            "precision": "fp32",
            "early_stopping_metric": "eval_f1",
            "seed": 7,
            # Synthetic notes. A PHI tagger learns from spans over the original text, which redaction would
            # move, so its training data is synthetic or de-identified by other means: an audited override.
            "allow_unredacted": True,
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One completed `python -m medcore.train RUN_DIR` run, in this process (a world of one)."""
    from medcore.train.__main__ import main

    root = tmp_path_factory.mktemp("token") / "workspace"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDCORE_HOME", str(root))
        values = ("0", "1", "0", "127.0.0.1", str(free_port()))
        for key, value in zip(RANK_ENV, values, strict=True):
            mp.setenv(key, value)  # restored afterwards: the trainer would otherwise set them for the whole session
        ws = get_workspace(root)
        mapping = ColumnMapping(text="note", spans="ents")
        import_dataset(ws, ner_frame(60, seed=0), "ner", mapping, split=(0.7, 0.15, 0.15))
        spec = make_spec(export_merged=True)
        validate_spec(spec, ws)
        rd = prepare_run_dir(spec, ws)
        try:
            assert main([str(rd.path)]) == 0, rd.status.read_text()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        yield ws, spec, rd


def reload_adapter(rd: RunDir):
    """The run's adapter on a fresh base model, in plain transformers + peft (as an inference service would)."""
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification

    tag_file = read_tag_file(rd.adapter)
    base = AutoModelForTokenClassification.from_pretrained(minilm_path(), id2label=dict(enumerate(tag_file.tags)))
    return PeftModel.from_pretrained(base, rd.adapter).eval(), tag_file


def evaluate_reloaded(model, ws, spec) -> dict[str, float]:
    """eval_loss and the token PHI scores of `model` over the whole validation split, in one process."""
    tokenizer = load_tokenizer("minilm")
    units = load_units(spec, ws, tokenizer, "validation", TAGS)
    loss = targets = 0.0
    counts = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for batch, _ in eval_batches(units, spec.micro_batch, 1, 0, tokenizer.pad_token_id, spec.task):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            loss += torch.nn.functional.cross_entropy(
                logits.reshape(-1, len(TAGS)), batch["labels"].reshape(-1), ignore_index=IGNORE, reduction="sum"
            ).item()
            targets += batch["targets"]
            counts = [a + b for a, b in zip(counts, token_phi_counts(logits, batch["labels"]), strict=True)]
    return {"eval_loss": loss / targets, **score_token_phi(counts)}


def last_eval(rd: RunDir) -> dict:
    return [r for r in map(json.loads, rd.metrics.read_text().splitlines()) if "eval_loss" in r][-1]


def test_loss_falls_and_token_f1_is_reported(trained):
    _, _, rd = trained
    records = [json.loads(line) for line in rd.metrics.read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == STEPS and np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    evals = [r for r in records if "eval_loss" in r]
    assert len(evals) == 2 and {"eval_precision", "eval_recall", "eval_f1"} <= set(evals[-1])
    assert evals[-1]["eval_f1"] > 0.8
    assert json.loads(rd.status.read_text())["state"] == "completed"


def test_adapter_reloads_in_plain_peft_with_the_same_predictions(trained):
    from safetensors.torch import load_file

    ws, spec, rd = trained
    assert (rd.adapter / TAG_FILE).exists() and read_tag_file(rd.adapter) == TagFile(TAGS, 32, 8)
    weights = load_file(rd.adapter / "adapter_model.safetensors")
    assert any(".classifier." in k for k in weights) and any("lora_A" in k for k in weights)
    model, tag_file = reload_adapter(rd)
    final, again = last_eval(rd), evaluate_reloaded(model, ws, spec)
    assert again["eval_loss"] == pytest.approx(final["eval_loss"], rel=1e-5)
    assert {k: again[k] for k in ("eval_precision", "eval_recall", "eval_f1")} == {
        k: pytest.approx(final[k], abs=1e-6) for k in ("eval_precision", "eval_recall", "eval_f1")
    }

    from transformers import AutoModelForTokenClassification

    merged = AutoModelForTokenClassification.from_pretrained(rd.path / "merged").eval()
    assert read_tag_file(rd.path / "merged") == tag_file and merged.config.id2label == dict(enumerate(TAGS))
    assert evaluate_reloaded(merged, ws, spec)["eval_loss"] == pytest.approx(final["eval_loss"], rel=1e-4)

    # The whole inference path: the validation notes' names and dates come back as spans.
    frame = load_split(ws, "ner", "validation")
    tokenizer = load_tokenizer("minilm")
    found = gold = 0
    for note, ents in zip(frame["note"], frame["ents"], strict=True):
        predicted = {(s.start, s.end, s.type) for s in predict_spans(model, tokenizer, note, tag_file, 0.5)}
        expected = {(int(e["start"]), int(e["end"]), e["type"]) for e in ents}
        found, gold = found + len(predicted & expected), gold + len(expected)
    assert found >= 0.8 * gold


def test_memory_estimate_counts_the_token_head(trained):
    from medcore.models import load_model
    from medcore.train.lora import apply_lora
    from medcore.train.memory import count_parameters
    from medcore.train.presets import load_lora_preset

    ws, spec, _ = trained
    total, trainable, _ = count_parameters(spec, ws)
    model = load_model("minilm", spec.task, id2label=dict(enumerate(TAGS)))
    real = apply_lora(model, load_lora_preset(spec.lora), spec.task, "minilm")
    assert (total, trainable) == (
        sum(p.numel() for p in real.parameters()),
        sum(p.numel() for p in real.parameters() if p.requires_grad),
    )


@pytest.mark.slow
def test_two_ranks_score_the_whole_validation_split_exactly(trained, tmp_path):
    """Under torchrun (2 gloo ranks, ZeRO-1) the eval counts are summed over ranks: the same scores as one process."""
    ws, _, _ = trained
    spec = make_spec(nproc_per_node=2, max_steps=4, eval_interval=0, micro_batch=4, name="token-2ranks")
    rd = prepare_run_dir(spec, ws)
    env = {k: v for k, v in os.environ.items() if k not in RANK_ENV} | {"OMP_NUM_THREADS": "1"}
    with open(rd.log, "ab") as log:
        code = subprocess.run(torchrun_command(spec, rd), stdout=log, stderr=subprocess.STDOUT, env=env, timeout=300)
    assert code.returncode == 0, rd.log.read_text()[-3000:]
    model, _ = reload_adapter(rd)
    final, again = last_eval(rd), evaluate_reloaded(model, ws, spec)
    assert again["eval_loss"] == pytest.approx(final["eval_loss"], rel=1e-5)
    assert again["eval_f1"] == pytest.approx(final["eval_f1"], abs=1e-6)
