"""How long a recipe takes, from a short run: ``python -m train.benchmarks.training_speed --config FILE``.

Runs ``--steps`` optimiser steps of the recipe's own method (model, adapters, batch size,
sequence length, precision) on a random sample of its training rows, then scores
``--score-rows`` validation rows with the ``infer`` runtime, and prints: training examples/s
(wall clock) and CPU seconds per example, scoring msgs/s and CPU seconds per message, peak RSS,
and the full run projected from them (training rows x epochs, plus scoring the validation split
once per epoch and every evaluated split once at the end). Projections from CPU seconds assume the
cores are the run's alone: on a machine shared with other work, wall-clock rates are lower.
Recipe fields can be overridden as on the training command line (``group.field=value``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(config: str, overrides: list[str], steps: int, score_rows: int, seed: int = 0) -> dict:
    import torch

    from infer.classifier import Classifier
    from infer.manifest import ModelManifest, TaskSpec

    from ..recipes.config import load_recipe
    from ..recipes.data import load_splits, resolve_labels
    from ..recipes.run import tokenized

    recipe = load_recipe(config, overrides)
    method = importlib.import_module(f"train.recipes.{recipe.method}")
    splits = load_splits(recipe.data)
    labels = resolve_labels(recipe.data, splits["train"]["label"])
    label_ids = {lab: i for i, lab in enumerate(labels)}
    task = TaskSpec.for_labels(labels, recipe.data.positive_label)
    batch = int(recipe.training.get("per_device_train_batch_size", 8))
    sample = splits["train"].shuffle(seed=seed).select(range(min(steps * batch, len(splits["train"]))))
    tokenizer, model = method.load_model(recipe, labels)
    train_ds = tokenized(sample, tokenizer, recipe, label_ids)
    with tempfile.TemporaryDirectory(prefix="training-speed-") as tmp:
        short = dict(recipe.training, max_steps=steps, eval_strategy="no", save_strategy="no",
                     load_best_model_at_end=False, logging_steps=steps, disable_tqdm=True, output_dir=tmp)
        short_recipe = dataclasses.replace(recipe, training=short)
        cpu = _cpu_seconds()
        fitted = method.fit(short_recipe, model, tokenizer, train_ds, None, task, Path(tmp))
        train_cpu = _cpu_seconds() - cpu
        train_wall = fitted.seconds
        folder = os.path.join(tmp, "model")
        fitted.model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        ModelManifest(task, recipe.text, recipe.model.name_or_path).save(folder)
        del model, fitted
        clf = Classifier.from_pretrained(folder, device="cpu" if recipe.training.get("use_cpu") else None)
        texts = splits["validation"]["text"][:score_rows] if splits["validation"] else sample["text"][:score_rows]
        clf.predict_proba(texts[:8])  # warm-up
        cpu, started = _cpu_seconds(), time.perf_counter()
        clf.predict_proba(texts)
        score_s, score_cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        precision = clf.precision
    examples = len(train_ds) if steps * batch > len(train_ds) else steps * batch
    epochs = float(recipe.training.get("num_train_epochs", 1))
    n_train = len(splits["train"])
    n_val = len(splits["validation"]) if splits["validation"] else 0
    n_eval = sum(len(ds) for name, ds in splits.items() if name != "train" and ds is not None)
    per_example_cpu = train_cpu / examples
    per_msg_cpu = score_cpu / len(texts)
    threads = torch.get_num_threads()
    scored_rows = n_eval + (n_val * max(1, int(round(epochs))) if recipe.training.get("eval_strategy") != "no" else 0)
    projected_cpu = n_train * epochs * per_example_cpu + scored_rows * per_msg_cpu
    return {
        "config": config, "overrides": overrides, "method": recipe.method, "model": recipe.model.name_or_path,
        "steps": steps, "batch_size": batch, "training_examples": examples,
        "train_examples_per_s_wall": round(examples / train_wall, 3),
        "train_cpu_s_per_example": round(per_example_cpu, 3), "score_precision": precision,
        "score_msgs_per_s": round(len(texts) / score_s, 2), "score_cpu_s_per_msg": round(per_msg_cpu, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "torch_threads": threads, "full_run": {"training_rows": n_train, "epochs": epochs,
                                               "scored_rows": scored_rows,
                                               "projected_minutes_if_cores_dedicated": round(
                                                   projected_cpu / threads / 60, 1)},
    }


def main(argv=None, prog: str = "python -m train.benchmarks.training_speed") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="training recipe YAML")
    p.add_argument("--steps", type=int, default=5, help="optimiser steps to time")
    p.add_argument("--score-rows", type=int, default=64, help="validation rows to score")
    p.add_argument("overrides", nargs="*", help="group.field=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    result = measure(args.config, args.overrides, args.steps, args.score_rows)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
