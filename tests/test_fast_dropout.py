"""Dropout with integer masks (medcore.train.fast_dropout): torch's dropout semantics, a model's outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medcore.models import load_model
from medcore.train import fast_dropout
from medcore.train.fast_dropout import ATTENTION, FastDropout, keep_mask, use_fast_dropout
from medcore.train.lora import apply_lora
from medcore.train.presets import load_lora_preset


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_mask_keeps_units_at_rate_one_minus_p(p):
    torch.manual_seed(0)
    n = 2_000_000
    kept = keep_mask(torch.Size([n]), p).double().mean().item()
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(kept - (1 - p)) < 6 * sd + 1 / (1 << 17)  # binomial noise plus the 16-bit rounding of p


def test_the_mask_follows_torchs_seed():
    torch.manual_seed(3)
    first = keep_mask(torch.Size([1000]), 0.2)
    torch.manual_seed(3)
    assert torch.equal(first, keep_mask(torch.Size([1000]), 0.2))
    assert not torch.equal(first, keep_mask(torch.Size([1000]), 0.2))


def test_kept_units_are_scaled_dropped_are_zero_and_the_gradient_uses_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 128, dtype=torch.float64, requires_grad=True)
    y = fast_dropout.fast_dropout(x, 0.25)
    kept = y != 0
    assert 0.65 < kept.double().mean() < 0.85
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    weights = torch.randn_like(x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, torch.where(kept, weights / 0.75, torch.zeros_like(weights)))


def test_evaluation_and_p_zero_leave_the_input_alone():
    x = torch.randn(8, 8)
    assert fast_dropout.fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout.fast_dropout(x, 0.0) is x
    module = FastDropout(0.3).eval()
    assert module(x) is x


def test_attention_with_dropout_is_the_masked_softmax_times_values(monkeypatch):
    """In training the attention is softmax(q k^T * scale, padding masked) with the mask's units kept and scaled."""
    torch.manual_seed(2)
    batch, heads, length, size = 2, 3, 7, 4
    q, k, v = (torch.randn(batch, heads, length, size, dtype=torch.float64) for _ in range(3))
    attend = torch.ones(batch, 1, length, length, dtype=torch.bool)
    attend[1, ..., 5:] = False  # the second row's last two tokens are padding
    fixed = torch.rand(batch, heads, length, length) > 0.3
    monkeypatch.setattr(fast_dropout, "keep_mask", lambda shape, p: fixed)
    module = nn.Module().train()
    module.is_causal = False
    out, _ = fast_dropout.fast_dropout_attention(module, q, k, v, attend, dropout=0.3, scaling=0.5)
    scores = (q @ k.transpose(-2, -1)) * 0.5
    probs = torch.softmax(scores.masked_fill(~attend, float("-inf")), dim=-1) * fixed / 0.7
    torch.testing.assert_close(out, (probs @ v).transpose(1, 2))
    assert (out[1] != 0).all()  # padding is masked as a key, never as a query


def test_a_lora_classifier_keeps_its_outputs_in_eval_and_trains_through_the_fast_paths():
    torch.manual_seed(0)
    ids = torch.randint(1000, 20000, (3, 24))
    mask = torch.ones_like(ids)
    mask[1, 16:] = 0
    torch.manual_seed(5)
    net = apply_lora(load_model("minilm", "classification", id2label={0: "a", 1: "b"}), load_lora_preset("default"),
                     "classification", "minilm")  # fmt: skip
    dropouts = sum(1 for m in net.modules() if type(m) is nn.Dropout and m.p > 0)
    net.eval()
    with torch.no_grad():
        before = net(input_ids=ids, attention_mask=mask).logits
    assert use_fast_dropout(net) == dropouts > 0
    assert not any(type(m) is nn.Dropout and m.p > 0 for m in net.modules())
    assert net.base_model.model.config._attn_implementation == ATTENTION
    with torch.no_grad():
        assert torch.equal(net(input_ids=ids, attention_mask=mask).logits, before)  # eval: SDPA, no dropout

    net.train()
    drawn = []
    real = fast_dropout.keep_mask
    fast_dropout.keep_mask = lambda shape, p: drawn.append(tuple(shape)) or real(shape, p)
    try:
        loss = net(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 0])).loss
    finally:
        fast_dropout.keep_mask = real
    loss.backward()
    assert (24, 24) in {shape[-2:] for shape in drawn}  # the attention probabilities went through the fast mask
    assert all(p.grad is not None for n, p in net.named_parameters() if p.requires_grad and "lora_" in n)
