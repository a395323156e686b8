"""Inference fast paths: rewrites of a model's layers that give the same results with less work.

:func:`optimize_for_inference` is the one explicit step that applies them. It returns the model
to score with and a :class:`FastPathReport` of what it did; by default it works on a copy, so
a model the caller still holds is never changed (``copy=False`` rewrites the given model, for
callers that own it, as ``Classifier.from_pretrained`` does with the model it loaded).
What each rewrite does and when it applies: :mod:`infer.fastpath.layers`.
"""

from __future__ import annotations

import copy as _copy
import dataclasses

import torch

from .layers import (FirstTokenLayer, FusedSelfAttention, PrepackedLinear, compute_last_layer_for_first_token,
                     fuse_self_attention, onednn_linear_supported, prepack_linear_layers)

#: Attention cores a classifier can use in its fused self-attention layers.
ATTENTION_CORES = ("auto", "sdpa", "matmul")


@dataclasses.dataclass(frozen=True)
class FastPathReport:
    """What :func:`optimize_for_inference` applied."""

    first_token_last_layer: bool = False
    attention: str = "none"  # "none" (layers kept), "sdpa" or "matmul+softmax"
    fused_attention_layers: int = 0
    prepacked_linear_layers: int = 0

    def describe(self) -> str:
        parts = []
        if self.first_token_last_layer:
            parts.append("last layer for the first token only")
        if self.fused_attention_layers:
            parts.append(f"fused QKV ({self.attention} attention) in {self.fused_attention_layers} layers")
        if self.prepacked_linear_layers:
            parts.append(f"{self.prepacked_linear_layers} linear layers on prepacked oneDNN weights")
        return ", ".join(parts) or "no layer rewrites"


def manual_attention_wanted(attention: str, device: torch.device, precision: str, compile_model: bool) -> bool:
    """Whether the plain matmul + softmax attention core is used. ``auto``: on CPU in bf16/fp16
    (faster there than PyTorch's fused kernel at message lengths), not under torch.compile."""
    if attention not in ATTENTION_CORES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_CORES)}, got {attention!r}")
    return attention == "matmul" or (attention == "auto" and device.type == "cpu"
                                     and precision in ("bf16", "fp16") and not compile_model)


def optimize_for_inference(model, device: torch.device | str, precision: str, *, attention: str = "auto",
                           prepack_weights: bool | None = None, compile_model: bool = False,
                           copy: bool = True) -> tuple[torch.nn.Module, FastPathReport]:
    """Apply the fast paths that fit ``model`` on ``device`` in ``precision``.

    - the last encoder layer for the first token only (BERT-style classifiers);
    - fused QKV projections, with the attention core chosen by ``attention``
      (``auto``/``sdpa``/``matmul``, see :func:`manual_attention_wanted`);
    - ``prepack_weights`` (default: on CPU unless ``compile_model``): the encoder's linear layers
      as oneDNN matmuls on prepacked weights. The model is then for CPU inference only.

    Other architectures (decoders, relative positions) come back unchanged. ``copy=True``
    (default) rewrites a deep copy and leaves ``model`` as it was.
    """
    device = torch.device(device)
    manual = manual_attention_wanted(attention, device, precision, compile_model)
    if copy:
        model = _copy.deepcopy(model)
    first_token = compute_last_layer_for_first_token(model)
    fused = fuse_self_attention(model, manual_attention=manual)
    if prepack_weights is None:
        prepack_weights = device.type == "cpu" and not compile_model
    packed = prepack_linear_layers(model) if prepack_weights else 0
    core = "none" if not fused else "matmul+softmax" if manual else "sdpa"
    return model, FastPathReport(first_token, core, fused, packed)


__all__ = ["ATTENTION_CORES", "FastPathReport", "FirstTokenLayer", "FusedSelfAttention", "PrepackedLinear",
           "compute_last_layer_for_first_token", "fuse_self_attention", "manual_attention_wanted",
           "onednn_linear_supported", "optimize_for_inference", "prepack_linear_layers"]
