"""What a model can take (positions, vocabulary, a trained head's size), read from its config.json alone: a launch is
checked against them in milliseconds, before any weight is loaded (medcore.train.validate)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.models import resolve_model_path
from medcore.workspace import Workspace

# config.json keys that size a model's position table, by architecture family (GPT-2 says n_positions).
POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")
# RoBERTa-style encoders number positions from padding_idx + 1, so that many rows of the table are never reachable:
# roberta-base's 514 rows hold 512 tokens. Other families read their table from row 0.
PADDING_OFFSET_TYPES = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "roberta-prelayernorm",
     "data2vec-text", "ibert", "mpnet", "luke", "markuplm", "lilt", "layoutlmv3", "xmod", "esm"}
)  # fmt: skip
HEAD_SUFFIXES = {"ForSequenceClassification": "classification", "ForTokenClassification": "token-classification"}


@dataclass(frozen=True)
class ModelLimits:
    """What a model can take, from its config.json: None where the config does not say."""

    positions: int | None  # the longest sequence (max_length) its position table can number
    vocab_size: int | None  # rows of its embedding matrix: a token id at or past it is an index error
    head_task: str | None  # the task of a trained head it ships (a fine-tuned checkpoint), else None
    head_labels: int | None  # that head's number of outputs


def model_config_file(name: str, workspace: Workspace | None = None) -> Path | None:
    """config.json of a registry model, a folder or a hub id already in the local cache (never downloads)."""
    source = resolve_model_path(name, workspace)
    if isinstance(source, Path):
        return source / "config.json"
    from transformers.utils import try_to_load_from_cache  # huggingface_hub's, as transformers re-exports it

    try:
        cached = try_to_load_from_cache(source, "config.json")
    except ValueError:  # not a valid hub id either: resolve_model_path's callers report the name
        return None
    return Path(cached) if isinstance(cached, str) else None


def read_model_limits(name: str, workspace: Workspace | None = None) -> ModelLimits | None:
    """The position, vocabulary and head limits of model `name` from its config.json; None when it is not here.

    No weights are read, so a launch can be checked against them in milliseconds.
    """
    path = model_config_file(name, workspace)
    if path is None or not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except ValueError:
        raise MedcoreError(f"{path} is not valid JSON: restore the model folder's config.json.") from None
    positions = next((config[k] for k in POSITION_KEYS if isinstance(config.get(k), int)), None)
    if positions is not None and config.get("model_type") in PADDING_OFFSET_TYPES:
        positions -= int(config.get("pad_token_id") or 0) + 1
    architecture = next(iter(config.get("architectures") or []), "")
    head_task = next((task for suffix, task in HEAD_SUFFIXES.items() if architecture.endswith(suffix)), None)
    # transformers leaves id2label out of config.json when it holds its default, two labels.
    head_labels = (len(config.get("id2label") or {}) or config.get("num_labels") or 2) if head_task else None
    vocab = config.get("vocab_size")
    return ModelLimits(positions, vocab if isinstance(vocab, int) else None, head_task, head_labels)
