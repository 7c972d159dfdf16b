"""The learned PHI tagger: trained in the test with MedCore's own trainer on generated notes, loaded offline."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from medcore.demo.registers import generate_register_notes
from medcore.phi.config import RedactionConfig
from medcore.phi.detect import detect_texts
from medcore.phi.scoring import PhiScore
from medcore.phi.tagger import TAGGER_RECORD, load_tagger, tagger_record
from medcore.phi.tagger_corpus import TAGGER_TYPES
from medcore.train.phi_tagger import TaggerTrainConfig, train_tagger

GUARD = Path(__file__).parent / "net_guard"
HELD_OUT_SEED = 99  # generated notes of a seed the tagger never saw


@pytest.fixture(scope="module")
def small_tagger(tmp_path_factory):
    """A tagger trained on 240 generated notes (2 ranks under torchrun), with Python-level networking refused.

    It keeps the encoder's first 3 layers (the shipped taggers keep 6): half the training time, and still about 0.2
    above the rules' recall on held-out notes."""
    root = tmp_path_factory.mktemp("tagger")
    net_log = root / "connections.log"
    patch = pytest.MonkeyPatch()
    patch.setenv("PYTHONPATH", os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]))
    patch.setenv("MEDCORE_NET_GUARD_LOG", str(net_log))
    try:
        config = TaggerTrainConfig(
            out=root / "tagger",
            register_notes=240,
            register_seed=11,
            epochs=4,
            lr=5e-3,
            max_length=128,
            micro_batch=8,
            lora_targets="auto",  # query/key/value: learns from 240 notes in CI time
            encoder_layers=3,
        )
        record = train_tagger(config, log=lambda message: None)
    finally:
        patch.undo()
    return root / "tagger", record, net_log


def token_scores(notes: list[dict], config: RedactionConfig) -> PhiScore:
    score = PhiScore()
    texts = [n["text"] for n in notes]
    for note, spans in zip(notes, detect_texts(texts, config), strict=True):
        gold = [(s["start"], s["end"], s["type"]) for s in note["phi_spans"] if s["type"] in TAGGER_TYPES]
        if any(s["type"] == "AGE" for s in note["phi_spans"]):
            gold = [
                g for g in gold if g[2] != "AGE" or int("".join(filter(str.isdigit, note["text"][g[0] : g[1]]))) > 89
            ]
        score.add(note["text"], gold, [(s.start, s.end, s.type) for s in spans])
    return score


@pytest.mark.slow
def test_training_makes_no_outbound_connection(small_tagger):
    _, _, net_log = small_tagger
    assert not net_log.exists(), net_log.read_text()


@pytest.mark.slow
def test_tagger_beats_the_rules_alone_on_held_out_generated_notes(small_tagger):
    folder, _, _ = small_tagger
    notes = generate_register_notes(seed=HELD_OUT_SEED, n=60)
    rules = token_scores(notes, RedactionConfig(tagger=None))
    ensemble = token_scores(notes, RedactionConfig(tagger=folder, threshold=0.5))
    assert ensemble.recall > rules.recall + 0.1, (rules.summary(), ensemble.summary())
    f1 = lambda s: 2 * s.recall * s.precision / (s.recall + s.precision)  # noqa: E731
    assert f1(ensemble) > f1(rules)


@pytest.mark.slow
def test_the_package_is_a_small_adapter_with_its_training_record(small_tagger):
    folder, record, _ = small_tagger
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["adapter_config.json", "adapter_model.safetensors", "token_tags.json", TAGGER_RECORD])
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5_000_000  # adapter + head, no copy of the encoder
    assert tagger_record(folder) == record
    assert record["corpus"] == [{"source": "register", "notes": 240, "seed": 11}]
    assert record["config"]["seed"] == 0 and record["final_eval"]["eval_f1"] > 0.8
    assert "git_revision" in record and record["spec"]["task"] == "token-classification"


