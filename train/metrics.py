"""Classification metrics computed directly with numpy: nothing is fetched from a hub.

The training loop (``compute_metrics``), the final evaluation and the benchmarks all call
these functions, so a figure means the same thing everywhere.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true, y_pred) -> dict:
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    return {"tp": int((y_true & y_pred).sum()), "fp": int((~y_true & y_pred).sum()),
            "fn": int((y_true & ~y_pred).sum()), "tn": int((~y_true & ~y_pred).sum())}


def _ratio(a, b) -> float:
    return float(a / b) if b else 0.0


def precision_recall_f1(y_true, y_pred) -> tuple[float, float, float]:
    c = confusion(y_true, y_pred)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    return precision, recall, _ratio(2 * precision * recall, precision + recall)


def ranked_counts(y_true, scores):
    """Distinct score thresholds, highest first, with true and false positives at each
    (predicting positive when score >= threshold): the basis of every curve below."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    return s[distinct], np.cumsum(y)[distinct], np.cumsum(~y)[distinct]


def roc_curve(y_true, scores):
    """False-positive and true-positive rates at every distinct threshold, from (0, 0)."""
    thresholds, tps, fps = ranked_counts(y_true, scores)
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(y_true, scores) -> float | None:
    """Area under the ROC curve (ties handled as in scikit-learn); None with one class."""
    y = np.asarray(y_true).astype(bool)
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(y_true, scores):
    thresholds, tps, fps = ranked_counts(y_true, scores)
    precision = tps / (tps + fps)
    recall = tps / max(tps[-1], 1)
    return precision, recall, thresholds


def average_precision(y_true, scores) -> float | None:
    """Area under the precision-recall curve as average precision (scikit-learn's definition)."""
    y = np.asarray(y_true).astype(bool)
    if not y.any():
        return None
    precision, recall, _ = precision_recall_curve(y, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(y_true, scores, max_fpr: float) -> float | None:
    """The highest recall reachable with a false-positive rate <= ``max_fpr``."""
    y = np.asarray(y_true).astype(bool)
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, scores)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max())


def expected_calibration_error(y_true, scores, bins: int = 10) -> float:
    """ECE of the positive-class probability over equal-width bins."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    idx = np.minimum((s * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(s[mask].mean() - y[mask].mean())
    return float(ece)


def brier(y_true, scores) -> float:
    y = np.asarray(y_true, dtype=float)
    return float(np.mean((np.asarray(scores, dtype=float) - y) ** 2))


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


def multiclass_metrics(y_true, probs, labels: list[str]) -> dict:
    """Accuracy, macro and per-class precision/recall/F1 for integer ``y_true`` and argmax of probs."""
    y = np.asarray(y_true).astype(int)
    pred = np.asarray(probs).argmax(axis=1)
    per_class = {}
    for k, name in enumerate(labels):
        p, r, f = precision_recall_f1(y == k, pred == k)
        per_class[name] = {"precision": p, "recall": r, "f1": f, "support": int((y == k).sum())}
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
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


def classification_metrics(y_true, probs, labels: list[str], positive_label: str | None,
                           threshold: float | None = None) -> dict:
    """Binary metrics for the positive class when the task is binary, else multi-class ones."""
    probs = np.asarray(probs, dtype=float)
    if positive_label is not None and len(labels) == 2:
        k = labels.index(positive_label)
        return binary_metrics(np.asarray(y_true) == k, probs[:, k], 0.5 if threshold is None else threshold)
    return multiclass_metrics(y_true, probs, labels)


# -- evaluation reports: calibration bins, confusion matrices, one-vs-rest ranking ------------

def reliability_bins(y_true, scores, bins: int = 10) -> list[dict]:
    """Per non-empty equal-width bin (the same bins as ``expected_calibration_error``): its
    range, row count, mean score and observed positive rate: the reliability diagram's points."""
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


def confusion_matrix(y_true, y_pred, n_labels: int) -> list[list[int]]:
    """``matrix[i][j]``: rows of true class ``i`` predicted as class ``j``."""
    matrix = np.zeros((n_labels, n_labels), dtype=int)
    np.add.at(matrix, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return matrix.tolist()


def one_vs_rest_metrics(y_true, probs, labels: list[str]) -> dict:
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
