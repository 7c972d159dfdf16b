"""The embedded server's models: one base (causal LM) with its tokenizer, LoRA adapters served by name, and
classification adapters. Every model call holds one lock, so a call is safe from any worker thread.

Prompts for a tokenizer without a chat template use MedCore's instruction format (the one `medcore train`
fine-tunes causal LMs on, see medcore.train.data.format_prompt): the system text, then each user turn as
"Question: ...\\nAnswer: " and each assistant turn as its text and a blank line; BOS first when the tokenizer has one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.models import load_model, load_tokenizer, resolve_model_path
from medcore.serve.adapters import AdapterInfo, inspect_adapter
from medcore.serve.config import NAME_PATTERN, ServingConfig
from medcore.serve.generation import GenerationResult, GenerationSettings, generate_text
from medcore.serve.protocol import ApiError
from medcore.workspace import Workspace


def render_default_chat(messages: list[dict[str, str]]) -> str:
    """The documented default chat format (see the module docstring), ending where the answer starts."""
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(f"{message['content']}\n\n")
        elif message["role"] == "user":
            parts.append(f"Question: {message['content']}\nAnswer: ")
        else:
            parts.append(f"{message['content']}\n\n")
    if not messages or messages[-1]["role"] != "user":
        parts.append("Answer: ")
    return "".join(parts)


def position_limit(model_config) -> int | None:
    return getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)


class ModelPool:
    """The served base model, its adapters and the lock around every model call."""

    def __init__(self, config: ServingConfig, ws: Workspace):
        import torch

        self.config, self.ws = config, ws
        self.source = resolve_model_path(config.model, ws)
        if not isinstance(self.source, Path):
            raise MedcoreError(
                f"Model '{config.model}' is not a local folder: the embedded server loads local models only. "
                "Download it (`huggingface-cli download NAME --local-dir DIR`) and pass the folder."
            )
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(config.model, ws)
        self.causal = self.load_causal()
        self.peft = None  # the PeftModel around `causal` while any generation adapter is loaded
        self.adapters: dict[str, AdapterInfo] = {}
        self.classifiers: dict[str, object] = {}
        self.lock = threading.Lock()
        self.max_len = self.context_length()
        for name, folder in config.adapters.items():
            self.load_adapter(name, str(folder))

    def load_causal(self):
        """The base as a causal LM in eval mode, or None for an encoder (it then serves classification only)."""
        import torch

        try:
            model = load_model(self.config.model, "causal-lm", workspace=self.ws, torch_dtype=torch.float32)
        except MedcoreError as exc:
            if "cannot do task" in str(exc):
                return None
            raise
        return model.to(self.device).eval()

    def context_length(self) -> int:
        from transformers import AutoConfig

        table = position_limit(AutoConfig.from_pretrained(self.source))
        wanted = self.config.max_model_len
        if wanted and table and wanted > table:
            raise MedcoreError(
                f"max_model_len {wanted} is above the model's position table ({table} tokens): use at most {table}."
            )
        return wanted or table or 2048

    @property
    def base_name(self) -> str:
        return self.config.base_name

    def model_names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def kind_of(self, name: str) -> str:
        """generate or classify; an unknown name is a 404 listing the served names."""
        if name == self.base_name:
            return "generate" if self.causal is not None else "classify-base"
        if name in self.adapters:
            return self.adapters[name].kind
        raise ApiError(
            404,
            f"The model '{name}' is not served here. Served models: {', '.join(self.model_names())} (GET /v1/models).",
            param="model",
            code="model_not_found",
        )

    def encode_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[int]]:
        """(prompt text, token ids) of a conversation: the tokenizer's chat template, else the default format."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return text, self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.encode_text(render_default_chat(messages))

    def encode_text(self, text: str) -> tuple[str, list[int]]:
        """(text, token ids) of a plain prompt: BOS (when the tokenizer has one) and the text, as in training."""
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        return text, bos + self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @contextmanager
    def selected(self, name: str) -> Iterator:
        """The model that answers as `name`: the base (adapters off) or the base with that adapter active."""
        if name in self.adapters:
            self.peft.set_adapter(name)
            yield self.peft
        elif self.peft is not None:
            with self.peft.disable_adapter():
                yield self.peft
        else:
            yield self.causal

    def generate(
        self,
        name: str,
        prompt_ids: list[int],
        settings: GenerationSettings,
        cancel: threading.Event,
        on_text: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        """Generate as model `name` (blocking; call from a worker thread). Returns at once when `cancel` is set."""
        with self.lock:
            if cancel.is_set():
                return GenerationResult("", len(prompt_ids), 0, "cancelled")
            if name != self.base_name and name not in self.adapters:
                self.kind_of(name)  # unloaded while the request waited: 404
            with self.selected(name) as model:
                return generate_text(model, self.tokenizer, prompt_ids, settings, cancel, on_text)

    def classify(self, name: str, texts: list[str]) -> tuple[tuple[str, ...], list[list[float]]]:
        """(labels, probabilities per text) from classification adapter `name`."""
        import torch

        with self.lock:
            if name not in self.classifiers:
                self.kind_of(name)
                raise ApiError(
                    400,
                    f"The model '{name}' is not a classification adapter: send the name of one (see /v1/models, "
                    "kind classify), or use /v1/chat/completions for text generation.",
                    "model",
                )
            model, labels = self.classifiers[name], self.adapters[name].labels
            batch = self.tokenizer(texts, truncation=True, max_length=self.max_len, padding=True, return_tensors="pt")
            with torch.inference_mode():
                logits = model(**{k: v.to(self.device) for k, v in batch.items()}).logits
            probs = torch.softmax(logits.double(), dim=-1).cpu().tolist()
        return labels, probs

    def load_adapter(self, name: str, folder: str) -> AdapterInfo:
        """Check, then load an adapter under `name` (ApiError 400 naming lora_name or lora_path when refused)."""
        if not NAME_PATTERN.match(name) or name == self.base_name:
            raise ApiError(
                400,
                "lora_name must be letters, digits, '.', '_', '-', ':' (no spaces or slashes) and not the base's name.",
                param="lora_name",
            )
        info = inspect_adapter(name, folder, self.source, self.base_name, self.config.max_lora_rank, self.ws)
        with self.lock:
            if name in self.adapters:
                raise ApiError(
                    400, f"An adapter named '{name}' is already loaded: unload it first.", param="lora_name"
                )
            if info.kind == "generate":
                self.attach_lora(info)
            else:
                self.classifiers = {**self.classifiers, name: self.build_classifier(info)}
            # Replaced, never changed in place: the event loop reads these while a worker thread loads or unloads.
            self.adapters = {**self.adapters, name: info}
        return info

    def attach_lora(self, info: AdapterInfo) -> None:
        if self.causal is None:
            raise ApiError(
                400,
                f"The base '{self.base_name}' is not a causal LM: it serves classification adapters only.",
                "lora_path",
            )
        from peft import PeftModel

        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.causal, info.path, adapter_name=info.name).eval()
            else:
                self.peft.load_adapter(info.path, adapter_name=info.name)
        except (RuntimeError, ValueError, KeyError) as exc:
            self.detach_lora(info.name)
            raise ApiError(
                400,
                f"Adapter {info.path} does not fit the served base '{self.base_name}' ({type(exc).__name__}: its layer "
                "names or shapes differ). Serve it on the base it was trained on.",
                param="lora_path",
                code="invalid_adapter",
            ) from None

    def detach_lora(self, name: str) -> None:
        """Remove LoRA `name` from the base (also what a failed load left behind, so serving goes on as before)."""
        if self.peft is not None and name in self.peft.peft_config:
            if len(self.peft.peft_config) == 1:
                self.causal, self.peft = self.peft.unload(), None
            else:
                self.peft.delete_adapter(name)

    def build_classifier(self, info: AdapterInfo):
        """The base with a classification head of the adapter's size, the adapter merged in (eval mode)."""
        import torch
        from peft import PeftModel

        id2label = dict(enumerate(info.labels))
        base = load_model(
            str(self.source), "classification", id2label=id2label, workspace=self.ws, torch_dtype=torch.float32
        )
        try:
            return PeftModel.from_pretrained(base, info.path).merge_and_unload().to(self.device).eval()
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ApiError(
                400,
                f"Classification adapter {info.path} does not fit the served base ({type(exc).__name__}).",
                param="lora_path",
                code="invalid_adapter",
            ) from None

    def unload_adapter(self, name: str) -> None:
        """Stop serving adapter `name` (404 when it is not loaded)."""
        with self.lock:
            info = self.adapters.get(name)
            if info is None:
                raise ApiError(
                    404,
                    f"No adapter named '{name}' is loaded. Loaded: {', '.join(self.adapters) or 'none'}.",
                    "lora_name",
                )
            if info.kind == "classify":
                self.classifiers = {k: v for k, v in self.classifiers.items() if k != name}
            else:
                self.detach_lora(name)
            self.adapters = {k: v for k, v in self.adapters.items() if k != name}