@pytest.mark.slow
def test_loading_and_tagging_open_no_socket(small_tagger, monkeypatch):
    folder, _, _ = small_tagger
    monkeypatch.setattr(socket.socket, "connect", refuse_connection)
    monkeypatch.setattr(socket, "create_connection", refuse_connection)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_connection)
    load_tagger.cache_clear()
    tagger = load_tagger(folder)
    (spans,) = tagger.tag_texts(["SPOKE WITH DR JONES RE PLAN. WIFE MARY CALLED."], threshold=0.5)
    assert all(s.type in TAGGER_TYPES or s.type == "YEAR" for s in spans)


def test_a_missing_tagger_says_how_to_build_one(tmp_path):
    from medcore.errors import MedcoreError

    with pytest.raises(MedcoreError, match="medcore phi train-tagger"):
        load_tagger(tmp_path / "nowhere")


def test_the_inference_dtype_follows_the_cpu_unless_asked(monkeypatch):
    import torch

    from medcore.errors import MedcoreError
    from medcore.phi.tagger import DTYPE_ENV, inference_dtype

    monkeypatch.setenv(DTYPE_ENV, "float32")
    assert inference_dtype() is torch.float32
    monkeypatch.setenv(DTYPE_ENV, "bfloat16")
    assert inference_dtype() is torch.bfloat16
    monkeypatch.setenv(DTYPE_ENV, "auto")
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert inference_dtype() is (torch.bfloat16 if native else torch.float32)
    monkeypatch.setenv(DTYPE_ENV, "int4")
    with pytest.raises(MedcoreError, match="auto, float32 or bfloat16"):
        inference_dtype()


