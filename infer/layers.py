"""Inference-only rewrites of BERT-style encoder layers: the same results, less work.

- :class:`FirstTokenLayer`: the last layer computed for the first token only (the classifier
  head reads nothing else).
- :class:`FusedSelfAttention`: one matrix multiply for queries, keys and values instead of
  three, and on CPU in bf16/fp16 an attention core written as two batched matrix multiplies
  and a softmax, which runs about twice as fast there as PyTorch's fused CPU kernel at the
  short lengths of messages (head size 32, 30-256 tokens).

Both apply only to classifiers built from BERT-style layers with absolute positions and
bidirectional attention whose masks come from padding, which is what the scorer feeds them.
"""

from __future__ import annotations

import torch

#: Classifiers whose head reads only the first token's final hidden state (BERT's pooler, the
#: RoBERTa head), built from BERT-style layers (``attention.self``/``attention.output``,
#: ``intermediate``, ``output``).
FIRST_TOKEN_CLASSIFIERS = ("BertForSequenceClassification", "RobertaForSequenceClassification",
                           "XLMRobertaForSequenceClassification")
_SELF_ATTENTION_PARTS = ("query", "key", "value", "scaling", "attention_head_size", "num_attention_heads")


def bert_style_layers(model) -> torch.nn.ModuleList | None:
    """The encoder layers of a bidirectional BERT-style classifier with absolute positions and
    sdpa/eager attention, or ``None`` where the rewrites here would change results."""
    config = model.config
    if (type(model).__name__ not in FIRST_TOKEN_CLASSIFIERS or config.is_decoder
            or getattr(config, "add_cross_attention", False)
            or getattr(config, "position_embedding_type", "absolute") != "absolute"
            or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager")):
        return None  # flash-attention masks, causal or relative-position attention: keep the layers
    layers = getattr(getattr(getattr(model, model.base_model_prefix, None), "encoder", None), "layer", None)
    return layers or None


def _self_attention(layer: torch.nn.Module):
    attention = getattr(getattr(layer, "attention", None), "self", None)
    return attention if all(hasattr(attention, name) for name in _SELF_ATTENTION_PARTS) else None


def padding_mask_row(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The first query's row of a 4-D attention mask, ``(batch, 1, 1, keys)``: for a padding
    mask every query row is the same. 2-D padding masks are reshaped to that form."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        return attention_mask[:, :, :1, :]
    if attention_mask.dim() == 2:
        return attention_mask[:, None, None, :].bool()
    raise ValueError(f"unsupported attention mask shape {tuple(attention_mask.shape)}")


def masked_softmax_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             keep: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + mask) v`` with plain batched matrix multiplies.

    ``keep`` is a boolean ``(batch, 1, 1, keys)`` mask (True: attend) or an additive one. In
    length-sorted batches only the last few key columns hold padding, so only the columns from
    the first padded one on are masked, not the whole score tensor.
    """
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    if keep is not None:
        if keep.dtype == torch.bool:
            padded_columns = torch.nonzero((~keep).flatten(0, 2).any(0)).flatten()
            if padded_columns.numel():
                start = int(padded_columns[0])
                tail = torch.zeros(keep[..., start:].shape, dtype=scores.dtype, device=scores.device)
                scores[..., start:] += tail.masked_fill_(~keep[..., start:], torch.finfo(scores.dtype).min)
        else:
            scores += keep.to(scores.dtype)
    return torch.matmul(torch.softmax(scores, dim=-1), value)


class FusedSelfAttention(torch.nn.Module):
    """A BERT-style self-attention block with one projection for queries, keys and values.

    ``manual_attention``: compute the attention core with :func:`masked_softmax_attention`
    instead of ``scaled_dot_product_attention`` (faster on CPU in bf16/fp16, see the module
    docstring). Returns ``(context, None)`` like the transformers module it replaces.
    """

    def __init__(self, attention: torch.nn.Module, manual_attention: bool = False):
        super().__init__()
        self.num_heads = attention.num_attention_heads
        self.head_size = attention.attention_head_size
        self.scaling = attention.scaling
        self.manual_attention = manual_attention
        parts = (attention.query, attention.key, attention.value)
        weight = torch.cat([p.weight.detach() for p in parts])
        self.qkv = torch.nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.qkv.weight.copy_(weight)
            self.qkv.bias.copy_(torch.cat([p.bias.detach() for p in parts]))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_size).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        keep = padding_mask_row(attention_mask)
        if self.manual_attention:
            context = masked_softmax_attention(query, key, value, keep, self.scaling)
        else:
            context = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=keep,
                                                                       scale=self.scaling)
        return context.transpose(1, 2).reshape(batch, length, -1), None


def fuse_self_attention(model, manual_attention: bool = False) -> int:
    """Swap :class:`FusedSelfAttention` into every full layer of a BERT-style classifier (not a
    :class:`FirstTokenLayer`). Returns how many layers now use it (0 where not applicable)."""
    layers = bert_style_layers(model)
    if layers is None:
        return 0
    fused = 0
    for layer in layers:
        if isinstance(layer, FirstTokenLayer):
            continue
        current = layer.attention.self
        if isinstance(current, FusedSelfAttention):
            current.manual_attention = manual_attention
        elif _self_attention(layer) is not None:
            layer.attention.self = FusedSelfAttention(current, manual_attention)
        else:
            continue
        fused += 1
    return fused


class FirstTokenLayer(torch.nn.Module):
    """A BERT-style encoder layer computed for the first token only.

    The classifier reads nothing else from the last layer, so the other positions only serve as
    keys and values: their query, attention-output and feed-forward work is skipped (for a
    6-layer MiniLM, about a seventh of the FLOPs). Results are those of the full layer.
    """

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        attention = self.layer.attention.self
        first = hidden_states[:, :1]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], x.shape[1], -1, attention.attention_head_size).transpose(1, 2)

        context = torch.nn.functional.scaled_dot_product_attention(
            heads(attention.query(first)), heads(attention.key(hidden_states)), heads(attention.value(hidden_states)),
            attn_mask=padding_mask_row(attention_mask), scale=attention.scaling)
        context = context.transpose(1, 2).reshape(first.shape[0], 1, -1)
        attention_output = self.layer.attention.output(context, first)
        return self.layer.output(self.layer.intermediate(attention_output), attention_output)


def compute_last_layer_for_first_token(model) -> bool:
    """Swap in :class:`FirstTokenLayer` as the last layer where that gives the same logits."""
    layers = bert_style_layers(model)
    if layers is None:
        return False
    if isinstance(layers[-1], FirstTokenLayer):
        return True
    if _self_attention(layers[-1]) is None:
        return False
    layers[-1] = FirstTokenLayer(layers[-1])
    return True
