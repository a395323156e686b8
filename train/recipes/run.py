"""Train a model folder from a recipe: :func:`train` is the API that the command line
(``python -m train --config FILE``), the quality benchmark and the tests call.

Reads top to bottom: seed -> load the splits with the one reader -> labels -> the method's
model and tokenizer -> tokenise with infer's text pipeline -> the method's ``fit`` -> save to
a staging folder -> score validation and test with the ``infer`` runtime, pick the threshold
on validation -> manifest, metrics, recipe and model card -> rename the staging folder into
place, so a crash never leaves a model folder that looks complete but is not.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

from infer.classifier import Classifier
from infer.manifest import ModelManifest, TaskSpec
from infer.text import tokenize

from ..evaluation.metrics import classification_metrics
from ..evaluation.threshold import select_threshold
from .config import Recipe
from .data import label_counts, load_splits, resolve_labels
from .model_card import render_model_card

logger = logging.getLogger("train")


@dataclasses.dataclass
class TrainingRun:
    """What :func:`train` produced: the model folder, its manifest and metrics."""

    model_dir: Path
    manifest: ModelManifest
    metrics: dict

    def f1(self, split: str) -> float | None:
        m = self.metrics.get(split) or {}
        return m.get("f1", m.get("macro_f1"))


def default_run_dir(recipe: Recipe) -> Path:
    if recipe.training.get("output_dir"):
        return Path(recipe.training["output_dir"])
    return Path("runs") / (Path(recipe.source).stem if recipe.source else "run")


def tokenized(ds, tokenizer, recipe: Recipe, label_ids: dict):
    def encode(batch):
        ids, _ = tokenize(tokenizer, batch["text"], recipe.text)
        return {"input_ids": ids, "length": [len(x) for x in ids],
                "labels": [label_ids[lab] for lab in batch["label"]]}

    return ds.map(encode, batched=True, remove_columns=ds.column_names, desc="tokenising")


def train(recipe: Recipe, output_dir: str | Path | None = None, resume: bool = False,
          command: str | None = None, rows: dict[str, list[dict] | None] | None = None) -> TrainingRun:
    """Fine-tune ``recipe`` and write ``<output_dir>/model``; returns the :class:`TrainingRun`.

    ``rows`` (optional): the splits as lists of ``{"id", "text", "label"}`` dicts, used instead
    of the files ``recipe.data`` names (the benchmark trains on rows it already holds).
    """
    from transformers import set_seed

    run_dir = Path(output_dir) if output_dir else default_run_dir(recipe)
    # The method is the module of that name here (config.METHODS): ``load_model`` and ``fit``.
    method = importlib.import_module(f"{__package__}.{recipe.method}")
    set_seed(int(recipe.training.get("seed", 42)))

    splits = load_splits(recipe.data, rows)
    labels = resolve_labels(recipe.data, splits["train"]["label"])
    label_ids = {lab: i for i, lab in enumerate(labels)}
    task = TaskSpec.for_labels(labels, recipe.data.positive_label)
    for name, ds in splits.items():
        if ds is not None:
            logger.info("%s: %d rows %s", name, len(ds), label_counts(ds["label"]))

    tokenizer, model = method.load_model(recipe, labels)
    train_ds = tokenized(splits["train"], tokenizer, recipe, label_ids)
    eval_ds = tokenized(splits["validation"], tokenizer, recipe, label_ids) if splits["validation"] else None
    fitted = method.fit(recipe, model, tokenizer, train_ds, eval_ds, task, run_dir, resume)

    staging = run_dir / f".model.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    # save_pretrained writes safetensors; trainer.save_model would add a pickled training_args.bin.
    fitted.model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    if getattr(fitted, "adapter_dir", None):  # LoRA: the adapter alone, next to the merged weights
        shutil.move(str(fitted.adapter_dir), str(staging / "adapter"))
    provenance = {"command": command, "method": recipe.method, "recipe": recipe.to_dict(),
                  "data": recipe.data.describe() if rows is None else "rows given to train()",
                  "training_rows": len(train_ds),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": _versions()}
    manifest = ModelManifest(task, recipe.text, recipe.model.name_or_path, provenance)
    manifest.save(staging)

    # Score validation and test with the runtime, which keeps input order (the Trainer's
    # predict() does not under group_by_length sampling), on the CPU when the recipe says so.
    clf = Classifier.from_pretrained(staging, device="cpu" if recipe.training.get("use_cpu") else None,
                                     precision="fp32", trust_remote_code=recipe.model.trust_remote_code)
    metrics = {"train": {"rows": len(train_ds), "runtime_s": round(fitted.seconds, 1),
                         "examples_per_s": fitted.examples_per_s, "epochs": fitted.epochs, "loss": fitted.loss,
                         "class_weights": fitted.class_weights, "bf16": fitted.bf16}}
    # Without a validation split, binary tasks fall back to the fixed value or 0.5.
    if task.binary:
        task = task.with_threshold(recipe.threshold.value if recipe.threshold.rule == "fixed" else 0.5)
    for name in [n for n in splits if n != "train"]:  # validation first: it picks the threshold
        ds = splits[name]
        if ds is None or len(ds) == 0:
            continue
        probs = clf.predict_proba(ds["text"])
        y = np.array([label_ids.get(lab, -1) for lab in ds["label"]])
        if name == "validation" and task.binary:
            threshold = select_threshold(y == task.positive_index, task.scores(probs), recipe.threshold.rule,
                                         recipe.threshold.value)
            task = task.with_threshold(threshold)
            logger.info("threshold (%s on validation): %.4f", recipe.threshold.rule, threshold)
        metrics[name] = classification_metrics(y, probs, task)
    manifest = manifest.replace(task=task)
    manifest.save(staging)
    metrics["command"] = command
    ModelManifest.save_metrics(staging, metrics)
    (staging / "training_config.yaml").write_text(
        (f"# {command}\n" if command else "") + yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    (staging / "README.md").write_text(render_model_card(recipe, manifest, metrics, command))

    final = run_dir / "model"
    if final.exists():
        old = run_dir / f".model.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    return TrainingRun(final, manifest, metrics)


def _versions() -> dict:
    import torch
    import transformers

    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("outreach-guard")
    except PackageNotFoundError:
        own = None
    return {"outreach_guard": own, "torch": torch.__version__, "transformers": transformers.__version__}
