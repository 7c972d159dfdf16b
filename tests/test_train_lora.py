"""LoRA target modules resolved per architecture (llama-style, GPT-2, BERT, all-linear), on meta-device models; a
partial match of a preset group is refused unless the modules are named."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
)

from medcore.errors import MedcoreError
from medcore.train.lora import apply_lora, linear_layer_names, resolve_target_modules
from medcore.train.presets import load_lora_preset


def meta(build):
    with torch.device("meta"):
        return build()


def LLAMA():
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    return LlamaForCausalLM(config)


def GPT2():
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2))


def BERT():
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    return BertForSequenceClassification(config)


@pytest.mark.parametrize(
    "build,auto,query_value",
    [
        (LLAMA, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], ["q_proj", "v_proj"]),
        (GPT2, ["c_attn", "c_proj"], ["c_attn"]),
        (BERT, ["query", "key", "value"], ["query", "value"]),
    ],
    ids=["llama", "gpt2", "bert"],
)
def test_targets_per_architecture(build, auto, query_value):
    model = meta(build)
    assert resolve_target_modules(model, "auto") == auto
    assert resolve_target_modules(model, "query-value") == query_value
    every = resolve_target_modules(model, "all-linear")
    assert set(auto) <= set(every) and not set(every) & {"lm_head", "classifier", "score", "pooler"}


def test_gpt2_conv1d_layers_count_as_linear():
    assert {"c_attn", "c_proj", "c_fc"} <= set(linear_layer_names(meta(GPT2)))


def test_explicit_targets_must_all_exist():
    model = meta(BERT)
    assert resolve_target_modules(model, ["query", "dense"]) == ["query", "dense"]
    with pytest.raises(MedcoreError) as err:
        resolve_target_modules(model, ["q_proj", "query"], "bert-tiny")
    assert "q_proj not found in model 'bert-tiny'" in str(err.value)
    assert "Its linear layers are: query, key, value, dense" in str(err.value)


def test_unknown_architecture_lists_its_layers():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder_in = torch.nn.Linear(4, 4)
            self.encoder_out = torch.nn.Linear(4, 2)

    with pytest.raises(MedcoreError, match="linear layers are: encoder_in, encoder_out"):
        resolve_target_modules(Odd(), "auto", "odd")


def test_apply_lora_trains_only_adapters_and_the_new_head():
    torch.manual_seed(0)
    model = apply_lora(BERT(), load_lora_preset("small"), "classification")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any(".query.lora_A" in n for n in trainable) and not any(".key.lora_" in n for n in trainable)
    assert apply_lora(LLAMA(), None, "causal-lm").__class__ is LlamaForCausalLM  # `full`: no wrapping


def PHI3():
    config = Phi3Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=0,
    )
    return Phi3ForCausalLM(config)


def test_a_partial_match_is_an_error_listing_found_and_missing():
    # Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj: only o_proj and down_proj carry llama names.
    model = meta(PHI3)
    with pytest.raises(MedcoreError) as err:
        resolve_target_modules(model, "auto", "phi-3-tiny")
    message = str(err.value)
    assert "matches model 'phi-3-tiny' only in part" in message
    assert "it has o_proj, down_proj but not q_proj, k_proj, v_proj, gate_proj, up_proj" in message
    assert "qkv_proj" in message and "gate_up_proj" in message and "target_modules" in message
    with pytest.raises(MedcoreError, match="No LoRA target modules for 'query-value'"):
        resolve_target_modules(model, "query-value", "phi-3-tiny")
    # Named explicitly, the same layers are taken as asked.
    named = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert resolve_target_modules(model, named) == named
    assert resolve_target_modules(model, "o_proj,down_proj") == ["o_proj", "down_proj"]
