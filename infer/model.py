"""Load a saved outreach-guard model folder and score texts with it."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .batching import length_sorted_batches
from .device import resolve_precision, select_device, torch_dtype
from .text import TextSettings, tokenize

logger = logging.getLogger(__name__)

#: The file in a model folder that holds what transformers' config does not: label order,
#: positive label, decision threshold and text settings.
PIPELINE_FILE = "outreach_guard.json"
FORMAT_VERSION = 1


class ModelFolderError(ValueError):
    """A model folder is missing a file, has a malformed one, or its parts disagree."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # probability of the positive class
    probs: dict[str, float]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Contents of ``outreach_guard.json``."""

    labels: list[str]
    positive_label: str | None
    threshold: float | None
    text: TextSettings
    base_model: str | None = None

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels),
            "positive_label": self.positive_label,
            "threshold": self.threshold,
            "text": self.text.to_dict(),
            "base_model": self.base_model,
        }

    def save(self, folder: str | Path) -> None:
        Path(folder, PIPELINE_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "PipelineConfig":
        path = Path(folder, PIPELINE_FILE)
        if not path.is_file():
            raise ModelFolderError(f"{folder}: missing {PIPELINE_FILE} (not an outreach-guard model folder?)")
        try:
            data = json.loads(path.read_text())
            labels = [str(x) for x in data["labels"]]
            text = TextSettings.from_dict(data.get("text"))
        except (ValueError, KeyError, TypeError) as err:
            raise ModelFolderError(f"{path}: malformed: {err}") from None
        positive, threshold = data.get("positive_label"), data.get("threshold")
        if positive is not None and positive not in labels:
            raise ModelFolderError(f"{path}: positive_label {positive!r} is not one of {labels}")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ModelFolderError(f"{path}: threshold {threshold} is outside [0, 1]")
        return cls(labels, positive, None if threshold is None else float(threshold), text, data.get("base_model"))


def check_weights_format(folder: Path, allow_pickle: bool) -> None:
    """Refuse pickle checkpoints unless asked: unpickling runs arbitrary code."""
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        return
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
    if pickles and not allow_pickle:
        raise ModelFolderError(
            f"{folder}: weights are pickle files ({', '.join(pickles)}), which can run arbitrary code when "
            "loaded. Convert them to safetensors, or pass allow_pickle=True (--allow-pickle) if you trust the source."
        )
    if not pickles:
        raise ModelFolderError(f"{folder}: no weights found (expected model.safetensors)")


class Classifier:
    """A sequence classifier plus the text pipeline and decision rule it was trained with."""

    def __init__(self, model, tokenizer, config: PipelineConfig, device: torch.device, precision: str = "fp32",
                 max_tokens: int | None = None, max_batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.precision = precision
        self.max_batch_size = max_batch_size
        # A token budget per batch; GPUs take far bigger batches than CPUs usefully can.
        self.max_tokens = max_tokens or (65536 if device.type == "cuda" else 8192)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._positive_index = config.labels.index(config.positive_label) if config.positive_label else None

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def threshold(self) -> float | None:
        return self.config.threshold

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None, precision: str = "auto",
                        allow_pickle: bool = False, trust_remote_code: bool = False, **kwargs) -> "Classifier":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path)
        if not folder.is_dir():
            raise ModelFolderError(f"{folder}: model folder does not exist")
        if not (folder / "config.json").is_file():
            raise ModelFolderError(f"{folder}: missing config.json")
        config = PipelineConfig.load(folder)
        check_weights_format(folder, allow_pickle)
        dev = select_device(device)
        precision = resolve_precision(precision, dev)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        except Exception as err:  # noqa: BLE001 - transformers raises many types here
            raise ModelFolderError(f"{folder}: cannot load tokenizer: {err}") from None
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, use_safetensors=not allow_pickle or None, trust_remote_code=trust_remote_code,
                dtype=torch_dtype(precision),
            )
        except Exception as err:  # noqa: BLE001
            raise ModelFolderError(f"{folder}: cannot load model weights: {err}") from None
        id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if id2label != config.labels:
            raise ModelFolderError(
                f"{folder}: label map {config.labels} in {PIPELINE_FILE} does not match the model's "
                f"{model.config.num_labels} outputs {id2label}"
            )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        model.to(dev).eval()
        logger.info("loaded %s on %s (%s)", folder, dev, precision)
        return cls(model, tokenizer, config, dev, precision, **kwargs)

    # -- encoding -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids per window and the text each window belongs to (see ``infer.text.tokenize``)."""
        return tokenize(self.tokenizer, texts, self.config.text, windows=True)

    # -- scoring --------------------------------------------------------------------------

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        longest = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), longest), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
        non_blocking = self.device.type == "cuda"
        if non_blocking:
            input_ids, attention = input_ids.pin_memory(), attention.pin_memory()
        logits = self.model(input_ids=input_ids.to(self.device, non_blocking=non_blocking),
                            attention_mask=attention.to(self.device, non_blocking=non_blocking)).logits
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape ``(len(texts), len(labels))``, rows in input order."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, expected str")
        if len(texts) == 0:
            return np.zeros((0, len(self.config.labels)), dtype=np.float32)
        windows, owners = self.encode(texts)
        window_probs = np.zeros((len(windows), len(self.config.labels)), dtype=np.float32)
        lengths = [len(w) for w in windows]
        for batch in length_sorted_batches(lengths, self.max_tokens, self.max_batch_size):
            window_probs[batch] = self._forward([windows[i] for i in batch])
        if len(windows) == len(texts):
            return window_probs
        return self._aggregate_windows(window_probs, owners, len(texts))

    def _aggregate_windows(self, window_probs: np.ndarray, owners: list[int], n: int) -> np.ndarray:
        # A long message is as suspicious as its most suspicious window.
        key = self._positive_index if self._positive_index is not None else int(np.argmax(window_probs.sum(0)))
        out = np.zeros((n, window_probs.shape[1]), dtype=np.float32)
        best = np.full(n, -1.0)
        for w, owner in enumerate(owners):
            if window_probs[w, key] > best[owner]:
                best[owner] = window_probs[w, key]
                out[owner] = window_probs[w]
        return out

    def decide(self, probs: np.ndarray) -> list[str]:
        """Labels from probabilities: the saved threshold for binary models, else argmax."""
        labels = self.config.labels
        if self._positive_index is not None and self.config.threshold is not None and len(labels) == 2:
            negative = 1 - self._positive_index
            return [labels[self._positive_index] if p >= self.config.threshold else labels[negative]
                    for p in probs[:, self._positive_index]]
        return [labels[i] for i in probs.argmax(axis=1)]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Per text: the label, the positive-class probability and all class probabilities."""
        probs = self.predict_proba(texts)
        labels = self.config.labels
        decided = self.decide(probs)
        out = []
        for row, label in zip(probs, decided):
            score = float(row[self._positive_index]) if self._positive_index is not None else float(row.max())
            out.append(Prediction(label, score, {name: float(p) for name, p in zip(labels, row)}))
        return out
