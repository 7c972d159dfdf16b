"""One generation with `model.generate`: sampling settings, text pieces as they are decoded, and a stop on request
(client gone, timeout) checked after every token."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from medcore.serve.protocol import ApiError


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate for one request (already validated against the server's limits)."""

    max_tokens: int
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop (end of text), length (max_tokens), cancelled (client gone or timed out)


class IncrementalDecoder:
    """Token ids -> new text, decoding a short window so a word piece or a multi-byte character that the next token
    completes is held back (the scheme vLLM and TGI use); the pieces join to the answer's text."""

    def __init__(self, tokenizer, on_text: Callable[[str], None] | None):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.tokens: list[int] = []
        self.prefix_offset = self.read_offset = 0
        self.pieces: list[str] = []

    def add(self, token_ids: list[int]) -> None:
        self.tokens += token_ids
        decode = self.tokenizer.decode
        before = decode(self.tokens[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        after = decode(self.tokens[self.prefix_offset :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.emit(after[len(before) :])
            self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)

    def emit(self, piece: str) -> None:
        self.pieces.append(piece)
        if self.on_text is not None:
            self.on_text(piece)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def make_streamer(decoder: IncrementalDecoder):
    """A transformers streamer feeding `decoder` the generated tokens (the first `put` is the prompt: skipped)."""
    from transformers.generation.streamers import BaseStreamer

    class Streamer(BaseStreamer):
        prompt_seen = False

        def put(self, value) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            decoder.add(value.reshape(-1).tolist())

        def end(self) -> None:
            pass

    return Streamer()


def stop_when_set(event: threading.Event):
    """A stopping criterion that ends generation after the current token once `event` is set."""
    import torch
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()


def sampling_kwargs(settings: GenerationSettings) -> dict:
    """generate() arguments for OpenAI's sampling fields: temperature 0 is greedy; no top-k (OpenAI has none)."""
    if settings.temperature == 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": None}


def generate_text(
    model,
    tokenizer,
    prompt_ids: list[int],
    settings: GenerationSettings,
    cancel: threading.Event,
    on_text: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Generate for one prompt (batch of one); `on_text` gets each new piece of text as it is decoded.

    Blocking: call it from a worker thread, with the model's lock held.
    """
    import torch
    from transformers import StoppingCriteriaList

    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    decoder = IncrementalDecoder(tokenizer, on_text)
    eos = tokenizer.eos_token_id
    try:
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=settings.max_tokens,
                min_new_tokens=settings.min_tokens or None,
                stopping_criteria=StoppingCriteriaList([stop_when_set(cancel)]),
                streamer=make_streamer(decoder),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
                **sampling_kwargs(settings),
            )
    except RuntimeError as exc:
        # Type only: a library message may quote input. Most likely cause on a big model: out of memory.
        raise ApiError(500, f"Generation failed ({type(exc).__name__}); see the server log.") from exc
    new = out[0, len(prompt_ids) :].tolist()
    if cancel.is_set():
        finish = "cancelled"
    elif new and new[-1] == eos:
        finish = "stop"
    else:
        finish = "length" if len(new) >= settings.max_tokens else "stop"
    return GenerationResult(decoder.text, len(prompt_ids), len(new), finish)
