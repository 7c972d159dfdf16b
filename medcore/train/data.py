"""Tokenise a workspace dataset, pack (causal LM), window (token classification) or length-group it; plan batches.

The plan is a pure function of (seed, epoch, world size, accumulation): every rank computes the same plan,
so resuming at step N needs no sampler state, and the loss can be normalised by the global count of
target tokens of a step without communication.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medcore.models import PAIR_TRUNCATION
from medcore.token_windows import IGNORE, as_span, bio_tags, default_stride, encode_windows, window_labels

GROUP_FACTOR = (
    50  # length grouping sorts within windows of 50 micro-batches: short and long notes rarely share a batch
)


@dataclass
class Unit:
    """One training row: a single example, or several packed examples (causal LM)."""

    input_ids: list[int]
    labels: list[int] | int  # token labels (causal LM, token classification) or class index (classification)
    position_ids: list[int] | None = None  # restart at 0 per packed example: attention stays within each example
    targets: int = 1  # tokens (or samples) the loss is averaged over
    token_type_ids: list[int] | None = None  # a pair's segments (0: first text, 1: second) if the tokenizer has them

    @property
    def length(self) -> int:
        return len(self.input_ids)


def tokenize_classification(
    texts: list[str],
    labels: list[str],
    label_set: list[str],
    tokenizer,
    max_length: int,
    pairs: list[str] | None = None,
) -> list[Unit]:
    """One unit per example; with `pairs`, each (text, pair) is encoded as the tokenizer's sentence pair
    ([CLS] text [SEP] pair [SEP] for BERT), with its segment ids when the tokenizer returns them."""
    index = {label: i for i, label in enumerate(label_set)}
    if pairs is None:
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)
        return [Unit(ids, index[str(label)]) for ids, label in zip(encoded["input_ids"], labels, strict=True)]
    encoded = tokenizer(list(texts), list(pairs), truncation=PAIR_TRUNCATION, max_length=max_length)
    types = encoded.get("token_type_ids") or [None] * len(labels)
    return [
        Unit(ids, index[str(label)], token_type_ids=segments)
        for ids, segments, label in zip(encoded["input_ids"], types, labels, strict=True)
    ]


def tokenize_spans(
    texts: list[str], spans: list[list], tag_names: list[str], tokenizer, max_length: int
) -> list[Unit]:
    """One unit per window of each text; only the pieces a window owns are labelled, so each counts once."""
    tag_index = {tag: i for i, tag in enumerate(tag_names)}
    units = []
    for text, row_spans in zip(texts, spans, strict=True):
        row_spans = [as_span(s) for s in row_spans]
        for window in encode_windows(tokenizer, text, max_length, default_stride(max_length)):
            first, last = window.owned
            labels = [
                label if first <= i < last else IGNORE
                for i, label in enumerate(window_labels(window, row_spans, tag_index))
            ]
            targets = sum(label != IGNORE for label in labels)
            if targets:
                units.append(Unit(window.input_ids, labels, targets=targets))
    return units


def balanced_class_weights(units: list[Unit], n_classes: int) -> torch.Tensor:
    """rows / (classes present x rows of the class), per class: scikit-learn's "balanced" over the classes the train
    split holds; 1.0 for a class with no rows (it is never a target, so its weight never counts)."""
    counts = np.bincount([int(u.labels) for u in units], minlength=n_classes).astype(np.float64)
    present = max(int((counts > 0).sum()), 1)
    weights = np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def head_labels(task: str, label_set: list[str]) -> list[str]:
    """The outputs of the model's head: the classes, the BIO tags of the span types, or none (causal LM)."""
    if task == "classification":
        return list(label_set)
    return bio_tags(list(label_set)) if task == "token-classification" else []


def format_prompt(prompt: str, context: str | None) -> str:
    """The instruction template: the note excerpt (context) first, then the question; the answer follows."""
    head = f"Note:\n{context}\n\n" if context else ""
    return f"{head}Question: {prompt}\nAnswer: "


