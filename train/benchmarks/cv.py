"""Grouped cross-validation: ``python -m train.benchmarks.cv --config configs/cv.yaml``.

One test split of a dozen scenario families cannot rank recipes: which families land in it
moves F1 by several points. Here every family is held out exactly once per repetition:

1. the rows of the chosen splits (``cv.use_splits``) are cut into ``cv.folds`` folds with
   scikit-learn's ``StratifiedGroupKFold`` (groups: ``cv.group_by``, e.g. ``family`` or
   ``author``; stratified by label), once per seed in ``cv.seeds``;
2. for fold ``k``: the systems train on the other folds except fold ``k+1``, which picks their
   decision threshold (best F1) as the validation split does in training; fold ``k`` is scored;
3. per system: the mean and standard deviation over all fold runs of F1, AUROC, AUPRC, the
   false-positive rate on hard negatives and the recall on subtle grooming (rows with
   ``hard: true``); and a paired comparison with the reference system (``cv.reference``) on the
   same folds: mean difference, the number of fold runs it wins, and the Wilcoxon signed-rank
   p-value (fold runs share rows across seeds, so read it as descriptive).

Systems are the benchmark's (``configs/bench.yaml``: ``tfidf_logreg``, ``embedding_logreg``,
``finetuned`` with a ``recipe``, ``keyword_rules``) plus ``average``: the mean of other
systems' probabilities (``members``, optional ``weights``), with its own threshold. Loaded
model folders cannot be cross-validated (they were trained on some of the rows).

Writes ``cv.md`` (the table and the command), ``cv.json``, ``folds.csv`` and ``predictions.csv``
(every fold run's scores, see :class:`PredictionLog`) under ``output_dir``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from infer.io import InputError  # noqa: E402
from infer.manifest import ModelFolderError, TaskSpec  # noqa: E402
from infer.options import add_config_options, input_error  # noqa: E402

from ..evaluation.evaluate import evaluate_predictions, hard_row_rates  # noqa: E402
from ..evaluation.labelled import DataSpec, LabelledRows, load_labelled  # noqa: E402
from ..evaluation.report import fmt  # noqa: E402
from ..evaluation.threshold import select_threshold  # noqa: E402
from .quality import (Bench, BenchConfig, DatasetConfig, SystemConfig, TrainingSource, seed_everything,  # noqa: E402
                      weighted_average)

logger = logging.getLogger("train.benchmarks")

#: Per-fold figures, in the table's order.
MEASURES = ("f1", "auroc", "auprc", "hard_negative_fpr", "subtle_recall")


@dataclasses.dataclass
class CVConfig:
    data: DataSpec
    systems: list[SystemConfig]  # ``average`` systems last
    folds: int = 6
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    group_by: str = "family"
    use_splits: list[str] | None = None
    reference: str = "tfidf_logreg"
    output_dir: str = "runs/cv"
    labels: list[str] | None = None
    positive_label: str = "grooming"

    def __post_init__(self):
        if self.folds < 3:
            raise ValueError("cv.folds must be at least 3 (one to test, one to validate, the rest to train)")
        if not self.seeds:
            raise ValueError("cv.seeds needs at least one seed")
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise ValueError(f"system names must be unique: {names}")
        if self.reference not in names:
            raise ValueError(f"cv.reference {self.reference!r} is not one of the systems {names}")
        for system in self.averages:
            unknown = [m for m in system.members if m not in [s.name for s in self.trained]]
            if unknown:
                raise ValueError(f"system {system.name!r}: members {unknown} are not systems that train")
        for system in self.systems:
            if system.kind == "finetuned" and system.model:
                raise ValueError(f"system {system.name!r}: a loaded model folder cannot be cross-validated; "
                                 "give a `recipe` instead")


    @property
    def trained(self) -> list[SystemConfig]:
        return [s for s in self.systems if s.kind != "average"]

    @property
    def averages(self) -> list[SystemConfig]:
        return [s for s in self.systems if s.kind == "average"]


def load_cv_config(path) -> CVConfig:
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    known = {"data", "systems", "cv", "output_dir", "labels", "positive_label"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {unknown}; known: {sorted(known)}")
    for key in ("data", "systems"):
        if key not in raw:
            raise ValueError(f"{path}: `{key}` is required")
    systems = [SystemConfig(**item) for item in raw["systems"]]
    systems = [s for s in systems if s.kind != "average"] + [s for s in systems if s.kind == "average"]
    cv = dict(raw.get("cv") or {})
    allowed = {"folds", "seeds", "group_by", "use_splits", "reference"}
    if set(cv) - allowed:
        raise ValueError(f"{path}: unknown cv keys {sorted(set(cv) - allowed)}; known: {sorted(allowed)}")
    return CVConfig(DataSpec(**raw["data"]), systems, output_dir=raw.get("output_dir", "runs/cv"),
                    labels=raw.get("labels"), positive_label=raw.get("positive_label", "grooming"), **cv)


def fold_assignments(labels: list[str], groups: list, folds: int, seed: int) -> np.ndarray:
    """Fold index per row: each group in exactly one fold, labels balanced across folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    if len(set(groups)) < folds:
        raise ValueError(f"{len(set(groups))} groups cannot fill {folds} folds")
    assignment = np.full(len(labels), -1)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        assignment[test] = k
    return assignment


