"""Character spans <-> word pieces for token classification (BIO tags over overlapping windows), train and inference.

A note longer than the model's window is cut into overlapping windows of word pieces. Each word piece is
"owned" by the one window where it sits farthest from an edge (most context on both sides): training labels and
predictions use owned pieces only, so every piece of a note counts exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from medcore.rundir import read_json

IGNORE = -100  # label cross-entropy skips: special tokens, padding, prompt tokens (causal LM), unowned pieces
OUTSIDE = "O"
TAG_FILE = "token_tags.json"  # in the adapter folder: tag names and window geometry, read back at inference
STRIDE_DIVISOR = 4  # windows overlap by a quarter of their length: a border piece still has context on both sides


@dataclass(frozen=True)
class TokenWindow:
    """One model input of at most max_length word pieces, with where each piece sits in the note."""

    input_ids: list[int]
    offsets: list[tuple[int, int] | None]  # characters [start, end) of each piece in the note; None: special token
    owned: tuple[int, int]  # [first, last) positions in this window whose labels and predictions count
    token_start: int  # index of this window's first word piece among all of the note's word pieces


class CharSpan(NamedTuple):
    """A typed character span [start, end) of a note, with the model's confidence (1.0 for gold spans)."""

    start: int
    end: int
    type: str
    score: float = 1.0


@dataclass(frozen=True)
class TagFile:
    """What inference needs besides the weights: the tag of each output and the windows the model was trained on."""

    tags: list[str]
    max_length: int
    stride: int

    def as_json(self) -> dict[str, Any]:
        """TAG_FILE's content (written by the trainer next to the adapter); id2label builds the head directly."""
        return {
            "tags": self.tags,
            "max_length": self.max_length,
            "stride": self.stride,
            "id2label": dict(enumerate(self.tags)),
        }


def default_stride(max_length: int) -> int:
    """Overlap of consecutive windows in word pieces."""
    return max_length // STRIDE_DIVISOR


def bio_tags(label_set: list[str]) -> list[str]:
    """The classifier's outputs: `O`, then `B-X`, `I-X` for each span type X, in label_set order."""
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in label_set for prefix in ("B", "I")]


def encode_windows(tokenizer, text: str, max_length: int, stride: int) -> list[TokenWindow]:
    """Tokenise `text` (a fast tokenizer) into windows of at most `max_length` pieces overlapping by `stride`.

    Raises:
        ValueError: when the stride leaves no room for new pieces in each window.
    """
    room = max_length - tokenizer.num_special_tokens_to_add()
    if not 0 <= stride < room:
        raise ValueError(f"stride {stride} must be below {room} (max_length {max_length} minus special tokens)")
    enc = tokenizer(
        text,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    windows, start = [], 0
    for ids, offsets, special in zip(enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], strict=True):
        spans = [None if s else (int(a), int(b)) for (a, b), s in zip(offsets, special, strict=True)]
        windows.append(TokenWindow(list(ids), spans, (0, 0), start))
        start += sum(1 for s in special if not s) - stride
    return _assign_ownership(windows)


def _content(window: TokenWindow) -> tuple[int, int]:
    """[first, last) positions of the window's word pieces (special tokens sit around them)."""
    positions = [i for i, off in enumerate(window.offsets) if off is not None]
    return (positions[0], positions[-1] + 1) if positions else (0, 0)