def tokenize_instructions(
    prompts: list[str], responses: list[str], contexts: list[str] | None, tokenizer, max_length: int
) -> list[Unit]:
    """Prompt tokens get label IGNORE, so only the response is learned; long prompts lose their start (the note head)."""
    contexts = contexts if contexts is not None else [None] * len(prompts)
    texts = [format_prompt(p, c) for p, c in zip(prompts, contexts, strict=True)]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer([str(r) for r in responses], add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    # The model must learn to stop: encoders' tokenizers (BERT) have no EOS, and [SEP] ends their texts instead.
    stop = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    eos = [stop] if stop is not None else []
    units = []
    for p_ids, r_ids in zip(prompt_ids, response_ids, strict=True):
        r_ids = (r_ids + eos)[: max_length // 2]  # an answer never crowds out the whole question
        room = max_length - len(bos) - len(r_ids)
        p_ids = bos + p_ids[-room:]
        units.append(Unit(p_ids + r_ids, [IGNORE] * len(p_ids) + r_ids, targets=len(r_ids)))
    return units


def pack_units(units: list[Unit], max_length: int) -> list[Unit]:
    """First-fit-decreasing packing into rows of at most max_length tokens; positions restart per example."""
    order = sorted(range(len(units)), key=lambda i: -units[i].length)
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        need = units[i].length
        slot = next((r for r, room in enumerate(free) if room >= need), None)
        if slot is None:
            rows.append([i])
            free.append(max_length - need)
        else:
            rows[slot].append(i)
            free[slot] -= need
    packed = []
    for members in rows:
        ids, labels, positions, targets = [], [], [], 0
        for i in members:
            unit = units[i]
            ids += unit.input_ids
            # The first token of an example is never a target: it would be "predicted" from the previous example.
            labels += [IGNORE] + list(unit.labels[1:])
            positions += list(range(unit.length))
            targets += unit.targets
        packed.append(Unit(ids, labels, positions, targets))
    return packed


def group_by_length(lengths: list[int], micro_batch: int, rng: np.random.Generator | None) -> list[list[int]]:
    """Micro-batches of similar length (HF's LengthGroupedSampler idea); shuffled when an rng is given."""
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    window = micro_batch * GROUP_FACTOR
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window].tolist(), key=lambda i: -lengths[i])
        batches += [chunk[i : i + micro_batch] for i in range(0, len(chunk), micro_batch)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(units: list[Unit], pad_id: int, task: str) -> dict:
    """Right-padded tensors plus counts: `tokens` (non-padding), `targets` (loss denominator), `samples`."""
    width = max(u.length for u in units)
    ids = torch.full((len(units), width), pad_id, dtype=torch.long)
    for row, unit in enumerate(units):
        ids[row, : unit.length] = torch.tensor(unit.input_ids)
    batch: dict = {"input_ids": ids}
    if task == "classification":
        batch["labels"] = torch.tensor([u.labels for u in units])
    else:
        labels = torch.full((len(units), width), IGNORE, dtype=torch.long)
        for row, unit in enumerate(units):
            labels[row, : unit.length] = torch.tensor(unit.labels)
        batch["labels"] = labels
    if units[0].token_type_ids is not None:
        segments = torch.zeros((len(units), width), dtype=torch.long)
        for row, unit in enumerate(units):
            segments[row, : unit.length] = torch.tensor(unit.token_type_ids)
        batch["token_type_ids"] = segments
    if units[0].position_ids is not None:
        # Packed rows: no attention mask, so transformers derives a block-diagonal mask from the restarts.
        # Padding gets its own positions from 0 and so forms a separate, masked-out "example".
        pos = torch.zeros((len(units), width), dtype=torch.long)
        for row, unit in enumerate(units):
            pos[row, : unit.length] = torch.tensor(unit.position_ids)
            pos[row, unit.length :] = torch.arange(width - unit.length)
        batch["position_ids"] = pos
    else:
        mask = torch.zeros((len(units), width), dtype=torch.long)
        for row, unit in enumerate(units):
            mask[row, : unit.length] = 1
        batch["attention_mask"] = mask
    batch["tokens"] = sum(u.length for u in units)
    batch["targets"] = sum(u.targets for u in units)
    batch["samples"] = len(units)
    return batch


class BatchPlan:
    """Which units each rank trains on at each optimizer step, deterministically from (seed, epoch)."""

    def __init__(self, units: list[Unit], micro_batch: int, grad_accum: int, world_size: int, seed: int):
        self.units, self.micro_batch, self.grad_accum, self.world = units, micro_batch, grad_accum, world_size
        self.seed = seed
        self.per_step = grad_accum * world_size
        self.steps_per_epoch = -(-len(units) // micro_batch) // self.per_step
        self._epoch, self._batches = -1, []

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._batches = group_by_length([u.length for u in self.units], self.micro_batch, rng)
            self._epoch = epoch
        return self._batches

    def step_batches(self, step: int) -> list[list[int]]:
        """All world*accum micro-batches of step `step` (0-based), in order: micro-batch a of rank r is [a*world + r]."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        batches = self._epoch_batches(epoch)
        return batches[offset * self.per_step : (offset + 1) * self.per_step]

    def rank_batches(self, step: int, rank: int, pad_id: int, task: str) -> tuple[list[dict], int]:
        """This rank's collated micro-batches for `step`, and the step's global target count (the loss denominator)."""
        batches = self.step_batches(step)
        total = sum(self.units[i].targets for batch in batches for i in batch)
        mine = [batches[a * self.world + rank] for a in range(self.grad_accum)]
        return [collate([self.units[i] for i in batch], pad_id, task) for batch in mine], total


def eval_batches(
    units: list[Unit], micro_batch: int, world: int, rank: int, pad_id: int, task: str
) -> list[tuple[dict, bool]]:
    """This rank's eval micro-batches; every rank gets the same count (ZeRO-3 forwards are collective), so ranks
    short of work repeat a batch flagged `False` (not counted)."""
    if not units:
        return []
    batches = group_by_length([u.length for u in units], micro_batch, None)
    per_rank = -(-len(batches) // world)
    mine = batches[rank::world]
    out = [(collate([units[i] for i in b], pad_id, task), True) for b in mine]
    filler = collate([units[i] for i in batches[0]], pad_id, task)
    return out + [(filler, False)] * (per_rank - len(out))


def load_units(spec, ws, tokenizer, split: str, label_set: list[str]) -> list[Unit]:
    """Tokenised units of one split of the spec's dataset (packed for causal LM when spec.pack).

    `label_set` is the head's outputs (head_labels): classes, or BIO tags for token classification.
    """
    from medcore.data.manifest import load_split, read_manifest

    mapping = read_manifest(ws, spec.dataset).mapping
    frame = load_split(ws, spec.dataset, split)
    if frame.empty:
        return []
    if spec.task == "classification":
        texts = frame[mapping.text].fillna("").astype(str).tolist()
        pairs = frame[mapping.text_pair].fillna("").astype(str).tolist() if mapping.text_pair else None
        labels = frame[mapping.label].astype(str).tolist()
        return tokenize_classification(texts, labels, label_set, tokenizer, spec.max_length, pairs)
    if spec.task == "token-classification":
        texts = frame[mapping.text].fillna("").astype(str).tolist()
        spans = [list(v) if v is not None else [] for v in frame[mapping.spans]]
        return tokenize_spans(texts, spans, label_set, tokenizer, spec.max_length)
    has_context = mapping.text in frame and mapping.text not in (mapping.prompt, mapping.response)
    contexts = frame[mapping.text].fillna("").astype(str).tolist() if has_context else None
    units = tokenize_instructions(
        frame[mapping.prompt].fillna("").astype(str).tolist(),
        frame[mapping.response].fillna("").astype(str).tolist(),
        contexts,
        tokenizer,
        spec.max_length,
    )
    return pack_units(units, spec.max_length) if spec.pack else units
