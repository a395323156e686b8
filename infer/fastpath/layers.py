"""Inference-only rewrites of BERT-style encoder layers: the same results, less work.

- :class:`FirstTokenLayer`: the last layer computed for the first token only (the classifier
  head reads nothing else).
- :class:`FusedSelfAttention`: one matrix multiply for queries, keys and values instead of
  three, and on CPU in bf16/fp16 an attention core written as two batched matrix multiplies
  and a softmax, which takes about a third less time there than PyTorch's fused CPU kernel
  at the short lengths of messages (head size 32, 30-256 tokens).
- :func:`prepack_linear_layers`: on CPU, the encoder's linear layers run as oneDNN matmuls on
  weights reordered once into oneDNN's blocked layout, with the bias and the residual add done
  inside the matmul (see :class:`PrepackedLinear`).

All apply only to classifiers built from BERT-style layers with absolute positions and
bidirectional attention whose masks come from padding, which is what the scorer feeds them.
"""

from __future__ import annotations

import torch

#: Classifiers whose head reads only the first token's final hidden state (BERT's pooler, the
#: RoBERTa head), built from BERT-style layers (``attention.self``/``attention.output``,
#: ``intermediate``, ``output``).
FIRST_TOKEN_CLASSIFIERS = ("BertForSequenceClassification", "RobertaForSequenceClassification",
                           "XLMRobertaForSequenceClassification")
#: Bare encoders with the same layers, as read by a mean-pooling head (``infer.heads``).
BERT_STYLE_ENCODERS = ("BertModel", "RobertaModel", "XLMRobertaModel")
_SELF_ATTENTION_PARTS = ("query", "key", "value", "scaling", "attention_head_size", "num_attention_heads")


def bert_style_layers(model) -> torch.nn.ModuleList | None:
    """The encoder layers of a bidirectional BERT-style classifier (one of
    ``FIRST_TOKEN_CLASSIFIERS``, or a mean-pooling head on a BERT-style encoder) with absolute
    positions and sdpa/eager attention, or ``None`` where the rewrites here would change results."""
    if type(model).__name__ == "MeanPoolingClassifier":
        model = model.encoder
        if type(model).__name__ not in BERT_STYLE_ENCODERS:
            return None
        base = model
    elif type(model).__name__ in FIRST_TOKEN_CLASSIFIERS:
        base = getattr(model, model.base_model_prefix, None)
    else:
        return None
    config = model.config
    if (config.is_decoder
            or getattr(config, "add_cross_attention", False)
            or getattr(config, "position_embedding_type", "absolute") != "absolute"
            or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager")):
        return None  # flash-attention masks, causal or relative-position attention: keep the layers
    layers = getattr(getattr(base, "encoder", None), "layer", None)
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
                # In place on the tail slice: 6x faster than adding an additive mask to it.
                scores[..., start:].masked_fill_(~keep[..., start:], torch.finfo(scores.dtype).min)
        else:
            scores += keep.to(scores.dtype)
    if scores.dtype in (torch.bfloat16, torch.float16) and scores.device.type == "cpu":
        # PyTorch's reduced-precision CPU softmax is 2-3x slower per element when the row length
        # is not a multiple of 32 (measured 0.65-0.98 ns against 0.33 ns per element); its
        # log-softmax is not, and exp(log_softmax) is the same function: 12% less attention time.
        probs = torch.log_softmax(scores, dim=-1).exp_()
    else:
        probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value)


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
    if type(model).__name__ not in FIRST_TOKEN_CLASSIFIERS:
        return False  # a mean-pooling head reads every position
    layers = bert_style_layers(model)
    if layers is None:
        return False
    if isinstance(layers[-1], FirstTokenLayer):
        return True
    if _self_attention(layers[-1]) is None:
        return False
    layers[-1] = FirstTokenLayer(layers[-1])
    return True


# -- oneDNN prepacked linear layers (CPU) ------------------------------------------------------

#: Submodules of a BERT-style layer computing ``LayerNorm(dense(x) + residual)``, and the
#: feed-forward input ``act(dense(x))``, by class name (same structure in all three families).
_RESIDUAL_OUTPUTS = ("BertSelfOutput", "BertOutput", "RobertaSelfOutput", "RobertaOutput",
                     "XLMRobertaSelfOutput", "XLMRobertaOutput")
