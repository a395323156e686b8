"""Train a model folder from a recipe: :func:`train` is the API that the command line
(``python -m train --config FILE``), the quality benchmark and the tests call.

Reads top to bottom: seed -> load the splits with the one reader -> labels -> the method's
model and tokenizer -> tokenise with infer's text pipeline -> the method's ``fit`` -> save to
a staging folder -> score validation and test with the ``infer`` runtime, pick the threshold
on validation -> manifest, metrics, recipe and model card -> rename the staging folder into
place, so a crash never leaves a model folder that looks complete but is not.

Launched as several processes (``torchrun``, ``accelerate launch``; see ``parallel``), every
process trains its shard of each batch; the main process tokenises first and alone does
everything after ``fit``, while the others wait for it and return the run it wrote.
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
from infer.tags import TAG_TFIDF_FILE, save_tag_head, split_output_layer
from infer.text import tokenize

from infer.blend import BLEND_FILE, apply_temperature

from ..benchmarks.baselines import TfidfLogReg
from ..evaluation.calibration import fit_stack, fit_temperature
from ..evaluation.metrics import classification_metrics, ranking_metrics
from ..evaluation.tag_metrics import select_tag_thresholds, tag_metrics
from ..evaluation.threshold import select_threshold
from .config import Recipe
from .data import label_counts, load_splits, resolve_labels
from .model_card import render_model_card
from .parallel import effective_batch_size, process_state
from .tags import add_tag_head, fit_tag_tfidf, recipe_tag_spec, tag_targets

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


def tokenized(ds, tokenizer, recipe: Recipe, label_ids: dict, tag_spec=None):
    """Token ids, lengths and labels; with a tag head, ``labels`` is ``[class, tag bits...]`` per row."""
    def encode(batch):
        ids, _ = tokenize(tokenizer, batch["text"], recipe.text)
        labels = [label_ids[lab] for lab in batch["label"]]
        if tag_spec is not None:
            bits = tag_targets(tag_spec, batch[recipe.tags.column], "training data").astype(int).tolist()
            labels = [[lab, *row] for lab, row in zip(labels, bits)]
        return {"input_ids": ids, "length": [len(x) for x in ids], "labels": labels}

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

    if recipe.blend.combine == "stack":  # before training, not after it
        if not task.binary:
            raise ValueError(f"blend.combine stack needs a binary task with a positive label, got labels {labels}")
        if splits.get("validation") is None or len(splits["validation"]) == 0:
            raise ValueError("blend.combine stack fits on the validation split, and there is none")
        if len(set(splits["validation"]["label"]) & set(labels)) < 2:
            raise ValueError("blend.combine stack fits on the validation split, which needs rows of both labels")

    tag_spec = recipe_tag_spec(recipe)
    # A joint tag head trains inside the network; a separate (tfidf) tag model after it, alone.
    head_spec = tag_spec if recipe.tags.joint else None
    if tag_spec is not None:
        if head_spec is not None and recipe.method != "full":
            raise ValueError(f"tags.enabled: a joint tag head trains with method full only, not {recipe.method!r}")
        for name, ds in splits.items():
            if ds is not None and recipe.tags.column not in ds.column_names:
                raise ValueError(f"tags.enabled: the {name} split has no {recipe.tags.column!r} column")

    tokenizer, model = method.load_model(recipe, labels)
    if head_spec is not None:
        add_tag_head(model, len(labels), len(head_spec.names), seed=int(recipe.training.get("seed", 42)))
    state = process_state(recipe.training)
    with state.main_process_first():  # the others wait, then tokenise the same way
        train_ds = tokenized(splits["train"], tokenizer, recipe, label_ids, head_spec)
        eval_ds = (tokenized(splits["validation"], tokenizer, recipe, label_ids, head_spec)
                   if splits["validation"] else None)
    fitted = method.fit(recipe, model, tokenizer, train_ds, eval_ds, task, run_dir, resume)
    if head_spec is not None:  # the folder holds a plain classifier plus tag_head.safetensors
        tag_head = split_output_layer(fitted.model, len(labels), len(head_spec.names))

    final = run_dir / "model"
    world_size = state.num_processes
    if not state.is_main_process:  # the main process scores, picks the threshold and writes the folder
        state.wait_for_everyone()
        return TrainingRun(final, ModelManifest.load(final), ModelManifest.load_metrics(final))

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
    blend = None
    if recipe.blend.enabled:
        if recipe.blend.combine == "stack":  # equal weights until fitted on validation, below
            blend = {"kind": "tfidf_logreg", "file": BLEND_FILE, "combine": "logistic", "coef": [1.0, 1.0],
                     "intercept": 0.0}
        else:
            blend = {"kind": "tfidf_logreg", "file": BLEND_FILE, "weight": float(recipe.blend.tfidf_weight)}
        tfidf = TfidfLogReg(labels, seed=int(recipe.training.get("seed", 42)))
        tfidf.fit(splits["train"]["text"], [label_ids[lab] for lab in splits["train"]["label"]])
        tfidf.export().save(staging / BLEND_FILE)
        logger.info("blend: TF-IDF + logistic regression (C=%g), combine %s", tfidf.regularisation,
                    "stack" if recipe.blend.combine == "stack" else f"mean at weight {recipe.blend.tfidf_weight:.2f}")
    manifest = ModelManifest(task, recipe.text, recipe.model.name_or_path, provenance, tags=tag_spec,
                             pooling=recipe.model.pooling, blend=blend)
    manifest.save(staging)
    if head_spec is not None:
        save_tag_head(staging, *tag_head)
    elif tag_spec is not None:
        tag_tfidf = fit_tag_tfidf(tag_spec, splits["train"]["text"], splits["train"][recipe.tags.column],
                                  seed=int(recipe.training.get("seed", 42)))
        tag_tfidf.export().save(staging / TAG_TFIDF_FILE)
        logger.info("tags: TF-IDF + one logistic regression per tag (C per tag: %s)", tag_tfidf.regularisation)

    # Score validation and test with the runtime, which keeps input order (the Trainer's
    # predict() does not under group_by_length sampling), on the CPU when the recipe says so.
    clf = Classifier.from_pretrained(staging, device="cpu" if recipe.training.get("use_cpu") else None,
                                     precision="fp32", trust_remote_code=recipe.model.trust_remote_code)
    metrics = {"train": {"rows": len(train_ds), "runtime_s": round(fitted.seconds, 1),
                         "examples_per_s": fitted.examples_per_s, "epochs": fitted.epochs, "loss": fitted.loss,
                         "class_weights": fitted.class_weights, "bf16": fitted.bf16,
                         "steps": getattr(fitted, "steps", None), "world_size": world_size,
                         "effective_batch_size": effective_batch_size(recipe.training, world_size)}}
    # Without a validation split, binary tasks fall back to the fixed value or 0.5.
    if task.binary:
        task = task.with_threshold(recipe.threshold.value if recipe.threshold.rule == "fixed" else 0.5)
    for name in [n for n in splits if n != "train"]:  # validation first: temperature and threshold
        ds = splits[name]
        if ds is None or len(ds) == 0:
            continue
        texts = ds["text"]
        network, tag_probs = clf.model_proba_and_tags(texts)
        y = np.array([label_ids.get(lab, -1) for lab in ds["label"]])
        if name == "validation" and recipe.calibration.temperature == "fit":
            manifest = manifest.replace(temperature=fit_temperature(network, y))
            clf = clf.with_manifest(manifest)
            logger.info("temperature (log-loss on validation): %.3f", manifest.temperature)
        if name == "validation" and recipe.blend.combine == "stack":
            pos = task.positive_index
            coef, intercept = fit_stack(apply_temperature(network, manifest.temperature)[:, pos],
                                        clf.blend.predict_proba(list(texts))[:, pos], y == pos)
            manifest = manifest.replace(blend={**manifest.blend, "coef": coef, "intercept": intercept})
            clf = clf.with_manifest(manifest)
            logger.info("blend: stacked on validation: %.3f x network + %.3f x TF-IDF log-odds %+.3f",
                        coef[0], coef[1], intercept)
        probs = clf.combine(network, texts)
        if manifest.blend is not None or manifest.temperature != 1.0:
            metrics.setdefault("components", {})[name] = component_metrics(y, task, network, clf, texts)
        if name == "validation" and task.binary:
            threshold = select_threshold(y == task.positive_index, task.scores(probs), recipe.threshold.rule,
                                         recipe.threshold.value)
            task = task.with_threshold(threshold)
            logger.info("threshold (%s on validation): %.4f", recipe.threshold.rule, threshold)
        metrics[name] = classification_metrics(y, probs, task)
        if tag_spec is not None:
            targets = tag_targets(tag_spec, ds[recipe.tags.column], f"{name} split")
            if name == "validation":
                tag_spec = tag_spec.with_thresholds(select_tag_thresholds(targets, tag_probs, recipe.tags.threshold_rule))
                clf.manifest = clf.manifest.replace(tags=tag_spec)
            metrics[name]["tags"] = tag_metrics(targets, tag_probs, tag_spec)
    manifest = manifest.replace(task=task, tags=tag_spec)
    manifest.save(staging)
    metrics["command"] = command
    ModelManifest.save_metrics(staging, metrics)
    (staging / "training_config.yaml").write_text(
        (f"# {command}\n" if command else "") + yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    (staging / "README.md").write_text(render_model_card(recipe, manifest, metrics, command))

    if final.exists():
        old = run_dir / f".model.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    state.wait_for_everyone()
    return TrainingRun(final, manifest, metrics)


def component_metrics(y: np.ndarray, task: TaskSpec, network: np.ndarray, clf: Classifier, texts) -> dict:
    """AUROC, AUPRC and ECE of each part of a blended or calibrated model on one split, so a
    reader sees what the blend and the temperature add."""
    out = {"network": ranking_metrics(y, network, task)}
    if clf.manifest.temperature != 1.0:
        out["network_at_temperature"] = ranking_metrics(y, apply_temperature(network, clf.manifest.temperature), task)
    if clf.blend is not None:
        out["tfidf_logreg"] = ranking_metrics(y, clf.blend.predict_proba(list(texts)), task)
    return out


def _versions() -> dict:
    import torch
    import transformers

    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("outreach-guard")
    except PackageNotFoundError:
        own = None
    return {"outreach_guard": own, "torch": torch.__version__, "transformers": transformers.__version__}
