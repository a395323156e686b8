"""Full fine-tuning: every weight of an ``AutoModelForSequenceClassification`` model is trained.

A training method is a module with ``load_model(recipe, labels)`` and
``fit(recipe, model, tokenizer, train_ds, eval_ds, task, run_dir, resume)``;
:func:`train.recipes.train` picks one by the recipe's ``method`` and does the rest (data,
threshold, scoring, the model folder).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from .config import Recipe
from .parallel import check_data_parallel, cpu_data_parallel

logger = logging.getLogger("train")


@dataclasses.dataclass
class FitResult:
    model: object  # the trained model, ready for save_pretrained
    seconds: float
    examples_per_s: float
    epochs: float | None
    loss: float | None
    class_weights: list[float] | None
    bf16: bool
    steps: int | None = None  # optimizer steps (each process takes every one under data parallelism)


def resolve_bf16(value) -> bool:
    """``bf16: auto`` means bf16 autocast where the hardware runs it natively."""
    if value != "auto":
        return bool(value)
    import torch

    from infer.device import cpu_has_native_bf16

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


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


def loss_function(recipe: Recipe, weights, n_labels: int):
    """The Trainer's ``compute_loss_func``: joint label + tag loss with a joint tag head, the
    class-weighted loss when weights are set, else the model's own."""
    if recipe.tags.joint:
        from .tags import joint_loss

        return joint_loss(weights, n_labels, recipe.tags.loss_weight)
    return weighted_loss(weights) if weights else None


def load_model(recipe: Recipe, labels: list[str]):
    """The tokenizer and a sequence-classification model with a fresh head for ``labels``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = recipe.model.resolve()
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=recipe.model.trust_remote_code)
    if recipe.model.pooling == "mean":
        from infer.heads import MeanPoolingClassifier

        model = MeanPoolingClassifier.from_encoder(name, labels, trust_remote_code=recipe.model.trust_remote_code)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={lab: i for i, lab in enumerate(labels)}, trust_remote_code=recipe.model.trust_remote_code,
            use_safetensors=True,
        )
    if tokenizer.pad_token is None:  # decoder-only models ship without one
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def training_arguments(recipe: Recipe, run_dir: Path, has_eval: bool):
    from transformers import TrainingArguments

    training = dict(recipe.training)
    training["output_dir"] = str(run_dir / "checkpoints")
    training["bf16"] = resolve_bf16(training.get("bf16", False))
    import torch

    if training["bf16"] and not torch.cuda.is_available():
        training["use_cpu"] = True  # bf16 autocast on CPU: accelerate requires the CPU to be asked for
    if cpu_data_parallel():
        training["use_cpu"] = True  # else each launched CPU process trains alone (train.recipes.parallel)
    if not has_eval:
        for key in ("eval_strategy", "load_best_model_at_end"):
            training.pop(key, None)
    args = TrainingArguments(**training)
    check_data_parallel(args.world_size)
    return args


def fit(recipe: Recipe, model, tokenizer, train_ds, eval_ds, task, run_dir: Path,
        resume: bool = False) -> FitResult:
    """Train with the transformers ``Trainer``: class-weighted loss when the classes are
    imbalanced, early stopping on the validation split, the best checkpoint kept."""
    import time

    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

    from ..evaluation.metrics import classification_metrics

    targs = training_arguments(recipe, run_dir, eval_ds is not None)
    n_labels = len(task.labels)

    def compute_metrics(pred):
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        logits = logits[:, :n_labels]  # a tag head's logits follow the labels' (train/recipes/tags.py)
        label_ids = pred.label_ids[:, 0] if pred.label_ids.ndim == 2 else pred.label_ids
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        m = classification_metrics(label_ids, probs, task)
        return {k: v for k, v in m.items() if isinstance(v, (int, float)) and v is not None}

    train_labels = [lab[0] if isinstance(lab, list) else lab for lab in train_ds["labels"]]
    weights = class_weights(recipe, train_labels, len(task.labels))
    logger.info("class weights: %s", weights or "none (balanced enough)")
    callbacks = []
    if eval_ds is not None and recipe.early_stopping_patience and targs.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience))
    trainer = Trainer(
        model=model, args=targs, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics if eval_ds else None,
        compute_loss_func=loss_function(recipe, weights, n_labels), callbacks=callbacks,
    )
    started = time.perf_counter()
    last = last_checkpoint(run_dir / "checkpoints") if resume else None
    result = trainer.train(resume_from_checkpoint=last)
    return FitResult(trainer.model, time.perf_counter() - started,
                     round(result.metrics.get("train_samples_per_second", 0.0), 2), result.metrics.get("epoch"),
                     result.metrics.get("train_loss"), weights, bool(targs.bf16), steps=result.global_step)


def last_checkpoint(folder: Path):
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
