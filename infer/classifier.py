"""Load a saved outreach-guard model folder and score texts with it."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .batching import batch_width, length_sorted_batches
from .blend import TfidfLogRegScorer, apply_temperature, combine_probs
from .device import resolve_precision, select_device, torch_dtype
from .fastpath import FastPathReport, optimize_for_inference
from .heads import MeanPoolingClassifier
from .manifest import MANIFEST_FILE, ModelFolderError, ModelManifest, TaskSpec
from .tags import head_probabilities, load_tag_head, load_tag_tfidf, widen_output_layer
from .text import tokenize

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


@dataclasses.dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # probability of the positive class (binary tasks), else of the top class
    probs: dict[str, float]
    # Models with a tag model (infer.tags): tag -> probability, and the tags over their thresholds.
    tactics: dict[str, float] | None = None
    tags: list[str] | None = None
    # Only when asked for (infer.explain): the sentences that most raise the score.
    evidence: list[dict] | None = None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ("tactics", "tags", "evidence"):
            if out[key] is None:
                del out[key]
        return out


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
    shapes: steady memory, reused kernels), run under ``torch.inference_mode``, and the
    probabilities are written back by index, so rows come back in input order.

    The constructor uses ``model`` as given and changes nothing outside this object: neither
    the model (layer rewrites are :func:`infer.fastpath.optimize_for_inference`, applied by
    :meth:`from_pretrained` to the model it loads) nor process-wide settings (threads and the
    allocator are the caller's: :func:`infer.device.configure_threads`,
    :func:`infer.device.tune_cpu_allocator`).
    """

    def __init__(self, model, tokenizer, manifest: ModelManifest, device: torch.device, precision: str = "fp32",
                 max_tokens: int | None = None, max_batch_size: int | None = None, pad_multiple: int = 8,
                 encode_block_size: int | None = None, compile_model: bool = False,
                 fast_path: FastPathReport | None = None, blend: TfidfLogRegScorer | None = None,
                 tag_model: TfidfLogRegScorer | None = None):
        if manifest.blend is not None and blend is None:
            raise ValueError("the manifest blends in a second model: pass it as blend= (from_pretrained loads it)")
        if manifest.tags is not None and not manifest.tags.in_network and tag_model is None:
            raise ValueError("the manifest's tags come from a separate TF-IDF model: pass it as tag_model= "
                             "(from_pretrained loads it)")
        self.model = model
        self.blend = blend
        self.tag_model = tag_model  # the separate tag model (tags kind tfidf), else None
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.device = torch.device(device)
        self.precision = precision
        self.fast_path = fast_path or FastPathReport()
        gpu = self.device.type == "cuda"
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
        # dynamic=True: one compiled graph serves every batch shape instead of one per shape.
        self._run_model = torch.compile(model, dynamic=True) if compile_model else model

    @property
    def task(self) -> TaskSpec:
        return self.manifest.task

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @property
    def threshold(self) -> float | None:
        return self.manifest.threshold

    # What the fast path did (see infer.fastpath).
    @property
    def first_token_last_layer(self) -> bool:
        return self.fast_path.first_token_last_layer

    @property
    def attention(self) -> str:
        return self.fast_path.attention

    @property
    def fused_attention_layers(self) -> int:
        return self.fast_path.fused_attention_layers

    @property
    def prepacked_linear_layers(self) -> int:
        return self.fast_path.prepacked_linear_layers

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None, precision: str = "auto",
                        allow_pickle: bool = False, trust_remote_code: bool = False, *, fast_path: bool = True,
                        attention: str = "auto", prepack_weights: bool | None = None, compile_model: bool = False,
                        **kwargs) -> "Classifier":
        """Load a model folder. ``precision``: ``auto`` (bf16 where the hardware runs it natively,
        else fp32), ``fp32``, ``bf16`` or ``fp16``. ``fast_path`` (default on): apply
        :func:`infer.fastpath.optimize_for_inference` (``attention``, ``prepack_weights``) to
        the loaded model, which this classifier owns. Other keyword arguments go to the
        constructor (``max_tokens``, ``max_batch_size`` ...). Leaves torch's thread count and
        the allocator alone.
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
        manifest = ModelManifest.load(folder)
        check_weights_format(folder, allow_pickle)
        dev = select_device(device)
        precision = resolve_precision(precision, dev)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        except Exception as err:  # noqa: BLE001 - transformers raises many types here
            raise ModelFolderError(f"{folder}: cannot load tokenizer (tokenizer*.json files): {err}") from None
        try:
            if manifest.pooling == "mean":
                model = MeanPoolingClassifier.from_pretrained(folder, dtype=torch_dtype(precision),
                                                              use_safetensors=not allow_pickle or None,
                                                              trust_remote_code=trust_remote_code)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    folder, use_safetensors=not allow_pickle or None, trust_remote_code=trust_remote_code,
                    dtype=torch_dtype(precision),
                )
        except Exception as err:  # noqa: BLE001
            if "mismatched_sizes" in str(err):  # transformers points at a multi-line report instead
                err = "their shapes do not match config.json (is num_labels / id2label right?)"
            raise ModelFolderError(f"{folder}: cannot load model weights: {err}") from None
        id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if id2label != manifest.labels:
            raise ModelFolderError(
                f"{folder}: label map {manifest.labels} in {MANIFEST_FILE} does not match the model's "
                f"{model.config.num_labels} outputs {id2label}"
            )
        blend = None
        if manifest.blend is not None:
            try:
                blend = TfidfLogRegScorer.load(folder / manifest.blend["file"])
            except (OSError, ValueError, KeyError) as err:
                raise ModelFolderError(f"{folder}: cannot load the blended model {manifest.blend['file']}: {err}") \
                    from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        tag_model = None
        if manifest.tags is not None:
            try:
                if manifest.tags.in_network:  # the tag head's rows go onto the label head's output layer
                    widen_output_layer(model, len(manifest.labels), *load_tag_head(folder, manifest.tags))
                else:
                    tag_model = load_tag_tfidf(folder, manifest.tags)
            except ValueError as err:
                raise ModelFolderError(f"{folder}: {err}") from None
        if getattr(model.config, "use_cache", False):
            model.config.use_cache = False  # decoders: one forward pass per batch, no KV cache to keep
        model.to(dev).eval()
        report = None
        if fast_path:
            model, report = optimize_for_inference(model, dev, precision, attention=attention,
                                                   prepack_weights=prepack_weights, compile_model=compile_model,
                                                   copy=False)  # the model was loaded here: ours to rewrite
        classifier = cls(model, tokenizer, manifest, dev, precision, compile_model=compile_model, fast_path=report,
                         blend=blend, tag_model=tag_model, **kwargs)
        logger.info("loaded %s on %s (%s; %s)", folder, dev, precision, classifier.fast_path.describe())
        return classifier

    # -- encoding -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids per window and the text each window belongs to (see ``infer.text.tokenize``)."""
        return tokenize(self.tokenizer, texts, self.manifest.text, windows=True)

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
        width = batch_width(longest, self.pad_multiple, self.manifest.text.max_length)
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
        return head_probabilities(logits.float(), len(self.manifest.labels))

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
        """Class probabilities, shape ``(len(texts), len(labels))``, rows in input order: the
        network's (:meth:`model_proba`) at the manifest's temperature, averaged or stacked with the blended
        model's where the folder has one (:mod:`infer.blend`)."""
        texts = list(texts)
        return self.combine(self.model_proba(texts), texts)

    def predict_proba_and_tags(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities (as :meth:`predict_proba`) and, for a model with a tag model (a
        joint head or a separate one), tag probabilities ``(len(texts), len(tags))`` (else None),
        from one pass of the network."""
        texts = list(texts)
        network, tags = self.model_proba_and_tags(texts)
        return self.combine(network, texts), tags

    def model_proba_and_tags(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """The network's own class probabilities (no temperature, no blend) and the tag
        probabilities (None without a tag model), from one pass: a joint head's come out of the
        network, a separate TF-IDF model's (``tags.kind: tfidf``) from it, on each whole text."""
        texts = list(texts)
        outputs = self._predict_outputs(texts)
        n = len(self.manifest.labels)
        spec = self.manifest.tags
        if spec is None:
            return outputs[:, :n], None
        if spec.in_network:
            return outputs[:, :n], outputs[:, n:]
        return outputs[:, :n], self.tag_model.predict_proba(texts).astype(np.float32)

    def combine(self, model_probs: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """What :meth:`predict_proba` returns, from :meth:`model_proba`'s output for ``texts``."""
        probs = apply_temperature(model_probs, self.manifest.temperature)
        if self.blend is None or len(texts) == 0:
            return probs
        return combine_probs(probs, self.blend.predict_proba(list(texts)), self.manifest.blend,
                             self.manifest.task.positive_index if self.manifest.task.binary else None)

    def with_manifest(self, manifest: ModelManifest) -> "Classifier":
        """This classifier (same model, shared) with another manifest's decision rule,
        temperature and blend weight, or without the blend (``blend=None``); training uses it to
        score with what it just fitted, evaluation to score the network alone."""
        if manifest.blend is not None and self.blend is None:
            raise ValueError("this classifier has no blended model to score with")
        if manifest.tags is not None and not manifest.tags.in_network and self.tag_model is None:
            raise ValueError("this classifier has no separate tag model to score with")
        other = copy.copy(self)
        other.manifest = manifest
        other.blend = self.blend if manifest.blend is not None else None
        return other

    def model_proba(self, texts: Sequence[str]) -> np.ndarray:
        """The network's own class probabilities (no temperature, no blend), rows in input order."""
        return self._predict_outputs(texts)[:, :len(self.manifest.labels)]

    def _predict_outputs(self, texts: Sequence[str]) -> np.ndarray:
        """The network's class probabilities, then tag probabilities when the model has a joint tag head."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, expected str")
        tags = self.manifest.tags
        head_tags = len(tags.names) if tags is not None and tags.in_network else 0
        probs = np.zeros((len(texts), len(self.manifest.labels) + head_tags), dtype=np.float32)
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
        key = self.task.positive_index if self.task.binary else int(np.argmax(window_probs.sum(0)))
        out = np.zeros((n, window_probs.shape[1]), dtype=np.float32)
        best = np.full(n, -1.0)
        for w, owner in enumerate(owners):
            if window_probs[w, key] > best[owner]:
                best[owner] = window_probs[w, key]
                out[owner] = window_probs[w]
        n_labels = len(self.manifest.labels)
        if window_probs.shape[1] > n_labels:  # a long message shows a tag if any window does
            tag_max = np.zeros((n, window_probs.shape[1] - n_labels), dtype=np.float32)
            np.maximum.at(tag_max, np.asarray(owners), window_probs[:, n_labels:])
            out[:, n_labels:] = tag_max
        return out

    def decide(self, probs: np.ndarray) -> list[str]:
        """Labels from probabilities: the saved threshold for binary models, else argmax."""
        return self.task.decide(probs)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Per text: the label, the score (see :meth:`TaskSpec.scores`) and all class probabilities."""
        probs, tag_probs = self.predict_proba_and_tags(texts)
        return self.predictions(probs, tag_probs)

    def predictions(self, probs: np.ndarray, tag_probs: np.ndarray | None = None) -> list[Prediction]:
        """:class:`Prediction` objects from :meth:`predict_proba_and_tags`' outputs."""
        labels = self.manifest.labels
        scores = self.task.scores(probs)
        spec = self.manifest.tags
        if spec is None or tag_probs is None:
            return [Prediction(label, float(score), {name: float(p) for name, p in zip(labels, row)})
                    for row, label, score in zip(probs, self.decide(probs), scores)]
        return [Prediction(label, float(score), {name: float(p) for name, p in zip(labels, row)},
                           {name: float(p) for name, p in zip(spec.names, tag_row)}, spec.tags_of(tag_row))
                for row, label, score, tag_row in zip(probs, self.decide(probs), scores, tag_probs)]
