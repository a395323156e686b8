"""The model-folder manifest: everything outreach-guard adds to a ``save_pretrained`` folder.

transformers' ``config.json`` describes the network; ``outreach_guard.json`` describes the task
it was trained for and how to use it: the label head (label order, positive label, decision
threshold), the text pipeline, the base model and where the model came from (the command, the
recipe, the data, package versions). :class:`ModelManifest` is the one reader and writer of
that file, and :class:`TaskSpec` the one place that turns probabilities into decisions, so
scoring, metrics, plots, reports and benchmarks agree on what "positive" and "flagged" mean.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .io.readers import InputError
from .tags import TagSpec
from .text import TextSettings

#: The file in a model folder that this module reads and writes.
MANIFEST_FILE = "outreach_guard.json"
#: Evaluation results written next to the manifest by training (``metrics.json``).
METRICS_FILE = "metrics.json"
#: 3 added ``head``, ``temperature``, ``blend`` and ``tags``; folders without them still write 2.
#: 4 added ``blend.combine: logistic``; folders without it still write 3 (or 2), so that an older
#: runtime refuses a stacked folder by its version instead of averaging it.
FORMAT_VERSION = 4
#: ``head.pooling`` values: ``model`` (the architecture's own sequence-classification head) or
#: ``mean`` (:class:`infer.heads.MeanPoolingClassifier`).
POOLINGS = ("model", "mean")


class ModelFolderError(ValueError):
    """A model folder is missing a file, has a malformed one, or its parts disagree."""


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A classification task: label order, and for binary tasks the positive label and the
    decision threshold on its probability.

    Binary (two labels and a positive label): the score is the positive class's probability and
    a row is positive when its score is at least ``threshold`` (0.5 when none is set).
    Otherwise: the score is the top probability and the decision is the argmax.
    """

    labels: tuple[str, ...]
    positive_label: str | None = None
    threshold: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"a task needs at least two distinct labels, got {list(self.labels)}")
        if self.positive_label is not None and self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not one of {list(self.labels)}")
        if self.threshold is not None:
            if not 0.0 <= float(self.threshold) <= 1.0:
                raise ValueError(f"threshold {self.threshold} is outside [0, 1]")
            object.__setattr__(self, "threshold", float(self.threshold))

    @classmethod
    def for_labels(cls, labels, positive_label: str | None) -> "TaskSpec":
        """The task of a model trained on ``labels``: ``positive_label`` counts only for
        two-label tasks (more labels decide by argmax)."""
        labels = tuple(labels)
        return cls(labels, positive_label if len(labels) == 2 else None)

    @property
    def binary(self) -> bool:
        return self.positive_label is not None and len(self.labels) == 2

    @property
    def positive_index(self) -> int | None:
        return self.labels.index(self.positive_label) if self.binary else None

    @property
    def decision_threshold(self) -> float | None:
        """The threshold binary decisions use (0.5 when none was picked); None for argmax tasks."""
        if not self.binary:
            return None
        return 0.5 if self.threshold is None else self.threshold

    def with_threshold(self, threshold: float | None) -> "TaskSpec":
        return dataclasses.replace(self, threshold=threshold)

    def label_indices(self, names: Sequence[str], where: str = "data") -> np.ndarray:
        """Label names as indices into ``labels``; an unknown name is an :class:`InputError` naming it."""
        index = {name: i for i, name in enumerate(self.labels)}
        unknown = sorted({str(n) for n in names if n not in index})
        if unknown:
            raise InputError(f"{where}: labels {unknown} are not among the model's labels {list(self.labels)}; "
                             "map them with a label map (--label-map RAW=LABEL)")
        return np.array([index[n] for n in names], dtype=int)

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """Per row: the positive class's probability (binary), else the top probability."""
        probs = np.asarray(probs)
        return probs[:, self.positive_index] if self.binary else probs.max(axis=1)

    def decide_indices(self, probs: np.ndarray) -> np.ndarray:
        """Predicted class index per row: the threshold on the positive class, else argmax."""
        probs = np.asarray(probs)
        if self.binary:
            k = self.positive_index
            return np.where(probs[:, k] >= self.decision_threshold, k, 1 - k)
        return probs.argmax(axis=1)

    def decide(self, probs: np.ndarray) -> list[str]:
        return [self.labels[i] for i in self.decide_indices(probs)]

    def to_dict(self) -> dict:
        return {"labels": list(self.labels), "positive_label": self.positive_label, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict) -> "TaskSpec":
        return cls(tuple(data["labels"]), data.get("positive_label"), data.get("threshold"))


