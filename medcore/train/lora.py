"""LoRA target modules resolved per architecture, and the PEFT wrapping of a loaded model."""

from __future__ import annotations

from pathlib import Path

from medcore.errors import MedcoreError
from medcore.train.presets import LoraPresetConfig

# Per architecture family: the usual LoRA targets (`auto`) and the lean query/value pair. A family is
# recognised by its module names, so Mistral/Qwen (llama-style names) or RoBERTa (BERT names) work too.
FAMILIES: dict[str, dict[str, list[str]]] = {
    "llama-style": {
        "auto": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "query-value": ["q_proj", "v_proj"],
    },
    "gpt2": {"auto": ["c_attn", "c_proj"], "query-value": ["c_attn"]},
    "bert": {"auto": ["query", "key", "value"], "query-value": ["query", "value"]},
}
# Output heads never get LoRA: the classifier is trained in full (modules_to_save) and lm_head is tied.
HEAD_NAMES = {"lm_head", "classifier", "score", "pooler"}


def linear_layer_names(model) -> list[str]:
    """The distinct leaf names of the model's linear layers (nn.Linear and GPT-2's Conv1D), in model order."""
    import torch
    from transformers.pytorch_utils import Conv1D

    names: list[str] = []
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear | Conv1D):
            leaf = full_name.rsplit(".", 1)[-1]
            if leaf not in names:
                names.append(leaf)
    return names


def resolve_target_modules(model, target: str | list[str], model_name: str = "model") -> list[str] | str:
    """LoRA targets for `model`: a preset group (auto, query-value), `all-linear`, or explicit names.

    Raises:
        MedcoreError: when no (or not every explicit) target exists, listing the model's linear layer names.
    """
    present = linear_layer_names(model)
    available = ", ".join(present) or "none"
    if target == "all-linear":
        body = [n for n in present if n not in HEAD_NAMES]
        if not body:
            raise MedcoreError(f"Model '{model_name}' has no linear layers for LoRA 'all-linear'.")
        # Named explicitly: peft's own "all-linear" keeps only a causal LM's output layer out, and a token
        # classifier's head must stay out of LoRA (it is trained in full through modules_to_save).
        return body
    if isinstance(target, str) and target not in ("auto", "query-value"):
        target = [t.strip() for t in target.split(",") if t.strip()]
    if isinstance(target, list):
        missing = [t for t in target if t not in present]
        if missing or not target:
            raise MedcoreError(
                f"LoRA target modules {', '.join(missing) or '(none given)'} not found in model '{model_name}'. "
                f"Its linear layers are: {available}. Set target_modules in the LoRA preset to some of these, "
                "or use auto / all-linear."
            )
        return target
    matches = {name: [n for n in family[target] if n in present] for name, family in FAMILIES.items()}
    for name, found in matches.items():
        if found == FAMILIES[name][target]:
            return found
    partial = max(matches, key=lambda name: len(matches[name]))
    if matches[partial]:
        # A model of another family that shares a few names (Phi-3's fused qkv_proj / gate_up_proj next to o_proj and
        # down_proj) would get LoRA on those few layers only: silently a different, much weaker fine-tune.
        found = matches[partial]
        missing = [n for n in FAMILIES[partial][target] if n not in found]
        raise MedcoreError(
            f"LoRA '{target}' matches model '{model_name}' only in part: of the {partial} {target} targets it has "
            f"{', '.join(found)} but not {', '.join(missing)}. Its linear layers are: {available}. Name the modules "
            "to adapt in target_modules of a LoRA preset (e.g. every attention and MLP projection), or use "
            "all-linear."
        )
    raise MedcoreError(
        f"No LoRA target modules for '{target}' in model '{model_name}' (none of the llama-style, GPT-2 or BERT "
        f"names). Its linear layers are: {available}. List target_modules explicitly in the LoRA preset."
    )


def lora_config_for(model, preset: LoraPresetConfig, task: str, model_name: str = "model"):
    """The peft LoraConfig for `model`; classification heads are trained in full via task_type SEQ_CLS / TOKEN_CLS
    (peft adds the `classifier` to modules_to_save, so the saved adapter holds the head too)."""
    from peft import LoraConfig, TaskType

    task_types = {
        "classification": TaskType.SEQ_CLS,
        "token-classification": TaskType.TOKEN_CLS,
        "causal-lm": TaskType.CAUSAL_LM,
    }

    return LoraConfig(
        r=preset.r,
        lora_alpha=preset.alpha,
        lora_dropout=preset.dropout,
        bias=preset.bias,
        target_modules=resolve_target_modules(model, preset.target_modules, model_name),
        task_type=task_types[task],
    )


def apply_lora(model, preset: LoraPresetConfig | None, task: str, model_name: str = "model"):
    """Wrap `model` with LoRA (or leave every parameter trainable for `full`)."""
    if preset is None:
        return model
    from peft import get_peft_model

    return get_peft_model(model, lora_config_for(model, preset, task, model_name))


def build_meta_model(source, task: str, num_labels: int | None = None, allow_downloads: bool = False):
    """The model's architecture on the meta device (no weights read): enough to list its layers cheaply.

    Only local files are read (a folder or the Hugging Face cache) unless `allow_downloads`.
    """
    import torch
    from transformers import AutoConfig

    from medcore.models import auto_model_class

    kwargs = {"num_labels": num_labels} if num_labels else {}
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=not allow_downloads, **kwargs)
    except OSError:
        if allow_downloads or Path(str(source)).exists():
            raise MedcoreError(
                f"Cannot read the model config of '{source}': give a local model folder or registry name."
            ) from None
        raise MedcoreError(
            f"Model '{source}' is not on this machine, and MedCore does not download models unless asked. Fetch it "
            f"once where the hub is reachable (`hf download {source}`, then copy ~/.cache/huggingface here, or "
            f"`hf download {source} --local-dir DIR` and give DIR as the model), or allow this run to download it with "
            "allow_downloads=true (or MEDCORE_ALLOW_DOWNLOADS=1)."
        ) from None
    auto = auto_model_class(task)
    try:
        with torch.device("meta"):
            return auto.from_config(config)
    except ValueError:
        raise MedcoreError(f"Model '{source}' cannot do task '{task}': pick a model of the matching kind.") from None
