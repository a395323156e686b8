"""Load a saved outreach-guard model folder and score texts with it."""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .batching import batch_width, length_sorted_batches
from .device import configure_threads, resolve_precision, select_device, torch_dtype, tune_cpu_allocator
from .layers import (FirstTokenLayer, FusedSelfAttention, compute_last_layer_for_first_token,  # noqa: F401
                     fuse_self_attention, prepack_linear_layers)
from .text import TextSettings, tokenize

logger = logging.getLogger(__name__)

#: The file in a model folder that holds what transformers' config does not: label order,
#: positive label, decision threshold and text settings.
PIPELINE_FILE = "outreach_guard.json"
FORMAT_VERSION = 1
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


#: Attention cores a classifier can use in its fused self-attention layers.
ATTENTION_CORES = ("auto", "sdpa", "matmul")


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


def decide_labels(config: PipelineConfig, probs: np.ndarray) -> list[str]:
    """Labels from probabilities: the saved threshold for binary models, else argmax."""
    labels = config.labels
    if config.positive_label is not None and config.threshold is not None and len(labels) == 2:
        positive = labels.index(config.positive_label)
        return [labels[positive] if p >= config.threshold else labels[1 - positive] for p in probs[:, positive]]
    return [labels[i] for i in probs.argmax(axis=1)]


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
    """A sequence classifier plus the text pipeline and decision rule it was trained with.

    Scoring path: texts are normalised and tokenised in blocks, the next block on a background
    thread while the model runs on the current one; each block is cut into length-sorted
    batches under a token budget, padded to a multiple of ``pad_multiple`` (few distinct
    shapes: steady memory, reused kernels), run under ``torch.inference_mode`` (on CPU with the
    encoder's linear layers on prepacked oneDNN weights, see ``infer.layers``), and the
    probabilities are written back by index, so rows come back in input order.
    """

    def __init__(self, model, tokenizer, config: PipelineConfig, device: torch.device, precision: str = "fp32",
                 max_tokens: int | None = None, max_batch_size: int | None = None, pad_multiple: int = 8,
                 encode_block_size: int | None = None, compile_model: bool = False, attention: str = "auto",
                 prepack_weights: bool | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.precision = precision
        gpu = device.type == "cuda"
        # Token budget per batch. A CPU works best on batches that stay in cache; a GPU wants
        # big batches to fill its cores.
        self.max_tokens = max_tokens or (65536 if gpu else 2048)
        self.max_batch_size = max_batch_size or (1024 if gpu else 64)
        self.pad_multiple = pad_multiple
        # Rows tokenised, length-sorted and batched together. On CPU a big block (the CLI's whole
        # 2,048-row chunk) cuts padding (6.6% -> 4.1% of computed tokens, measured +4% msgs/s);
        # both cores are busy with the model anyway, so overlapping tokenisation buys little. A
        # GPU keeps the CPU tokenising the next block while it computes this one.
        self.encode_block_size = encode_block_size or (1024 if gpu else 2048)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._positive_index = config.labels.index(config.positive_label) if config.positive_label else None
        self.first_token_last_layer = compute_last_layer_for_first_token(model)
        # attention: "auto", "sdpa" (PyTorch's fused kernel) or "matmul" (plain matmul + softmax).
        # auto: on CPU in bf16/fp16, matmul + softmax beats the fused kernel at message lengths
        # (see infer.layers); elsewhere, and under torch.compile, the fused kernel.
        if attention not in ATTENTION_CORES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_CORES)}, got {attention!r}")
        manual = attention == "matmul" or (attention == "auto" and device.type == "cpu"
                                           and precision in ("bf16", "fp16") and not compile_model)
        self.fused_attention_layers = fuse_self_attention(model, manual_attention=manual)
        self.attention = "none" if not self.fused_attention_layers else "matmul+softmax" if manual else "sdpa"
        # prepack_weights (default: on CPU, not under torch.compile): the encoder's linear layers
        # as oneDNN matmuls on prepacked weights with bias and residual fused (infer.layers). The
        # model is then for CPU inference only; False keeps plain nn.Linear layers.
        if prepack_weights is None:
            prepack_weights = device.type == "cpu" and not compile_model
        self.prepacked_linear_layers = prepack_linear_layers(model) if prepack_weights else 0
        # dynamic=True: one compiled graph serves every batch shape instead of one per shape.
        self._run_model = torch.compile(model, dynamic=True) if compile_model else model

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def threshold(self) -> float | None:
        return self.config.threshold

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None, precision: str = "auto",
                        allow_pickle: bool = False, trust_remote_code: bool = False, threads: int | None = None,
                        **kwargs) -> "Classifier":
        """Load a model folder. ``precision``: ``auto`` (bf16 where the hardware runs it natively,
        else fp32), ``fp32``, ``bf16`` or ``fp16``. On CPU, ``threads`` (default: every usable
        CPU, or ``OMP_NUM_THREADS``) sets torch's thread count. Other keyword arguments go to
        the constructor (``max_tokens``, ``max_batch_size``, ``compile_model``, ``attention``,
        ``prepack_weights`` ...).
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path)
        if not folder.is_dir():
            raise ModelFolderError(f"{folder}: model folder does not exist")
        if not (folder / "config.json").is_file():
            raise ModelFolderError(f"{folder}: missing config.json")
        try:
            json.loads((folder / "config.json").read_text())
        except ValueError as err:
            raise ModelFolderError(f"{folder}: malformed config.json: {err}") from None
        # Without its files AutoTokenizer quietly builds an empty vocabulary and every text scores alike.
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise ModelFolderError(f"{folder}: missing tokenizer files (expected tokenizer.json)")
        config = PipelineConfig.load(folder)
        check_weights_format(folder, allow_pickle)
        dev = select_device(device)
        precision = resolve_precision(precision, dev)
        if dev.type == "cpu":
            configure_threads(threads)
            tune_cpu_allocator()
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        except Exception as err:  # noqa: BLE001 - transformers raises many types here
            raise ModelFolderError(f"{folder}: cannot load tokenizer (tokenizer*.json files): {err}") from None
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, use_safetensors=not allow_pickle or None, trust_remote_code=trust_remote_code,
                dtype=torch_dtype(precision),
            )
        except Exception as err:  # noqa: BLE001
            if "mismatched_sizes" in str(err):  # transformers points at a multi-line report instead
                err = "their shapes do not match config.json (is num_labels / id2label right?)"
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
        classifier = cls(model, tokenizer, config, dev, precision, **kwargs)
        logger.info("loaded %s on %s (%s, %d threads%s%s%s)", folder, dev, precision, torch.get_num_threads(),
                    ", last layer for the first token only" if classifier.first_token_last_layer else "",
                    f", fused QKV ({classifier.attention} attention) in {classifier.fused_attention_layers} layers"
                    if classifier.fused_attention_layers else "",
                    f", {classifier.prepacked_linear_layers} linear layers on prepacked oneDNN weights"
                    if classifier.prepacked_linear_layers else "")
        return classifier

    # -- encoding -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids per window and the text each window belongs to (see ``infer.text.tokenize``)."""
        return tokenize(self.tokenizer, texts, self.config.text, windows=True)

    def _encoded_blocks(self, texts: list[str]) -> Iterator[tuple[int, list[list[int]], list[int]]]:
        """``(start, windows, owners)`` per block of texts; the next block is tokenised on a
        background thread (the Rust tokenizer releases the GIL) while the caller scores this one."""
        size = self.encode_block_size
        if len(texts) <= size:
            yield 0, *self.encode(texts)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-guard-tokenize") as pool:
            pending = pool.submit(self.encode, texts[:size])
            for start in range(0, len(texts), size):
                windows, owners = pending.result()
                if start + size < len(texts):
                    pending = pool.submit(self.encode, texts[start + size:start + 2 * size])
                yield start, windows, owners

    # -- scoring --------------------------------------------------------------------------

    def _padded_batch(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = np.fromiter((len(ids) for ids in batch), dtype=np.int64, count=len(batch))
        longest = int(lengths.max())
        width = batch_width(longest, self.pad_multiple, self.config.text.max_length)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
        attention = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        return torch.from_numpy(input_ids), torch.from_numpy(attention)

    @torch.inference_mode()
    def _forward_on_device(self, batch: list[list[int]]) -> torch.Tensor:
        """Probabilities for one batch of token-id lists, rows in the given order, on ``self.device``."""
        input_ids, attention = self._padded_batch(batch)
        if self.device.type == "cuda":
            # Pinned host memory lets the copy run asynchronously while the GPU computes.
            input_ids, attention = input_ids.pin_memory(), attention.pin_memory()
        non_blocking = self.device.type == "cuda"
        logits = self._run_model(input_ids=input_ids.to(self.device, non_blocking=non_blocking),
                                 attention_mask=attention.to(self.device, non_blocking=non_blocking)).logits
        return torch.softmax(logits.float(), dim=-1)

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        return self._forward_on_device(batch).cpu().numpy()

    def _score_windows(self, windows: list[list[int]]) -> np.ndarray:
        """Probabilities per window, in the order given."""
        order: list[int] = []
        parts: list[torch.Tensor] = []
        lengths = [len(w) for w in windows]
        for batch in length_sorted_batches(lengths, self.max_tokens, self.max_batch_size, self.pad_multiple):
            parts.append(self._forward_on_device([windows[i] for i in batch]))
            order.extend(batch)
        # One device-to-host copy per block: per-batch copies would stall a GPU each time.
        probs = torch.cat(parts).cpu().numpy()
        out = np.empty_like(probs)
        out[order] = probs
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape ``(len(texts), len(labels))``, rows in input order."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, expected str")
        probs = np.zeros((len(texts), len(self.config.labels)), dtype=np.float32)
        if not texts:
            return probs
        for start, windows, owners in self._encoded_blocks(texts):
            window_probs = self._score_windows(windows)
            count = min(self.encode_block_size, len(texts) - start)
            if len(windows) == count:
                probs[start:start + count] = window_probs
            else:
                probs[start:start + count] = self._aggregate_windows(window_probs, owners, count)
        return probs

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
        return decide_labels(self.config, probs)

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
