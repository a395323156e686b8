"""Classification metrics: scikit-learn's curves and counts, plus what it lacks.

Kept here: recall at a fixed false-positive rate, expected calibration error and its bins,
seeded bootstrap intervals, and ``None`` (not an exception, not a misleading 0) for metrics
that a one-class sample leaves undefined. The training loop, the evaluation command, the
benchmarks and the ``evaluate`` module (``train/evaluation/outreach_guard_metrics``) all call
these functions, so a figure means the same thing everywhere. Nothing is fetched from a hub.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from infer.manifest import TaskSpec


def _both_classes(y) -> bool:
    y = np.asarray(y).astype(bool)
    return bool(y.any() and not y.all())


def confusion(y_true, y_pred) -> dict:
    tn, fp, fn, tp = skm.confusion_matrix(np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool),
                                          labels=[False, True]).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def precision_recall_f1(y_true, y_pred) -> tuple[float, float, float]:
    p, r, f, _ = skm.precision_recall_fscore_support(np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool),
                                                     average="binary", zero_division=0)
    return float(p), float(r), float(f)


def roc_curve(y_true, scores):
    """False-positive and true-positive rates at every distinct threshold, from (0, 0)."""
    return skm.roc_curve(np.asarray(y_true).astype(bool), np.asarray(scores, dtype=float), drop_intermediate=False)


def auroc(y_true, scores) -> float | None:
    """Area under the ROC curve; None with one class."""
    if not _both_classes(y_true):
        return None
    return float(skm.roc_auc_score(np.asarray(y_true).astype(bool), np.asarray(scores, dtype=float)))


def precision_recall_curve(y_true, scores):
    """Precision and recall at every distinct threshold, highest threshold first, and the thresholds."""
    precision, recall, thresholds = skm.precision_recall_curve(np.asarray(y_true).astype(bool),
                                                               np.asarray(scores, dtype=float))
    # scikit-learn orders by increasing threshold and appends the (recall 0, precision 1) end point.
    return precision[:-1][::-1], recall[:-1][::-1], thresholds[::-1]


def average_precision(y_true, scores) -> float | None:
    """Area under the precision-recall curve as average precision; None without positives."""
    y = np.asarray(y_true).astype(bool)
    if not y.any():
        return None
    return float(skm.average_precision_score(y, np.asarray(scores, dtype=float)))


def recall_at_fpr(y_true, scores, max_fpr: float) -> float | None:
    """The highest recall reachable with a false-positive rate <= ``max_fpr``; None with one class."""
    if not _both_classes(y_true):
        return None
    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def reliability_bins(y_true, scores, bins: int = 10) -> list[dict]:
    """Per non-empty equal-width bin: its range, row count, mean score and observed positive
    rate (the reliability diagram's points; the bins of :func:`expected_calibration_error`)."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    idx = np.minimum((s * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append({"low": b / bins, "high": (b + 1) / bins, "n": int(mask.sum()),
                        "mean_score": float(s[mask].mean()), "observed": float(y[mask].mean())})
    return out


def expected_calibration_error(y_true, scores, bins: int = 10) -> float:
    """ECE of the positive-class probability over equal-width bins."""
    n = len(np.asarray(scores))
    return float(sum(b["n"] / n * abs(b["mean_score"] - b["observed"]) for b in reliability_bins(y_true, scores, bins)))


def brier(y_true, scores) -> float:
    return float(skm.brier_score_loss(np.asarray(y_true).astype(int), np.asarray(scores, dtype=float),
                                      pos_label=1) if len(np.asarray(scores)) else 0.0)