def _subset(rows: LabelledRows, index: np.ndarray) -> LabelledRows:
    return rows.subset([int(i) for i in index])


def fold_measures(y: np.ndarray, probs: np.ndarray, task: TaskSpec, hard: list | None) -> dict:
    """F1, AUROC, AUPRC at the task's threshold, and the hard rows' error rates."""
    result = evaluate_predictions(y, probs, task, n_resamples=0)
    overall = result["overall"]
    return {"f1": overall.get("f1"), "auroc": overall.get("auroc"), "auprc": overall.get("auprc"),
            **hard_row_rates(y, probs, task, hard)}


def run_cv(config: CVConfig, command: str) -> dict:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_labelled(config.data)
    if config.use_splits:
        split_column = config.data.split_column
        keep = np.array([s in config.use_splits for s in rows.columns[split_column]])
        rows = _subset(rows, np.flatnonzero(keep))
    if config.group_by not in rows.columns:
        raise ValueError(f"no column {config.group_by!r} to group folds by")
    labels = list(config.labels) if config.labels else sorted(set(rows.labels))
    task = TaskSpec.for_labels(labels, config.positive_label)
    if not task.binary:
        raise ValueError("cross-validation reports binary measures: give two labels and a positive_label")
    groups = rows.columns[config.group_by]
    hard = rows.columns.get("hard")
    bench_config = BenchConfig(
        datasets=[DatasetConfig("cv", config.data)], systems=config.trained,
        shipped_corpus=DatasetConfig("cv", config.data, train_split="train"), output_dir=str(out),
        labels=labels, positive_label=config.positive_label)

    runs: list[dict] = []
    predictions = PredictionLog(out / "predictions.csv")
    try:  # closed on an error too, with the fold runs so far
        embedders: dict = {}
        started_all = time.perf_counter()
        for seed in config.seeds:
            assignment = fold_assignments(rows.labels, groups, config.folds, seed)
            for k in range(config.folds):
                validation_fold = (k + 1) % config.folds
                test_idx = np.flatnonzero(assignment == k)
                val_idx = np.flatnonzero(assignment == validation_fold)
                train_idx = np.flatnonzero((assignment != k) & (assignment != validation_fold))
                test = _subset(rows, test_idx)
                source = TrainingSource(f"seed{seed}-fold{k}", f"seed{seed}/fold{k}",
                                        f"seed {seed}, fold {k}: {len(train_idx)} training rows",
                                        _subset(rows, train_idx), _subset(rows, val_idx))
                seed_everything(seed)
                # Frozen encoders are shared by every fold run: each text is embedded once.
                bench = Bench(dataclasses.replace(bench_config, seed=seed), embedders=embedders)
                y = task.label_indices(test.labels, "cv rows")
                y_val = task.label_indices(source.validation.labels, "cv rows")
                member_probs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                averaged = {m for system in config.averages for m in system.members}
                for system in config.trained:
                    t0 = time.perf_counter()
                    scorer = bench._train(system, source) if system.kind != "keyword_rules" else bench.scorer(
                        system, bench_config.datasets[0])
                    probs = scorer.predict_proba(test.texts)
                    val_probs = scorer.predict_proba(source.validation.texts)
                    if system.name in averaged:
                        member_probs[system.name] = (probs, val_probs)
                    predictions.add(seed, k, system.name, scorer.task, test, probs, source.validation, val_probs)
                    runs.append({"seed": seed, "fold": k, "system": system.name, "n": len(test),
                                 "seconds": round(time.perf_counter() - t0, 1),
                                 **fold_measures(y, probs, scorer.task, _take(hard, test_idx))})
                    logger.info("seed %d fold %d %s: %s", seed, k, system.name,
                                {m: fmt(runs[-1][m]) for m in MEASURES})
                    if scorer.network is not None:  # a blended fine-tuned folder: its network alone too
                        network_probs = scorer.network.predict_proba(test.texts)
                        runs.append({"seed": seed, "fold": k, "system": network_name(system.name), "n": len(test),
                                     "seconds": 0.0,
                                     **fold_measures(y, network_probs, scorer.network.task, _take(hard, test_idx))})
                        predictions.add(seed, k, network_name(system.name), scorer.network.task, test, network_probs,
                                        source.validation, scorer.network.predict_proba(source.validation.texts))
                for system in config.averages:
                    probs = weighted_average(system, [member_probs[m][0] for m in system.members])
                    val_probs = weighted_average(system, [member_probs[m][1] for m in system.members])
                    threshold = select_threshold(y_val == task.positive_index, task.scores(val_probs), "max_f1")
                    runs.append({"seed": seed, "fold": k, "system": system.name, "n": len(test), "seconds": 0.0,
                                 **fold_measures(y, probs, task.with_threshold(threshold), _take(hard, test_idx))})
                    predictions.add(seed, k, system.name, task.with_threshold(threshold), test, probs,
                                    source.validation, val_probs)
    finally:
        predictions.close()
    names = [s.name for s in config.systems]
    for system in list(config.trained):
        if any(r["system"] == network_name(system.name) for r in runs):
            names.insert(names.index(system.name) + 1, network_name(system.name))
    summary = summarise(runs, names, config.reference)
    report = {"command": command, "rows": len(rows), "groups": len(set(groups)), "group_by": config.group_by,
              "folds": config.folds, "seeds": config.seeds, "use_splits": config.use_splits,
              "reference": config.reference, "seconds": round(time.perf_counter() - started_all, 1),
              "summary": summary, "runs": runs}
    (out / "cv.json").write_text(json.dumps(report, indent=2) + "\n")
    with open(out / "folds.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["seed", "fold", "system", "n", "seconds", *MEASURES])
        writer.writeheader()
        writer.writerows(runs)
    (out / "cv.md").write_text(render_cv(report))
    print(f"wrote {out}/cv.md, cv.json and folds.csv")
    return report


class PredictionLog:
    """``predictions.csv``: every system's score for every row of every fold run, the held-out
    fold (``role`` test) and the fold that picked the threshold (``role`` threshold), with the
    threshold it picked. Enough to study blends and thresholds afterwards without retraining
    (scores only: no message text)."""

    FIELDS = ["seed", "fold", "system", "role", "id", "label", "score", "threshold"]

    def __init__(self, path: Path):
        self._fh = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.FIELDS)
        self._writer.writeheader()

    def add(self, seed: int, fold: int, system: str, task: TaskSpec, test: LabelledRows, probs: np.ndarray,
            validation: LabelledRows, val_probs: np.ndarray) -> None:
        threshold = repr(float(task.decision_threshold))
        for role, rows, scores in (("test", test, task.scores(probs)), ("threshold", validation, task.scores(val_probs))):
            for row_id, label, score in zip(rows.ids, rows.labels, scores):
                self._writer.writerow({"seed": seed, "fold": fold, "system": system, "role": role, "id": row_id,
                                       "label": label, "score": repr(float(score)), "threshold": threshold})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def network_name(system: str) -> str:
    """The row name of a blended fine-tuned system's network scored alone."""
    return f"{system} (network alone)"


