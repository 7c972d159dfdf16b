"""Sequence classification by a BERT-family encoder with its last layer computed for the [CLS] position only.

A sequence classifier reads nothing but the last layer's [CLS] vector (through the pooler). The last layer's other
positions cost a full layer of projections and feed-forward work for nothing, so here that layer computes keys and
values for every token but the query, attention output and feed-forward for [CLS] alone: about a sixth of MiniLM's
inference work, with the same logits (checked against the model's own forward in tests/test_eval_run.py).
Any other architecture, or a BERT configured in a way this does not reproduce, uses the model's own forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def supports_cls_forward(net) -> bool:
    """BertForSequenceClassification as an encoder with a pooler and no feed-forward chunking."""
    bert = getattr(net, "bert", None)
    config = getattr(net, "config", None)
    return (
        type(net).__name__ == "BertForSequenceClassification"
        and bert is not None
        and bert.pooler is not None
        and not config.is_decoder
        and not config.add_cross_attention
        and not config.chunk_size_feed_forward
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
    )


def cls_logits(net, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
    """The logits net(...) would give, in eval mode, computing the last layer for [CLS] only."""
    from transformers.masking_utils import create_bidirectional_mask

    bert = net.bert
    hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
    *body, last = bert.encoder.layer
    for layer in body:
        hidden = layer(hidden, mask)
    cls = cls_only_layer(last, hidden, attention_mask)
    return net.classifier(net.dropout(bert.pooler(cls)))


def cls_only_layer(layer, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A BertLayer's output at position 0 alone: (batch, 1, hidden). Keys and values still see every token."""
    import torch.nn.functional as F  # torch loads only when a model runs

    attention = layer.attention.self
    batch, length, _ = hidden.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.view(batch, n, heads, size).transpose(1, 2)

    query = split(attention.query(hidden[:, :1]), 1)
    key, value = split(attention.key(hidden), length), split(attention.value(hidden), length)
    keep = attention_mask[:, None, None, :].bool()  # padding is never attended to
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=keep, scale=attention.scaling)
    context = context.transpose(1, 2).reshape(batch, 1, heads * size)
    attended = layer.attention.output(context, hidden[:, :1])
    return layer.output(layer.intermediate(attended), attended)