def binary_metrics(y_true, scores, threshold: float = 0.5) -> dict:
    """All point metrics for a binary task; ``y_true`` is 1 for the positive class."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    pred = s >= threshold
    precision, recall, f1 = precision_recall_f1(y, pred)
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float((pred == y.astype(bool)).mean()) if len(y) else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion": confusion(y, pred),
        "auroc": auroc(y, s),
        "auprc": average_precision(y, s),
        "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01),
        "recall_at_5pct_fpr": recall_at_fpr(y, s, 0.05),
        "ece": expected_calibration_error(y, s),
        "brier": brier(y, s),
    }


def multiclass_metrics(y_true, probs, labels) -> dict:
    """Accuracy, macro and per-class precision/recall/F1 for integer ``y_true`` and argmax of probs."""
    y = np.asarray(y_true).astype(int)
    pred = np.asarray(probs).argmax(axis=1)
    ks = list(range(len(labels)))
    p, r, f, support = skm.precision_recall_fscore_support(y, pred, labels=ks, zero_division=0)
    per_class = {name: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                        "support": int(support[k])} for k, name in enumerate(labels)}
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_precision": float(np.mean(p)),
        "macro_recall": float(np.mean(r)),
        "macro_f1": float(np.mean(f)),
        "per_class": per_class,
    }


def bootstrap_ci(y_true, scores, metric, n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05):
    """Percentile bootstrap (1 - alpha) interval of ``metric(y_true, scores)``; resamples where
    the metric is undefined (one class only) are skipped."""
    y, s = np.asarray(y_true), np.asarray(scores)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(y), len(y))
        v = metric(y[idx], s[idx])
        if v is not None:
            values.append(v)
    if not values:
        return None
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]


def classification_metrics(y_true, probs, task: TaskSpec) -> dict:
    """Binary metrics for the positive class at the task's threshold when the task is binary,
    else multi-class ones."""
    probs = np.asarray(probs, dtype=float)
    if task.binary:
        return binary_metrics(np.asarray(y_true) == task.positive_index, task.scores(probs), task.decision_threshold)
    return multiclass_metrics(y_true, probs, task.labels)


def ranking_metrics(y_true, probs, task: TaskSpec) -> dict:
    """Threshold-free figures of one score: AUROC, AUPRC and ECE of the positive class (binary
    tasks; rows with unknown labels, ``y < 0``, left out), else the top-label accuracy."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    keep = y_true >= 0
    y_true, probs = y_true[keep], probs[keep]
    if task.binary:
        positive, scores = y_true == task.positive_index, task.scores(probs)
        return {"auroc": auroc(positive, scores), "auprc": average_precision(positive, scores),
                "ece": expected_calibration_error(positive, scores) if len(scores) else None}
    return {"accuracy": float(np.mean(probs.argmax(axis=1) == y_true)) if len(y_true) else None}


def confusion_matrix(y_true, y_pred, n_labels: int) -> list[list[int]]:
    """``matrix[i][j]``: rows of true class ``i`` predicted as class ``j``."""
    return skm.confusion_matrix(np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int),
                                labels=list(range(n_labels))).tolist()


def one_vs_rest_metrics(y_true, probs, labels) -> dict:
    """Per-class AUROC and AUPRC (each class against the rest) and their macro means over the
    classes where they are defined (None where no class has both outcomes)."""
    y = np.asarray(y_true).astype(int)
    probs = np.asarray(probs, dtype=float)
    per_class = {name: {"auroc": auroc(y == k, probs[:, k]), "auprc": average_precision(y == k, probs[:, k])}
                 for k, name in enumerate(labels)}

    def macro(key):
        values = [c[key] for c in per_class.values() if c[key] is not None]
        return float(np.mean(values)) if values else None

    return {"macro_auroc": macro("auroc"), "macro_auprc": macro("auprc"), "per_class": per_class}


def multiclass_brier(y_true, probs) -> float:
    """Mean over rows of the squared distance between the probability vector and the one-hot truth."""
    probs = np.asarray(probs, dtype=float)
    onehot = np.eye(probs.shape[1])[np.asarray(y_true, dtype=int)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def top_label_ece(y_true, probs, bins: int = 10) -> float:
    """ECE of the predicted class's probability against whether the prediction was right."""
    probs = np.asarray(probs, dtype=float)
    correct = probs.argmax(axis=1) == np.asarray(y_true, dtype=int)
    return expected_calibration_error(correct, probs.max(axis=1), bins)