def test_a_shallow_encoder_is_the_packaged_encoders_first_layers(tmp_path):
    import torch
    from transformers import AutoModel

    from medcore.models import minilm_path
    from medcore.train.phi_tagger import shallow_encoder

    folder = shallow_encoder(tmp_path / "minilm-2", 2)
    shallow, full = AutoModel.from_pretrained(folder), AutoModel.from_pretrained(minilm_path())
    assert shallow.config.num_hidden_layers == 2 and len(shallow.encoder.layer) == 2
    for kept, original in zip(shallow.encoder.layer, full.encoder.layer[:2], strict=True):
        for (name, a), (_, b) in zip(kept.state_dict().items(), original.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    assert (folder / "tokenizer.json").exists() or (folder / "vocab.txt").exists()


@pytest.mark.slow
def test_a_tagger_loads_at_the_depth_its_record_gives(small_tagger, tmp_path):
    import json
    import shutil

    folder, _, _ = small_tagger
    shallow = tmp_path / "tagger"
    shutil.copytree(folder, shallow)
    record = json.loads((shallow / TAGGER_RECORD).read_text())
    assert record["config"]["encoder_layers"] == 3  # as the fixture trained it
    record["config"]["encoder_layers"] = 2
    (shallow / TAGGER_RECORD).write_text(json.dumps(record))
    load_tagger.cache_clear()
    assert len(load_tagger(shallow).model.base_model.encoder.layer) == 2
    assert len(load_tagger(folder).model.base_model.encoder.layer) == 3


def test_development_notes_can_weigh_more_than_generated_ones(tmp_path):
    import json

    from medcore.train.phi_tagger import build_corpus

    notes = tmp_path / "dev.jsonl"
    rows = [
        {"id": i, "patient": p, "text": "Seen by Dr. Hale.", "spans": [{"start": 12, "end": 16, "type": "HCPName"}]}
        for i, p in enumerate(["1", "1", "2"])
    ]
    notes.write_text("\n".join(json.dumps(r) for r in rows))
    records, sources = build_corpus(
        TaggerTrainConfig(dev_notes=notes, register_notes=0, dev_repeat=3, exclude_patients=["2"])
    )
    assert len(records) == 6 and all(r["patient"] == "physionet-1" for r in records)
    assert sources[0]["notes"] == 2 and sources[0]["copies"] == 3
    records[0]["spans"].append({"start": 0, "end": 4, "type": "NAME"})
    assert len(records[1]["spans"]) == 1  # copies are separate records


@pytest.fixture(scope="module")
def small_student(small_tagger, tmp_path_factory):
    """A student distilled from the small tagger on its corpus plus 60 new generated notes, sockets refused."""
    from medcore.train.phi_student import StudentTrainConfig, train_student

    teacher, _, _ = small_tagger
    out = tmp_path_factory.mktemp("student") / "student"
    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", refuse_connection)
    patch.setattr(socket, "create_connection", refuse_connection)
    try:
        record = train_student(
            StudentTrainConfig(
                teacher=teacher,
                out=out,
                register_notes=240,
                register_seed=11,
                extra_notes=60,
                epochs=8,
                lr=1e-2,
                batch=8,
                width=64,
                rank=8,
                threads=1,  # a 64-wide LSTM syncs threads at every step: one is faster
            ),
            log=lambda message: None,
        )
    finally:
        patch.undo()
    return out, record


def refuse_connection(*args, **kwargs):
    raise AssertionError("outbound connection attempted")


@pytest.mark.slow
def test_a_distilled_student_beats_the_rules_and_follows_its_teacher(small_tagger, small_student):
    teacher, _, _ = small_tagger
    student, _ = small_student
    notes = generate_register_notes(seed=HELD_OUT_SEED, n=60)
    rules = token_scores(notes, RedactionConfig(tagger=None))
    taught = token_scores(notes, RedactionConfig(tagger=teacher, threshold=0.5))
    distilled = token_scores(notes, RedactionConfig(tagger=student, threshold=0.5))
    assert distilled.recall > rules.recall + 0.1, (rules.summary(), distilled.summary())
    assert distilled.recall > taught.recall - 0.1, (taught.summary(), distilled.summary())
    assert distilled.precision > rules.precision - 0.1


@pytest.mark.slow
def test_the_student_ships_as_its_own_small_weights_with_its_teacher_named(small_tagger, small_student):
    from safetensors.torch import load_file

    from medcore.fileio import sha256_files
    from medcore.phi.tagger import STUDENT_WEIGHTS, describe_settings, has_tagger, is_student

    teacher, _, _ = small_tagger
    student, record = small_student
    assert sorted(p.name for p in student.iterdir()) == sorted([STUDENT_WEIGHTS, "token_tags.json", TAGGER_RECORD])
    assert sum(p.stat().st_size for p in student.iterdir()) < 2_000_000  # no copy of the encoder's embeddings
    assert has_tagger(student) and is_student(student) and not is_student(teacher)
    assert tagger_record(student) == record and record["kind"] == "student"
    assert record["teacher"]["sha256"] == sha256_files([teacher / "adapter_model.safetensors"])
    assert record["corpus"][-1] == {"source": "register", "notes": 60, "seed": 1000, "student_only": True}
    assert record["epoch_losses"][-1] < record["epoch_losses"][0]
    settings = describe_settings(RedactionConfig(tagger=student, threshold=0.4))
    assert settings["tagger"]["sha256"] == sha256_files([student / STUDENT_WEIGHTS])
    weights = load_file(student / STUDENT_WEIGHTS)
    assert {str(w.dtype) for w in weights.values()} == {"torch.bfloat16"}  # half the size of float32


@pytest.mark.slow
def test_a_student_loads_offline_and_refuses_to_teach(small_student, monkeypatch):
    import numpy as np

    from medcore.errors import MedcoreError
    from medcore.phi.student import StudentTagger
    from medcore.phi.tagger import STUDENT_WINDOWS_PER_BATCH
    from medcore.train.phi_student import StudentTrainConfig, train_student

    student, _ = small_student
    monkeypatch.setattr(socket.socket, "connect", refuse_connection)
    monkeypatch.setattr(socket, "create_connection", refuse_connection)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_connection)
    load_tagger.cache_clear()
    tagger = load_tagger(student)
    assert isinstance(tagger.model, StudentTagger) and not tagger.model.training
    (spans,) = tagger.tag_texts(["SPOKE WITH DR JONES RE PLAN. WIFE MARY CALLED."], threshold=0.5)
    assert all(s.type in TAGGER_TYPES for s in spans)
    # Many windows per pass (the LSTM's speed) give each note the probabilities it gets alone.
    texts = [note["text"] for note in generate_register_notes(seed=HELD_OUT_SEED, n=20)]
    assert tagger.windows_per_batch == STUDENT_WINDOWS_PER_BATCH > 16
    together = tagger.score_texts(texts)
    alone = [tagger.score_texts([text])[0] for text in texts]
    for (_, batched), (_, single) in zip(together, alone, strict=True):
        assert all(np.allclose(b, s, atol=0.02) for b, s in zip(batched, single, strict=True))
    with pytest.raises(MedcoreError, match="No encoder tagger"):
        train_student(StudentTrainConfig(teacher=student, out=student.parent / "again"))


