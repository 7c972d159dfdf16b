"""Tokenising, packing, length grouping, the per-rank batch plan, and the eval metrics."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from medcore.models import load_tokenizer
from medcore.train.data import (
    IGNORE,
    BatchPlan,
    Unit,
    collate,
    eval_batches,
    group_by_length,
    pack_units,
    tokenize_instructions,
)
from medcore.train.metrics import classification_counts, improved, score_classification, warmup_cosine


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def random_units(n: int, seed: int = 0, lo: int = 3, hi: int = 40) -> list[Unit]:
    rng = random.Random(seed)
    units = []
    for _ in range(n):
        length = rng.randint(lo, hi)
        ids = [rng.randint(5, 999) for _ in range(length)]
        cut = rng.randint(1, length - 1)
        units.append(Unit(ids, [IGNORE] * cut + ids[cut:], targets=length - cut))
    return units


def test_prompt_tokens_are_masked_and_the_answer_is_kept(tokenizer):
    units = tokenize_instructions(
        ["What medication was started?"], ["aspirin"], ["Chest pain. " * 40], tokenizer, max_length=32
    )
    unit = units[0]
    assert unit.length == 32  # the long note excerpt was cut from its start
    answer = tokenizer("aspirin", add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert unit.input_ids[-len(answer) :] == answer
    assert unit.labels[-len(answer) :] == answer and set(unit.labels[: -len(answer)]) == {IGNORE}
    assert unit.targets == len(answer)
    assert tokenizer.decode(unit.input_ids).rstrip().endswith("answer : aspirin [SEP]")


def test_packing_keeps_every_token_within_max_length():
    units = random_units(200)
    rows = pack_units(units, max_length=64)
    assert all(r.length <= 64 for r in rows)
    assert sum(r.length for r in rows) == sum(u.length for u in units)
    assert sum(r.targets for r in rows) == sum(u.targets for u in units)
    assert len(rows) < len(units) / 2  # several examples share each row
    # Positions restart at 0 for each example, and no example's first token is a target.
    for row in rows:
        starts = [i for i, p in enumerate(row.position_ids) if p == 0]
        assert starts[0] == 0 and all(row.labels[i] == IGNORE for i in starts)


def test_packed_collate_gives_padding_its_own_segment():
    rows = pack_units(random_units(30, seed=1), max_length=50)
    batch = collate(rows[-3:], pad_id=0, task="causal-lm")
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    for r, row in enumerate(rows[-3:]):
        pad = batch["position_ids"][r, row.length :]
        assert pad.tolist() == list(range(len(pad)))
        assert (batch["labels"][r, row.length :] == IGNORE).all()
    assert batch["tokens"] == sum(r.length for r in rows[-3:])


def test_length_grouping_reduces_padding():
    units = random_units(400, seed=2, lo=3, hi=120)
    lengths = [u.length for u in units]
    grouped = group_by_length(lengths, 8, np.random.default_rng(0))
    shuffled = [list(range(i, min(i + 8, 400))) for i in range(0, 400, 8)]
    padded = lambda batches: sum(max(lengths[i] for i in b) * len(b) for b in batches)  # noqa: E731
    assert sorted(i for b in grouped for i in b) == list(range(400))
    assert padded(grouped) < 0.7 * padded(shuffled)


def test_plan_is_deterministic_disjoint_and_covers_each_epoch():
    units = random_units(100, seed=3)
    world, accum, micro = 2, 3, 4
    plan_a, plan_b = BatchPlan(units, micro, accum, world, seed=7), BatchPlan(units, micro, accum, world, seed=7)
    assert plan_a.steps_per_epoch == (100 // micro) // (accum * world)
    seen = []
    for step in range(plan_a.steps_per_epoch):
        assert plan_a.step_batches(step) == plan_b.step_batches(step)
        seen += [i for b in plan_a.step_batches(step) for i in b]
    assert len(seen) == len(set(seen))  # no unit twice within an epoch
    next_epoch = plan_a.step_batches(plan_a.steps_per_epoch)
    assert next_epoch != plan_a.step_batches(0)  # reshuffled per epoch
    batches, total = plan_a.rank_batches(0, rank=1, pad_id=0, task="causal-lm")
    assert len(batches) == accum
    assert total == sum(units[i].targets for b in plan_a.step_batches(0) for i in b)


def test_eval_batches_give_every_rank_the_same_count():
    units = random_units(23, seed=4)
    per_rank = [eval_batches(units, 4, 3, r, 0, "causal-lm") for r in range(3)]
    assert len({len(b) for b in per_rank}) == 1
    counted = sum(b["samples"] for rank in per_rank for b, real in rank if real)
    assert counted == 23


def test_classification_scores_match_scikit_learn():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=gen)
    labels = torch.randint(0, 4, (50,), generator=gen)
    halves = [classification_counts(logits[:25], labels[:25], 4), classification_counts(logits[25:], labels[25:], 4)]
    summed = [a + b for a, b in zip(*halves, strict=True)]
    scores = score_classification(summed, 4, 50)
    preds = logits.argmax(-1).numpy()
    assert scores["eval_accuracy"] == pytest.approx(accuracy_score(labels.numpy(), preds))
    assert scores["eval_f1"] == pytest.approx(f1_score(labels.numpy(), preds, average="macro"))


def test_warmup_then_cosine_to_zero():
    f = warmup_cosine(4, 20)
    values = [f(s) for s in range(21)]
    assert values[:4] == sorted(values[:4]) and values[3] < 1.0
    assert values[4] == pytest.approx(1.0) and values[20] == pytest.approx(0.0)
    assert values[4:] == sorted(values[4:], reverse=True)


def test_early_stopping_direction_per_metric():
    assert improved("eval_loss", 0.9, None) and improved("eval_loss", 0.9, 1.0) and not improved("eval_loss", 1.0, 1.0)
    assert improved("eval_f1", 0.8, 0.7) and not improved("eval_accuracy", 0.7, 0.8)
    assert not improved("eval_perplexity", 12.0, 11.0)