def _take(values, index):
    return None if values is None else [values[i] for i in index]


def summarise(runs: list[dict], systems: list[str], reference: str) -> dict:
    """Mean and spread per system and measure; paired differences against ``reference``."""
    from scipy.stats import wilcoxon

    out = {}
    by_key = {(r["system"], r["seed"], r["fold"]): r for r in runs}
    keys = sorted({(r["seed"], r["fold"]) for r in runs})
    for system in systems:
        entry = {}
        for measure in MEASURES:
            values = [by_key[(system, *key)][measure] for key in keys]
            present = [v for v in values if v is not None]
            stats = {"mean": float(np.mean(present)) if present else None,
                     "std": float(np.std(present, ddof=1)) if len(present) > 1 else None, "runs": len(present)}
            if system != reference:
                pairs = [(v, by_key[(reference, *key)][measure]) for v, key in zip(values, keys)]
                pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                diffs = np.array([a - b for a, b in pairs])
                stats["diff_mean"] = float(diffs.mean()) if len(diffs) else None
                stats["wins"] = int(np.sum(_better(measure, diffs))) if len(diffs) else None
                stats["p_wilcoxon"] = (float(wilcoxon(diffs).pvalue)
                                       if len(diffs) >= 5 and np.any(diffs != 0) else None)
            entry[measure] = stats
        out[system] = entry
    return out


