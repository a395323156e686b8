"""Tactic tags: a second, multi-label head beside a model's label head.

A model folder with a tag head holds ``tag_head.safetensors`` (``weight``: ``(n_tags, features)``,
``bias``: ``(n_tags,)``) and a ``tags`` section in its manifest (:class:`TagSpec`: the tag names
in head order and a threshold per tag, picked on the validation split). The tag head reads the
same features as the label head's output layer (for BERT: the pooled first token), so it costs
one small matrix multiply: at load time its rows are appended to that output layer
(:func:`widen_output_layer`), and the model's logits are ``[labels..., tags...]``;
:func:`head_probabilities` turns them into a softmax over the labels and a sigmoid per tag.

A tag model can instead stand beside the network (``TagSpec.kind == "tfidf"``, recipe
``tags.mode: tfidf``): the folder then holds ``tag_tfidf.json``, word 1-2 gram TF-IDF and one
logistic regression per tag, exported from scikit-learn as plain JSON and scored with numpy
(:class:`infer.blend.TfidfLogRegScorer` with ``multilabel``; :func:`load_tag_tfidf`). The network
is then a plain classifier trained without any tag loss, so the tags cannot change its labels.
The manifest's ``tags.kind`` says which (absent in older folders: ``joint``).

The tag names come from the model folder, never from ``train``: training writes the list it
trained (``train.corpus.schema.TACTIC_TAGS`` for the shipped corpus) into the manifest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

#: The tag head's weights in a model folder (``kind: joint``).
TAG_HEAD_FILE = "tag_head.safetensors"
#: The separate TF-IDF tag model in a model folder (``kind: tfidf``).
TAG_TFIDF_FILE = "tag_tfidf.json"
#: ``TagSpec.kind`` values: a head on the network trained jointly with the label, or a separate
#: TF-IDF + logistic regression model.
TAG_KINDS = ("joint", "tfidf")


@dataclasses.dataclass(frozen=True)
class TagSpec:
    """The tag model of a model folder: tag names in head order, a probability threshold per
    tag (a tag is shown when its probability is at least its threshold), and its ``kind``
    (``joint``: ``tag_head.safetensors`` on the network's output layer; ``tfidf``: the separate
    ``tag_tfidf.json``)."""

    names: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None
    kind: str = "joint"

    def __post_init__(self):
        if self.kind not in TAG_KINDS:
            raise ValueError(f"tags: kind must be one of {', '.join(TAG_KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"tags: need distinct tag names, got {list(self.names)}")
        if self.thresholds is not None:
            values = tuple(float(t) for t in self.thresholds)
            if len(values) != len(self.names):
                raise ValueError(f"tags: {len(values)} thresholds for {len(self.names)} tags")
            if not all(0.0 <= t <= 1.0 for t in values):
                raise ValueError(f"tags: thresholds must be in [0, 1], got {list(values)}")
            object.__setattr__(self, "thresholds", values)

    @property
    def in_network(self) -> bool:
        """Whether the tag probabilities come out of the network (a joint head)."""
        return self.kind == "joint"

    @property
    def decision_thresholds(self) -> np.ndarray:
        """Per tag: its threshold, 0.5 where none was picked."""
        return np.array(self.thresholds if self.thresholds is not None else [0.5] * len(self.names))

    def with_thresholds(self, thresholds: Sequence[float]) -> "TagSpec":
        return dataclasses.replace(self, thresholds=tuple(thresholds))

    def decide(self, tag_probs: np.ndarray) -> np.ndarray:
        """Boolean ``(rows, tags)``: which tags each row shows."""
        return np.asarray(tag_probs) >= self.decision_thresholds[None, :]

    def tags_of(self, tag_probs_row: np.ndarray) -> list[str]:
        """The names of the tags one row shows, in head order."""
        shown = self.decide(np.asarray(tag_probs_row)[None, :])[0]
        return [name for name, on in zip(self.names, shown) if on]

    def targets(self, tag_lists: Sequence[Sequence[str] | None]) -> np.ndarray:
        """0/1 ``(rows, tags)`` from per-row tag lists (None or missing: no tags). Unknown tag
        names raise a ``ValueError`` naming them."""
        index = {name: i for i, name in enumerate(self.names)}
        out = np.zeros((len(tag_lists), len(self.names)), dtype=np.float32)
        unknown = set()
        for row, tags in enumerate(tag_lists):
            for tag in tags or ():
                if tag in index:
                    out[row, index[tag]] = 1.0
                else:
                    unknown.add(str(tag))
        if unknown:
            raise ValueError(f"tags {sorted(unknown)} are not among the model's tags {list(self.names)}")
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "names": list(self.names),
                "thresholds": None if self.thresholds is None else list(self.thresholds)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "TagSpec | None":
        if not data:
            return None
        return cls(tuple(data["names"]), data.get("thresholds"), data.get("kind", "joint"))


def output_layer(model, n_out: int):
    """The label head's output layer: the last ``nn.Linear`` with ``n_out`` outputs (BERT's
    ``classifier``, RoBERTa's ``classifier.out_proj``, a decoder's ``score``)."""
    import torch

    found = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == n_out:
            found = module
    if found is None:
        raise ValueError(f"no linear output layer with {n_out} outputs in {type(model).__name__}: "
                         "a tag head needs one")
    return found


def widen_output_layer(model, n_labels: int, weight, bias) -> None:
    """Append the tag head's rows to the label head's output layer, in place: the model's logits
    become ``[labels..., tags...]``. For a model this code owns (loaded or being trained)."""
    import torch

    layer = output_layer(model, n_labels)
    if weight.shape[1] != layer.in_features:
        raise ValueError(f"tag head reads {weight.shape[1]} features, the output layer gives {layer.in_features}")
    ref = layer.weight
    with torch.no_grad():
        new_w = torch.cat([ref.detach(), weight.to(ref.device, ref.dtype)])
        old_b = layer.bias.detach() if layer.bias is not None else torch.zeros(n_labels, device=ref.device,
                                                                                 dtype=ref.dtype)
        new_b = torch.cat([old_b, bias.to(ref.device, ref.dtype)])
    layer.weight = torch.nn.Parameter(new_w, requires_grad=ref.requires_grad)
    layer.bias = torch.nn.Parameter(new_b, requires_grad=ref.requires_grad)
    layer.out_features = new_w.shape[0]


def split_output_layer(model, n_labels: int, n_tags: int):
    """Undo :func:`widen_output_layer`: the output layer keeps the label rows (so the model saves
    as a plain classifier) and the tag head's ``(weight, bias)`` is returned."""
    import torch

    layer = output_layer(model, n_labels + n_tags)
    with torch.no_grad():
        weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.weight = torch.nn.Parameter(weight[:n_labels].clone())
    layer.bias = torch.nn.Parameter(bias[:n_labels].clone())
    layer.out_features = n_labels
    return weight[n_labels:].contiguous(), bias[n_labels:].contiguous()