_INTERMEDIATES = ("BertIntermediate", "RobertaIntermediate", "XLMRobertaIntermediate")


def onednn_linear_supported(dtype: torch.dtype) -> bool:
    """Whether oneDNN's prepacked linear kernels run here in ``dtype`` (CPU builds with oneDNN;
    bf16 needs AVX-512 or Arm BF16). Checked by running them once on a tiny input."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        x = torch.ones(2, 4, dtype=dtype)
        weight = torch.ones(3, 4, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        y = torch.ops.mkldnn._linear_pointwise.binary(x, torch.ones(2, 3, dtype=dtype), packed,
                                                      torch.zeros(3, dtype=dtype), "add")
        return bool((y == 5).all())
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


class PrepackedLinear(torch.nn.Module):
    """An ``nn.Linear`` for CPU inference: the weight reordered once into oneDNN's blocked layout
    and multiplied by oneDNN with the bias (and, when given, a residual) added in the kernel.

    ``aten::linear`` reaches oneDNN in bf16 but re-reads the plain weight layout on every call
    and adds the bias by first copying it into the output; in fp32 it goes to MKL, which on AMD
    CPUs runs far below the hardware's peak. Measured on the 2-core AVX-512 benchmark machine
    (2,000 x 384 by 384 x 1,536): bf16 2.49 -> 2.34 ms, fp32 11.3 -> 4.8 ms.

    The weight becomes an opaque oneDNN tensor: a model holding these layers is for inference
    on CPU only (no training, no moving between devices, no ``state_dict`` round trip).
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if residual is None:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual.contiguous(), self.weight, self.bias, "add")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class PrepackedResidualOutput(torch.nn.Module):
    """``LayerNorm(dense(hidden) + input)`` (BERT's ``*SelfOutput``/``*Output``, dropout being a
    no-op in inference) with the residual add inside the prepacked matmul."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.dense = PrepackedLinear(module.dense)
        self.LayerNorm = module.LayerNorm

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden_states, input_tensor))


class PrepackedIntermediate(torch.nn.Module):
    """``act(dense(x))`` (BERT's ``*Intermediate``) with a prepacked matmul; exact GELU runs in
    place on the matmul's output (one less feed-forward-sized buffer per layer)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.dense = PrepackedLinear(module.dense)
        self.act = module.intermediate_act_fn
        self.exact_gelu = type(self.act).__name__ == "GELUActivation" and getattr(self.act, "act", None) is \
            torch.nn.functional.gelu

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(hidden_states)
        return torch.ops.aten.gelu_(hidden_states) if self.exact_gelu else self.act(hidden_states)


def prepack_linear_layers(model) -> int:
    """Swap :class:`PrepackedLinear`-based modules into every encoder layer of a BERT-style
    classifier on CPU: the fused QKV projection (or a :class:`FirstTokenLayer`'s query, key and
    value), the attention output, and the feed-forward layers. Returns how many linear layers
    now run prepacked (0 where not applicable: other architectures, not on CPU, no oneDNN).
    Idempotent. The model is then for CPU inference only (see :class:`PrepackedLinear`)."""
    layers = bert_style_layers(model)
    if layers is None:
        return 0
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "cpu" or not onednn_linear_supported(parameter.dtype):
        return 0
    packed = 0
    for layer in layers:
        inner = layer.layer if isinstance(layer, FirstTokenLayer) else layer
        attention = inner.attention
        projections = ("qkv",) if isinstance(attention.self, FusedSelfAttention) else ("query", "key", "value")
        for name in projections:
            module = getattr(attention.self, name, None)
            if isinstance(module, torch.nn.Linear):
                setattr(attention.self, name, PrepackedLinear(module))
            packed += isinstance(getattr(attention.self, name, None), PrepackedLinear)
        if type(attention.output).__name__ in _RESIDUAL_OUTPUTS:
            attention.output = PrepackedResidualOutput(attention.output)
        if type(inner.intermediate).__name__ in _INTERMEDIATES:
            inner.intermediate = PrepackedIntermediate(inner.intermediate)
        if type(inner.output).__name__ in _RESIDUAL_OUTPUTS:
            inner.output = PrepackedResidualOutput(inner.output)
        packed += sum(isinstance(m, (PrepackedResidualOutput, PrepackedIntermediate))
                      for m in (attention.output, inner.intermediate, inner.output))
    return packed
