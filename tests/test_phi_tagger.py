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
    """A tagger trained on 240 generated notes (2 ranks under torchrun), with Python-level networking refused."""
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

    def refuse(*args, **kwargs):
        raise AssertionError("outbound connection attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
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
    record["config"]["encoder_layers"] = 3
    (shallow / TAGGER_RECORD).write_text(json.dumps(record))
    load_tagger.cache_clear()
    assert len(load_tagger(shallow).model.base_model.encoder.layer) == 3
    assert len(load_tagger(folder).model.base_model.encoder.layer) == 6


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