def head_probabilities(logits, n_labels: int):
    """``[softmax over the labels, sigmoid per tag]`` from ``[label logits, tag logits]``."""
    import torch

    probs = torch.softmax(logits[:, :n_labels], dim=-1)
    if logits.shape[1] == n_labels:
        return probs
    return torch.cat([probs, torch.sigmoid(logits[:, n_labels:])], dim=1)


def save_tag_head(folder: str | Path, weight, bias) -> Path:
    from safetensors.torch import save_file

    path = Path(folder, TAG_HEAD_FILE)
    save_file({"weight": weight.detach().float().cpu().contiguous(), "bias": bias.detach().float().cpu().contiguous()},
              str(path))
    return path


def load_tag_head(folder: str | Path, spec: TagSpec):
    """The tag head's ``(weight, bias)``; a missing file or a shape that does not match the
    manifest's tag list raises ``ValueError``."""
    from safetensors.torch import load_file

    path = Path(folder, TAG_HEAD_FILE)
    if not path.is_file():
        raise ValueError(f"the manifest lists {len(spec.names)} tags but {TAG_HEAD_FILE} is missing")
    tensors = load_file(str(path))
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or bias is None or weight.dim() != 2 or weight.shape[0] != len(spec.names) \
            or tuple(bias.shape) != (len(spec.names),):
        raise ValueError(f"{TAG_HEAD_FILE} does not hold a head for the manifest's {len(spec.names)} tags")
    return weight, bias


def load_tag_tfidf(folder: str | Path, spec: TagSpec):
    """The separate tag model (:class:`infer.blend.TfidfLogRegScorer`, multi-label); a missing
    or malformed file, or one that does not score the manifest's tags, raises ``ValueError``."""
    from .blend import TfidfLogRegScorer

    path = Path(folder, TAG_TFIDF_FILE)
    if not path.is_file():
        raise ValueError(f"the manifest lists {len(spec.names)} tags (kind tfidf) but {TAG_TFIDF_FILE} is missing")
    try:
        scorer = TfidfLogRegScorer.load(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot load {TAG_TFIDF_FILE}: {err}") from None
    if not scorer.multilabel or scorer.coef.shape[0] != len(spec.names):
        raise ValueError(f"{TAG_TFIDF_FILE} does not hold a multi-label model for the manifest's "
                         f"{len(spec.names)} tags")
    return scorer
