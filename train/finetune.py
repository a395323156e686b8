"""Fine-tune a sequence classifier from a recipe: ``python -m train --config FILE``.

Reads top to bottom: parse -> seed -> load data -> tokenise with infer's text pipeline ->
model -> Trainer (class-weighted loss, early stopping) -> pick the threshold on validation ->
score validation and test with the ``infer`` runtime -> write the model folder atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from infer.model import Classifier, PipelineConfig  # noqa: E402
from infer.text import tokenize  # noqa: E402

from .config import Recipe, load_recipe  # noqa: E402
from .data import label_counts, load_splits, resolve_labels  # noqa: E402
from .metrics import classification_metrics  # noqa: E402
from .threshold import select_threshold  # noqa: E402

logger = logging.getLogger("train")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m train", description="Fine-tune a classifier from a recipe.")
    p.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    p.add_argument("--output-dir", help="run folder (default: training.output_dir); the model goes to <dir>/model")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in <dir>/checkpoints")
    p.add_argument("overrides", nargs="*", help="group.field=value, e.g. training.num_train_epochs=1")
    return p.parse_args(argv)


def resolve_bf16(value) -> bool:
    """``bf16: auto`` means bf16 autocast where the hardware runs it natively."""
    if value != "auto":
        return bool(value)
    import torch

    from infer.device import cpu_has_native_bf16

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def class_weights(recipe: Recipe, train_labels: list[int], n_labels: int):
    cw = recipe.loss.class_weights
    if cw in ("none", None):
        return None
    if isinstance(cw, list):
        if len(cw) != n_labels:
            raise ValueError(f"loss.class_weights has {len(cw)} values for {n_labels} labels")
        return [float(x) for x in cw]
    counts = np.bincount(train_labels, minlength=n_labels).astype(float)
    if counts.min() == 0 or counts.max() / counts.min() < recipe.loss.imbalance_ratio:
        return None
    return list(counts.sum() / (n_labels * counts))


def weighted_loss(weights):
    import torch

    w = torch.tensor(weights, dtype=torch.float32)

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        per_item = torch.nn.functional.cross_entropy(logits.float(), labels, weight=w.to(logits.device),
                                                     reduction="none")
        denom = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        return per_item.sum() / denom

    return compute_loss


def load_model(recipe: Recipe, labels: list[str]):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = recipe.model.resolve()
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=recipe.model.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        name, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)}, trust_remote_code=recipe.model.trust_remote_code,
        use_safetensors=True,
    )
    if tokenizer.pad_token is None:  # decoder-only models ship without one
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def tokenized(ds, tokenizer, recipe: Recipe, label_ids: dict):
    def encode(batch):
        ids, _ = tokenize(tokenizer, batch["text"], recipe.text)
        return {"input_ids": ids, "length": [len(x) for x in ids],
                "labels": [label_ids[lab] for lab in batch["label"]]}

    return ds.map(encode, batched=True, remove_columns=ds.column_names, desc="tokenising")


def write_model_card(folder: Path, recipe: Recipe, labels, metrics: dict, command: str, base_model: str):
    from .model_card import render_model_card

    (folder / "README.md").write_text(render_model_card(recipe, labels, metrics, command, base_model))


def main(argv=None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "python -m train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    recipe = load_recipe(args.config, args.overrides)
    run_dir = Path(args.output_dir or recipe.training.get("output_dir") or "runs/" + Path(args.config).stem)

    from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments,
                              set_seed)

    seed = int(recipe.training.get("seed", 42))
    set_seed(seed)

    splits = load_splits(recipe.data)
    labels = resolve_labels(recipe.data, splits["train"])
    label_ids = {lab: i for i, lab in enumerate(labels)}
    positive = recipe.data.positive_label if len(labels) == 2 else None
    for name, ds in splits.items():
        if ds is not None:
            logger.info("%s: %d rows %s", name, len(ds), label_counts(ds))

    tokenizer, model = load_model(recipe, labels)
    train_ds = tokenized(splits["train"], tokenizer, recipe, label_ids)
    eval_ds = tokenized(splits["validation"], tokenizer, recipe, label_ids) if splits["validation"] else None

    training = dict(recipe.training)
    training["output_dir"] = str(run_dir / "checkpoints")
    training["bf16"] = resolve_bf16(training.get("bf16", False))
    if training["bf16"] and not _cuda_available():
        training["use_cpu"] = True  # bf16 autocast on CPU: accelerate requires the CPU to be asked for
    if eval_ds is None:
        for key in ("eval_strategy", "load_best_model_at_end"):
            training.pop(key, None)
    targs = TrainingArguments(**training)

    def compute_metrics(pred):
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        m = classification_metrics(pred.label_ids, probs, labels, positive)
        return {k: v for k, v in m.items() if isinstance(v, (int, float)) and v is not None}

    weights = class_weights(recipe, train_ds["labels"], len(labels))
    logger.info("class weights: %s", weights or "none (balanced enough)")
    callbacks = []
    if eval_ds is not None and recipe.early_stopping_patience and targs.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience))
    trainer = Trainer(
        model=model, args=targs, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics if eval_ds else None,
        compute_loss_func=weighted_loss(weights) if weights else None, callbacks=callbacks,
    )
    started = time.perf_counter()
    last = _last_checkpoint(run_dir / "checkpoints") if args.resume else None
    train_result = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - started

    # Write everything to a temporary folder, then rename: a crash never leaves a model
    # folder that looks complete but is not.
    final = run_dir / "model"
    staging = run_dir / f".model.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    # save_pretrained writes safetensors; trainer.save_model would add a pickled training_args.bin.
    trainer.model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    pipeline = PipelineConfig(labels, positive, None, recipe.text, base_model=recipe.model.name_or_path)
    pipeline.save(staging)

    # Score validation and test with the runtime, which keeps input order (the Trainer's
    # predict() does not under group_by_length sampling).
    clf = Classifier.from_pretrained(staging, device=None, precision="fp32",
                                     trust_remote_code=recipe.model.trust_remote_code)
    metrics = {"train": {"rows": len(train_ds), "runtime_s": round(train_seconds, 1),
                         "examples_per_s": round(train_result.metrics.get("train_samples_per_second", 0.0), 2),
                         "epochs": train_result.metrics.get("epoch"), "loss": train_result.metrics.get("train_loss"),
                         "class_weights": weights, "bf16": training["bf16"]}}
    # Without a validation split, binary tasks fall back to the fixed value or 0.5.
    threshold = None
    if positive is not None:
        threshold = recipe.threshold.value if recipe.threshold.rule == "fixed" else 0.5
    for name in ("validation", "test"):
        ds = splits[name]
        if ds is None or len(ds) == 0:
            continue
        probs = clf.predict_proba(ds["text"])
        y = np.array([label_ids.get(lab, -1) for lab in ds["label"]])
        if name == "validation" and positive is not None:
            k = labels.index(positive)
            threshold = select_threshold(y == k, probs[:, k], recipe.threshold.rule, recipe.threshold.value)
            logger.info("threshold (%s on validation): %.4f", recipe.threshold.rule, threshold)
        metrics[name] = classification_metrics(y, probs, labels, positive, threshold)
    pipeline = PipelineConfig(labels, positive, threshold, recipe.text, base_model=recipe.model.name_or_path)
    pipeline.save(staging)
    metrics["command"] = command
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (staging / "training_config.yaml").write_text(
        f"# {command}\n" + yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    write_model_card(staging, recipe, labels, metrics, command, recipe.model.name_or_path)

    if final.exists():
        old = run_dir / f".model.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    summary = {k: metrics[k].get("f1", metrics[k].get("macro_f1")) for k in ("validation", "test") if k in metrics}
    print(f"model written to {final} in {train_seconds:.0f}s of training; F1: {summary}")
    return final


def _last_checkpoint(folder: Path):
    """The newest complete checkpoint. transformers writes ``checkpoint-N`` in place, so a crash
    can leave one half-written: its ``trainer_state.json`` (written last) is missing or torn."""
    if not folder.is_dir():
        return None
    candidates = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                        key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for checkpoint in candidates:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s", checkpoint)
            continue
        return str(checkpoint)
    return None
