"""Training a tactic-tag model beside the label head (the recipe's ``tags:`` group).

``tags.mode: joint`` (default): the tag head reads the features of the label head's output layer: its rows are appended to that
layer (``infer.tags.widen_output_layer``), so the model's logits are ``[labels..., tags...]``
during training. Each training row's ``labels`` become ``[class index, tag_1 ... tag_n]`` (0/1
per tag) and :func:`joint_loss` adds the tags' binary cross-entropy, times ``tags.loss_weight``,
to the (class-weighted) cross-entropy of the label. Before saving, the rows are split off again
(``infer.tags.split_output_layer``): the model folder holds a plain classifier plus
``tag_head.safetensors``, and a per-tag threshold picked on the validation split goes into the
manifest.

``tags.mode: tfidf``: the network trains as if there were no tags (no tag head, no tag loss),
so the tags cannot change its labels. After it, :func:`fit_tag_tfidf` fits word 1-2 gram
TF-IDF and one logistic regression per tag on the training rows' tags
(``train.benchmarks.baselines.TfidfTagLogReg``, the blend's features) and the folder gets it as
plain JSON (``tag_tfidf.json``, ``infer.tags.TAG_TFIDF_FILE``); its per-tag thresholds are
picked on the validation split the same way.
"""

from __future__ import annotations

from infer.tags import TagSpec, widen_output_layer

from ..evaluation.tag_metrics import parse_tag_list
from .config import Recipe


def recipe_tag_spec(recipe: Recipe) -> TagSpec | None:
    """The tag model a recipe trains (thresholds not yet picked), or None when ``tags.enabled`` is off."""
    return TagSpec(tuple(recipe.tags.names), kind=recipe.tags.mode) if recipe.tags.enabled else None


def fit_tag_tfidf(spec: TagSpec, texts, tag_values, seed: int = 0):
    """The separate tag model (``tags.mode: tfidf``) fitted on the training rows' texts and tags."""
    from ..benchmarks.baselines import TfidfTagLogReg

    return TfidfTagLogReg(spec.names, seed=seed).fit(list(texts), tag_targets(spec, tag_values, "training data"))


def tag_targets(spec: TagSpec, values, where: str):
    """0/1 targets from a split's tag column; a malformed value or an unknown tag names the split."""
    try:
        return spec.targets([parse_tag_list(v) for v in values])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def add_tag_head(model, n_labels: int, n_tags: int, seed: int = 0) -> None:
    """A fresh tag head (small random weights, zero bias) appended to the label head's output layer."""
    import torch

    from infer.tags import output_layer

    layer = output_layer(model, n_labels)
    generator = torch.Generator().manual_seed(seed)
    std = float(getattr(model.config, "initializer_range", 0.02))
    weight = torch.randn(n_tags, layer.in_features, generator=generator) * std
    widen_output_layer(model, n_labels, weight, torch.zeros(n_tags))


def joint_loss(class_weights, n_labels: int, tag_weight: float):
    """``compute_loss_func`` for the Trainer: label cross-entropy (class-weighted when given)
    plus ``tag_weight`` x the tags' mean binary cross-entropy. ``labels``: ``(batch, 1 + tags)``."""
    import torch

    w = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = (outputs["logits"] if isinstance(outputs, dict) else outputs[0]).float()
        label = labels[:, 0].long()
        per_item = torch.nn.functional.cross_entropy(logits[:, :n_labels], label,
                                                     weight=None if w is None else w.to(logits.device),
                                                     reduction="none")
        # The Trainer counts every entry of ``labels`` as an item: (1 + tags) per row.
        rows = num_items_in_batch / labels.shape[1] if num_items_in_batch is not None else labels.shape[0]
        tags = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, n_labels:], labels[:, 1:].float(),
                                                                    reduction="none").mean(dim=1)
        return (per_item + tag_weight * tags).sum() / rows

    return compute_loss