@pytest.mark.slow
def test_a_student_whose_weights_do_not_match_its_record_is_refused(small_student, tmp_path):
    import json
    import shutil

    from medcore.errors import MedcoreError

    student, _ = small_student
    copy = tmp_path / "student"
    shutil.copytree(student, copy)
    record = json.loads((copy / TAGGER_RECORD).read_text())
    record["config"]["student"]["layers"] = 3
    (copy / TAGGER_RECORD).write_text(json.dumps(record))
    load_tagger.cache_clear()
    with pytest.raises(MedcoreError, match="does not match the shape"):
        load_tagger(copy)


def test_the_distillation_loss_weighs_gold_and_teacher_on_scored_pieces_only():
    import torch
    from torch.nn import functional as F

    from medcore.token_windows import IGNORE
    from medcore.train.phi_student import distillation_loss

    torch.manual_seed(0)
    logits = torch.randn(1, 4, 3)
    gold = torch.tensor([[IGNORE, 0, 2, IGNORE]])
    soft = torch.softmax(torch.randn(1, 4, 3), dim=-1)
    weight = torch.tensor([[1.0, 1.0, 3.0, 1.0]])
    log_p = F.log_softmax(logits, dim=-1)[0]
    hard = torch.stack([-log_p[1, 0], -log_p[2, 2]])
    taught = torch.stack([-(soft[0, 1] * log_p[1]).sum(), -(soft[0, 2] * log_p[2]).sum()])
    expected = ((hard + 0.5 * taught) * torch.tensor([1.0, 3.0])).sum() / 4.0
    assert torch.allclose(distillation_loss(logits, gold, soft, weight, 0.5), expected)
    changed = logits.clone()
    changed[0, 0] += 5.0  # an unscored piece (a special token) changes nothing
    assert torch.allclose(distillation_loss(changed, gold, soft, weight, 0.5), expected)


def test_train_tagger_rebuilds_the_encoder_tagger_then_its_student_on_the_same_corpus(tmp_path):
    from medcore.phi.config import ENCODER_TAGGER, FAST_TAGGER
    from medcore.train.phi_student import student_config_for
    from medcore.train.phi_tagger import parse_args

    config, student_out = parse_args(
        ["--register-notes", "50", "--seed", "3", "--synth-all", "--dev-notes", "x.jsonl"]
    )
    assert config.out == ENCODER_TAGGER and student_out == FAST_TAGGER
    assert parse_args(["--no-student"])[1] is None
    student = student_config_for(config.model_copy(update={"exclude_patients": ["7"]}), tmp_path / "student")
    assert student.teacher == ENCODER_TAGGER and student.out == tmp_path / "student"
    assert (student.register_notes, student.seed, student.synth_all, student.exclude_patients) == (50, 3, True, ["7"])
    assert student.dev_notes == Path("x.jsonl")