def _better(measure: str, diffs: np.ndarray) -> np.ndarray:
    """Fold runs where a system beats the reference (a lower false-positive rate is better)."""
    return diffs < 0 if measure == "hard_negative_fpr" else diffs > 0


def render_cv(report: dict) -> str:
    n_runs = len(report["seeds"]) * report["folds"]
    lines = ["# Grouped cross-validation", "", "Produced by:", "", "```", report["command"], "```", "",
             f"{report['rows']} rows, {report['groups']} groups by `{report['group_by']}`, {report['folds']} folds x "
             f"{len(report['seeds'])} seeds = {n_runs} fold runs per system (each group held out once per seed; "
             "the next fold picks the threshold). Mean +- standard deviation over the fold runs; hard-negative "
             "FPR and subtle recall on the rows marked `hard`. Took "
             f"{report['seconds']:.0f} s.", "",
             "| system | F1 | AUROC | AUPRC | FPR on hard negatives | recall on subtle grooming |",
             "|---|---|---|---|---|---|"]
    for system, entry in report["summary"].items():
        cells = [f"{fmt(entry[m]['mean'])} +- {fmt(entry[m]['std'])}" for m in MEASURES]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired with `{report['reference']}` on the same folds: mean difference, fold runs won of "
              f"{n_runs}, Wilcoxon signed-rank p (fold runs overlap across seeds: descriptive).", "",
              "| system | F1 | AUROC | AUPRC | FPR on hard negatives | recall on subtle grooming |",
              "|---|---|---|---|---|---|"]
    for system, entry in report["summary"].items():
        if system == report["reference"]:
            continue
        cells = []
        for m in MEASURES:
            s = entry[m]
            if s.get("diff_mean") is None:
                cells.append("n/a")
                continue
            p = "n/a" if s["p_wilcoxon"] is None else f"{s['p_wilcoxon']:.3f}"
            cells.append(f"{s['diff_mean']:+.3f} ({s['wins']}/{s['runs']}, p {p})")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m train.benchmarks.cv") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog=prog, description="Grouped cross-validation of systems on a labelled corpus.")
    add_config_options(p, "cross-validation", "results folder (default: output_dir in the config)")
    p.add_argument("--seeds", help="comma-separated seeds, instead of the config's (e.g. 0 for a quick look)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_cv_config(args.config)
        if args.output_dir:
            config.output_dir = args.output_dir
        if args.seeds:
            config.seeds = [int(s) for s in args.seeds.split(",")]
        run_cv(config, f"{prog} " + shlex.join(argv))
    except (InputError, ModelFolderError, ValueError, OSError) as err:
        return input_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
