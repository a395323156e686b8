"""Choosing the decision threshold on the validation split."""

from __future__ import annotations

import numpy as np

from .metrics import roc_curve


def _sweep(y_true: np.ndarray, scores: np.ndarray):
    """Precision, recall and FPR for every distinct threshold, highest first (predict positive
    when score >= t)."""
    fpr, recall, thresholds = roc_curve(y_true, scores)
    fpr, recall, thresholds = fpr[1:], recall[1:], thresholds[1:]  # drop the (inf: nothing flagged) point
    tp, fp = recall * y_true.sum(), fpr * (len(y_true) - y_true.sum())
    precision = tp / np.maximum(tp + fp, 1e-12)
    return thresholds, precision, recall, fpr


def select_threshold(y_true, scores, rule: str = "max_f1", value: float | None = None) -> float:
    """Threshold on positive-class ``scores`` for binary ``y_true`` (1 = positive).

    The threshold returned is a midpoint between adjacent distinct scores, so a small shift in
    scores at scoring time does not flip the decision for the boundary example.
    """
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    if rule == "fixed":
        return float(value)
    if len(scores) == 0 or y_true.min() == y_true.max():
        return 0.5
    thresholds, precision, recall, fpr = _sweep(y_true, scores)
    if rule == "max_f1":
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.argmax(f1))
    elif rule == "min_precision":
        ok = np.nonzero(precision >= value)[0]
        best = int(ok[np.argmax(recall[ok])]) if len(ok) else 0
    elif rule == "max_fpr":
        ok = np.nonzero(fpr <= value)[0]
        best = int(ok[np.argmax(recall[ok])]) if len(ok) else 0
    else:
        raise ValueError(f"unknown threshold rule {rule!r}")
    # Midpoint with the next lower distinct score keeps the same decisions on this data.
    lower = thresholds[best + 1] if best + 1 < len(thresholds) else 0.0
    return float((thresholds[best] + lower) / 2)