@dataclasses.dataclass(frozen=True)
class ModelManifest:
    """Contents of ``outreach_guard.json``.

    ``task``: the label head. ``text``: the text pipeline the model was trained with.
    ``base_model``: what was fine-tuned. ``provenance``: how the folder was made (``command``,
    ``recipe``, ``data``, ``method``, ``versions``, ``created``); free-form, for people and
    benchmarks, never needed to score. ``tags``: the tactic-tag model (:class:`infer.tags.TagSpec`;
    its ``kind``: a joint head on the network or a separate TF-IDF model), None when the model has none.

    How the network's outputs become probabilities: ``pooling`` (``model``: the architecture's
    own sequence-classification head; ``mean``: :class:`infer.heads.MeanPoolingClassifier`),
    ``temperature`` (the label logits are divided by it; fitted on validation) and ``blend``
    (``None``, or a second model averaged into the label probabilities, see :mod:`infer.blend`).
    """

    task: TaskSpec
    text: TextSettings = TextSettings()
    base_model: str | None = None
    provenance: dict = dataclasses.field(default_factory=dict)
    tags: TagSpec | None = None
    pooling: str = "model"
    temperature: float = 1.0
    blend: dict | None = None

    def __post_init__(self):
        from .blend import check_blend

        if self.pooling not in POOLINGS:
            raise ValueError(f"head.pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        object.__setattr__(self, "temperature", float(self.temperature))
        if self.blend is not None:
            check_blend(self.blend, self.task.labels, self.task.positive_label)

    # Convenience views of the label head.
    @property
    def labels(self) -> list[str]:
        return list(self.task.labels)

    @property
    def positive_label(self) -> str | None:
        return self.task.positive_label

    @property
    def threshold(self) -> float | None:
        return self.task.threshold

    def replace(self, **changes: Any) -> "ModelManifest":
        return dataclasses.replace(self, **changes)

    @property
    def plain(self) -> bool:
        """Whether the folder needs nothing beyond format version 2 (transformers' own head, no
        temperature, blend or tag head)."""
        return self.pooling == "model" and self.temperature == 1.0 and self.blend is None and self.tags is None

    @property
    def format_version(self) -> int:
        """The oldest format that holds this manifest: 2 when :attr:`plain`, 4 with a stacked
        blend, else 3."""
        if self.plain:
            return 2
        return 4 if (self.blend or {}).get("combine") == "logistic" else 3

    def to_dict(self) -> dict:
        data = {"format_version": self.format_version, "task": self.task.to_dict(),
                "text": self.text.to_dict(), "base_model": self.base_model, "provenance": self.provenance}
        if self.tags is not None:  # absent, not null, without a tag head
            data["tags"] = self.tags.to_dict()
        if not self.plain:
            data.update(head={"pooling": self.pooling}, temperature=self.temperature, blend=self.blend)
        return data

    def save(self, folder: str | Path) -> Path:
        path = Path(folder, MANIFEST_FILE)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict) -> "ModelManifest":
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        version = int(data.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise ValueError(f"format_version {version} is newer than this outreach-guard reads ({FORMAT_VERSION})")
        task = data["task"] if version >= 2 else data  # version 1 kept the task's fields at the top
        return cls(TaskSpec.from_dict(task), TextSettings.from_dict(data.get("text")), data.get("base_model"),
                   dict(data.get("provenance") or {}), TagSpec.from_dict(data.get("tags")),
                   pooling=(data.get("head") or {}).get("pooling", "model"),
                   temperature=data.get("temperature", 1.0), blend=data.get("blend"))

    @classmethod
    def load(cls, folder: str | Path) -> "ModelManifest":
        path = Path(folder, MANIFEST_FILE)
        if not path.is_file():
            raise ModelFolderError(f"{folder}: missing {MANIFEST_FILE} (not an outreach-guard model folder?)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as err:
            raise ModelFolderError(f"{path}: malformed: {err}") from None

    @staticmethod
    def load_metrics(folder: str | Path) -> dict | None:
        """The evaluation results training wrote next to the manifest, if any."""
        path = Path(folder, METRICS_FILE)
        return json.loads(path.read_text()) if path.is_file() else None

    @staticmethod
    def save_metrics(folder: str | Path, metrics: dict) -> Path:
        path = Path(folder, METRICS_FILE)
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        return path
