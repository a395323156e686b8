"""Evaluation plots as PNG files.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), which renders
through the non-interactive Agg canvas: no display, no global pyplot state. Curves come from
``train.metrics`` so a plot shows exactly what the reported numbers measure.

Binary tasks plot the positive class; multi-class tasks plot each class against the rest and
calibrate the predicted class's probability (top-label).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from infer.manifest import TaskSpec

from .metrics import (average_precision, auroc, confusion_matrix, precision_recall_curve, reliability_bins,
                      roc_curve)

PLOT_FILES = {
    "pr_curve": "pr_curve.png",
    "roc_curve": "roc_curve.png",
    "reliability": "reliability.png",
    "confusion_matrix": "confusion_matrix.png",
    "score_histograms": "score_histograms.png",
}


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _one_vs_rest(y, probs, task: TaskSpec):
    """(name, is-this-class, its probability) per curve: the positive class, or every class."""
    if task.binary:
        k = task.positive_index
        return [(task.positive_label, y == k, probs[:, k])]
    return [(name, y == k, probs[:, k]) for k, name in enumerate(task.labels)]


def plot_pr_curve(path, y, probs, task: TaskSpec) -> None:
    threshold = task.decision_threshold
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    for name, truth, score in _one_vs_rest(y, probs, task):
        if not truth.any():
            continue
        precision, recall, cuts = precision_recall_curve(truth, score)
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre",
                label=f"{name} (AP {average_precision(truth, score):.3f})")
        if threshold is not None:
            at = np.nonzero(cuts >= threshold)[0]
            if len(at):
                ax.plot(recall[at[-1]], precision[at[-1]], "o", color="black", label=f"threshold {threshold:.3f}")
        ax.axhline(truth.mean(), linestyle=":", color="grey", linewidth=1)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02), title="Precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def plot_roc_curve(path, y, probs, task: TaskSpec) -> None:
    threshold = task.decision_threshold
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    for name, truth, score in _one_vs_rest(y, probs, task):
        area = auroc(truth, score)
        if area is None:
            continue
        fpr, tpr, cuts = roc_curve(truth, score)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {area:.3f})")  # linear between points, as the area is
        if threshold is not None:
            at = np.nonzero(cuts >= threshold)[0]
            ax.plot(fpr[at[-1]], tpr[at[-1]], "o", color="black", label=f"threshold {threshold:.3f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    for fpr_mark in (0.01, 0.05):
        ax.axvline(fpr_mark, color="grey", linewidth=0.6, linestyle="--")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", xlim=(0, 1), ylim=(0, 1.02),
           title="ROC (dashed: 1% and 5% FPR)")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_reliability(path, y, probs, task: TaskSpec, bins: int = 10) -> None:
    if task.binary:
        k = task.positive_index
        truth, score, what = y == k, probs[:, k], f"P({task.positive_label})"
    else:
        truth, score, what = probs.argmax(axis=1) == y, probs.max(axis=1), "probability of the predicted class"
    points = reliability_bins(truth, score, bins)
    fig = Figure(figsize=(5, 5))
    ax, counts = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="perfectly calibrated")
    ax.plot([p["mean_score"] for p in points], [p["observed"] for p in points], "o-", label="model")
    ax.set(ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1.02), title="Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    counts.bar([(p["low"] + p["high"]) / 2 for p in points], [p["n"] for p in points], width=1 / bins * 0.9,
               color="grey")
    counts.set(xlabel=what, ylabel="rows")
    _save(fig, path)


def plot_confusion_matrix(path, y, pred, labels) -> None:
    matrix = np.array(confusion_matrix(y, pred, len(labels)))
    fig = Figure(figsize=(1.2 * len(labels) + 2.5, 1.1 * len(labels) + 2))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            dark = matrix[i, j] > matrix.max() / 2
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="white" if dark else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title="Confusion matrix")
    _save(fig, path)


def plot_score_histograms(path, y, probs, task: TaskSpec) -> None:
    threshold = task.decision_threshold
    edges = np.linspace(0, 1, 26)
    labels = list(task.labels)
    if task.binary:
        # One panel per true class, each with its own count axis: classes are often imbalanced.
        k, positive = task.positive_index, task.positive_label
        fig = Figure(figsize=(5.5, 5))
        axes = fig.subplots(len(labels), 1, sharex=True)
        for j, (ax, name) in enumerate(zip(axes, labels)):
            ax.hist(probs[y == j, k], bins=edges, color=f"C{j}")
            if threshold is not None:
                ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
                ax.legend(fontsize=8)
            ax.set(ylabel="rows", title=f"true {name} ({int((y == j).sum())} rows)")
        axes[-1].set(xlabel=f"P({positive})")
    else:
        fig = Figure(figsize=(4 * len(labels), 3.5))
        axes = fig.subplots(1, len(labels))
        for k, (ax, name) in enumerate(zip(axes, labels)):
            ax.hist(probs[y == k, k], bins=edges, alpha=0.6, label=f"true {name}")
            ax.hist(probs[y != k, k], bins=edges, alpha=0.6, label="other classes")
            ax.set(xlabel=f"P({name})", ylabel="rows", title=name)
            ax.legend(fontsize=8)
    _save(fig, path)


def write_plots(folder, y, probs, pred, task: TaskSpec) -> dict[str, str]:
    """All five plots into ``folder``; returns ``{plot name: file name}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y, probs = np.asarray(y, dtype=int), np.asarray(probs, dtype=float)
    plot_pr_curve(folder / PLOT_FILES["pr_curve"], y, probs, task)
    plot_roc_curve(folder / PLOT_FILES["roc_curve"], y, probs, task)
    plot_reliability(folder / PLOT_FILES["reliability"], y, probs, task)
    plot_confusion_matrix(folder / PLOT_FILES["confusion_matrix"], y, pred, list(task.labels))
    plot_score_histograms(folder / PLOT_FILES["score_histograms"], y, probs, task)
    return dict(PLOT_FILES)
