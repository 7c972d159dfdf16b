"""Training with the [CLS]-only last layer: the same loss and the same LoRA gradients as the model's own forward."""

from __future__ import annotations

import copy

import torch
from transformers import AutoTokenizer

from medcore.cls_only import use_cls_only_last_layer
from medcore.models import load_model, minilm_path
from medcore.train.lora import apply_lora
from medcore.train.presets import load_lora_preset


def test_loss_and_lora_gradients_are_unchanged_and_names_are_kept(workspace):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    own = load_model("minilm", "classification", id2label={0: "a", 1: "b", 2: "c"}, workspace=workspace)
    fast = copy.deepcopy(own)
    assert use_cls_only_last_layer(fast)
    own = apply_lora(own, load_lora_preset("default"), "classification", "minilm")
    fast = apply_lora(fast, load_lora_preset("default"), "classification", "minilm")
    fast.load_state_dict(own.state_dict())
    assert list(fast.state_dict()) == list(own.state_dict())  # adapters and checkpoints keep their names
    texts = ["chest pain and fever", "a much longer note about the history of heart failure and two admissions"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")  # padding: the mask path is exercised
    labels = torch.tensor([0, 2])
    losses = []
    for model in (own, fast):
        model.eval()  # no dropout: the two forwards must agree exactly
        loss = model(**batch, labels=labels).loss
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-6
    grads = {n: p.grad for n, p in own.named_parameters() if p.grad is not None}
    fast_grads = {n: p.grad for n, p in fast.named_parameters() if p.grad is not None}
    assert grads.keys() == fast_grads.keys() and any("lora_" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-6, rtol=1e-5)


def test_other_models_are_left_alone(workspace):
    llama = load_model("tiny-llama", "classification", id2label={0: "a", 1: "b"}, workspace=workspace)
    forward = llama.model.layers[-1].forward
    assert not use_cls_only_last_layer(llama) and llama.model.layers[-1].forward == forward