def _assign_ownership(windows: list[TokenWindow]) -> list[TokenWindow]:
    """Split each overlap at its middle: a piece goes to the window where it is farther from the edge."""
    bounds = [_content(w) for w in windows]
    ends = [w.token_start + (hi - lo) for w, (lo, hi) in zip(windows, bounds, strict=True)]
    # Global piece index where ownership passes from window k to k+1: the middle of their overlap.
    cuts = [0] + [(windows[k + 1].token_start + ends[k]) // 2 for k in range(len(windows) - 1)] + [ends[-1]]
    out = []
    for k, (window, (lo, _)) in enumerate(zip(windows, bounds, strict=True)):
        first, last = cuts[k] - window.token_start + lo, cuts[k + 1] - window.token_start + lo
        out.append(TokenWindow(window.input_ids, window.offsets, (first, last), window.token_start))
    return out


def window_labels(window: TokenWindow, spans: list[CharSpan] | list[dict], tag_index: dict[str, int]) -> list[int]:
    """Tag index per position: B on a span's first piece, I on the pieces after it, O elsewhere, IGNORE on specials.

    A piece overlapping a span counts as in it (the first such span when spans overlap).
    """
    spans = sorted((as_span(s) for s in spans), key=lambda s: (s.start, s.end))
    labels: list[int] = []
    previous, first_piece = None, True  # previous: the span of the piece before this one (None: outside any)
    for offset in window.offsets:
        if offset is None:
            labels.append(IGNORE)
            continue
        start, end = offset
        span = next((s for s in spans if start < s.end and end > s.start), None)
        if span is None:
            labels.append(tag_index[OUTSIDE])
        else:
            # A window that begins inside a span continues it (I) unless its first piece is where the span begins.
            continues = start > span.start if first_piece else previous is span
            labels.append(tag_index[f"{'I' if continues else 'B'}-{span.type}"])
        previous, first_piece = span, False
    return labels


def as_span(value: CharSpan | dict) -> CharSpan:
    """A span from a dataset cell's dict ({start, end, type}) or a CharSpan."""
    if isinstance(value, CharSpan):
        return value
    return CharSpan(int(value["start"]), int(value["end"]), str(value["type"]))


def decode_spans(
    text: str, windows: list[TokenWindow], token_probs, tag_names: list[str], threshold: float
) -> list[CharSpan]:
    """Per-piece tag probabilities of each window -> word-aligned typed character spans.

    A piece is PHI when 1 - P(O) >= threshold; its type is the span type with the most B+I probability.
    Consecutive PHI pieces of one type merge (also across a B), spans grow to whole words, and the score is
    the highest PHI probability of the span's pieces.

    Args:
        token_probs: one (window length, len(tag_names)) array of probabilities per window.
    """
    types, type_of_tag = _tag_types(tag_names)
    outside = tag_names.index(OUTSIDE)
    merged: list[list] = []  # [start, end, type, score, last piece index]
    for index, (start, end, probs) in enumerate(_owned_pieces(windows, token_probs)):
        phi = 1.0 - float(probs[outside])
        if phi < threshold:
            continue
        kind = types[int(np.argmax(type_of_tag @ probs))]
        last = merged[-1] if merged else None
        if last and last[4] == index - 1 and last[2] == kind:
            last[1], last[3], last[4] = end, max(last[3], phi), index
        else:
            merged.append([start, end, kind, phi, index])
    return _whole_words(text, [CharSpan(s, e, k, p) for s, e, k, p, _ in merged])


def _tag_types(tag_names: list[str]) -> tuple[list[str], np.ndarray]:
    """Span types and a (types, tags) 0/1 matrix that sums B-X and I-X probabilities into X's."""
    types = list(dict.fromkeys(t[2:] for t in tag_names if t != OUTSIDE))
    matrix = np.zeros((len(types), len(tag_names)))
    for j, tag in enumerate(tag_names):
        if tag != OUTSIDE:
            matrix[types.index(tag[2:]), j] = 1.0
    return types, matrix


def _owned_pieces(windows: list[TokenWindow], token_probs):
    """(start, end, probabilities) of every word piece of the note once, in order, from the window that owns it."""
    for window, probs in zip(windows, token_probs, strict=True):
        probs = np.asarray(probs, dtype=np.float64)
        for position in range(*window.owned):
            offset = window.offsets[position]
            if offset is not None:
                yield offset[0], offset[1], probs[position]


def _whole_words(text: str, spans: list[CharSpan]) -> list[CharSpan]:
    """Grow each span to the letter/digit run around its ends; spans that then overlap become one (best score's type).

    Word characters are Unicode letters and digits ([A-Za-z0-9] and more), so "Müller" is not cut at the "ü".
    """
    out: list[CharSpan] = []
    for span in spans:
        start, end = span.start, span.end
        while start > 0 and _is_word_char(text[start - 1]) and _is_word_char(text[start]):
            start -= 1
        while end < len(text) and _is_word_char(text[end]) and _is_word_char(text[end - 1]):
            end += 1
        grown = CharSpan(start, end, span.type, span.score)
        if out and grown.start < out[-1].end:
            best = max(out[-1], grown, key=lambda s: s.score)
            grown = CharSpan(out[-1].start, max(out[-1].end, grown.end), best.type, best.score)
            out.pop()
        out.append(grown)
    return out


def _is_word_char(char: str) -> bool:
    return char.isalnum()


def window_batch(windows: list[TokenWindow], pad_id: int):
    """(input_ids, attention_mask) tensors of windows right-padded to the longest."""
    import torch

    width = max(len(w.input_ids) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, window in enumerate(windows):
        ids[row, : len(window.input_ids)] = torch.tensor(window.input_ids)
        mask[row, : len(window.input_ids)] = 1
    return ids, mask


def predict_spans(model, tokenizer, text: str, tag_file: TagFile, threshold: float) -> list[CharSpan]:
    """Tag one note with a token-classification model (in eval mode): windows, one batched forward, decode.

    `tag_file` is read_tag_file(adapter folder): the tags and the windows the model was trained with.
    """
    import torch

    windows = encode_windows(tokenizer, text, tag_file.max_length, tag_file.stride)
    ids, mask = window_batch(windows, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    probs = torch.softmax(logits, dim=-1).cpu().numpy()
    return decode_spans(text, windows, list(probs), tag_file.tags, threshold)


def read_tag_file(folder: Path) -> TagFile:
    """The tags and window geometry saved with a token-classification adapter.

    Raises:
        FileNotFoundError: the folder holds no TAG_FILE (not a token-classification adapter).
    """
    data = read_json(folder / TAG_FILE)
    if data is None:
        raise FileNotFoundError(f"{folder / TAG_FILE} is missing: the folder is not a token-classification adapter.")
    return TagFile(list(data["tags"]), int(data["max_length"]), int(data["stride"]))


__all__ = [
    "IGNORE",
    "TAG_FILE",
    "CharSpan",
    "TagFile",
    "TokenWindow",
    "as_span",
    "bio_tags",
    "decode_spans",
    "default_stride",
    "encode_windows",
    "predict_spans",
    "window_batch",
    "read_tag_file",
    "window_labels",
]
