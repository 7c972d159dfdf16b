"""A BERT sequence classifier's last encoder layer computed for the [CLS] position only: same logits, less work.

The classification head reads only the last layer's [CLS] vector (through the pooler). That layer's other positions
cost a full layer of projections and feed-forward work, in inference and in training (forward and backward), for
nothing. Here the last layer still computes keys and values over every token but the query, attention output and
feed-forward for [CLS] alone: about a sixth of MiniLM's work. Evaluation calls `cls_logits` on a model it must not
change; training patches its own model's last layer with `use_cls_only_last_layer`. Any other architecture, or a
BERT set up in a way this does not reproduce, keeps the model's own forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def supports_cls_only(net) -> bool:
    """BertForSequenceClassification as an encoder with a pooler, absolute positions and no feed-forward chunking."""
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


def cls_only_layer(layer, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """A BertLayer's output at position 0 alone: (batch, 1, hidden). Keys and values still see every token.

    attention_mask: (batch, length) with 1 for real tokens, or the layer's own 4-D mask (batch, 1, length, length),
    boolean or additive, or None for no padding.
    """
    import torch.nn.functional as F  # torch loads only when a model runs

    attention = layer.attention.self
    batch, length, _ = hidden.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.view(batch, n, heads, size).transpose(1, 2)

    if attention_mask is not None:
        # the [CLS] query's row: padding is never attended to
        keep = attention_mask[:, None, None, :].bool() if attention_mask.dim() == 2 else attention_mask[:, :, :1, :]
    else:
        keep = None
    query = split(attention.query(hidden[:, :1]), 1)
    key, value = split(attention.key(hidden), length), split(attention.value(hidden), length)
    dropout = attention.dropout.p if attention.training else 0.0
    context = F.scaled_dot_product_attention(
        query, key, value, attn_mask=keep, dropout_p=dropout, scale=attention.scaling
    )
    context = context.transpose(1, 2).reshape(batch, 1, heads * size)
    attended = layer.attention.output(context, hidden[:, :1])
    return layer.output(layer.intermediate(attended), attended)


def cls_logits(net, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
    """The logits net(...) would give, computing the last layer for [CLS] only; `net` is left unchanged."""
    from transformers.masking_utils import create_bidirectional_mask

    bert = net.bert
    hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
    *body, last = bert.encoder.layer
    for layer in body:
        hidden = layer(hidden, mask)
    return net.classifier(net.dropout(bert.pooler(cls_only_layer(last, hidden, attention_mask))))


def use_cls_only_last_layer(net) -> bool:
    """Make `net`'s last encoder layer compute [CLS] alone (parameters and their names unchanged, so adapters and
    checkpoints are the same); False, and nothing changed, when `net` is no supported BERT classifier."""
    if not supports_cls_only(net):
        return False
    last = net.bert.encoder.layer[-1]

    def forward(hidden_states, attention_mask=None, *args: Any, **kwargs: Any):
        return cls_only_layer(last, hidden_states, attention_mask)

    last.forward = forward  # an instance attribute: hooks and gradient checkpointing still wrap __call__
    return True
