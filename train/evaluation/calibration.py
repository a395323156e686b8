"""Temperature scaling (Guo et al., 2017): one number that divides a network's logits so that
its probabilities match how often it is right, fitted on the validation split.

A fine-tuned transformer is often over-confident: on messages from writers it never saw, some
of its mistakes score 0.01 or 0.99. Dividing the logits by a temperature above 1 softens them
without changing the ranking (AUROC, AUPRC) or, after the threshold is re-picked, F1; it makes
the probabilities fit to average with another model's (``infer.blend``) and lowers ECE.
"""

from __future__ import annotations

import numpy as np

from infer.blend import apply_temperature

#: Temperatures tried, log-spaced from 0.25 to 20.
GRID = np.exp(np.linspace(np.log(0.25), np.log(20.0), 241))


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray) -> float:
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def fit_temperature(probs, y) -> float:
    """The temperature on :data:`GRID` that minimises the log-loss of ``probs`` (rows: the
    network's class probabilities) for the label indices ``y``; rows with ``y < 0`` (labels the
    model does not know) are left out. 1.0 when there is nothing to fit."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=int)
    keep = y >= 0
    probs, y = probs[keep], y[keep]
    if len(y) == 0 or len(np.unique(y)) < 2:
        return 1.0
    losses = [negative_log_likelihood(apply_temperature(probs, t), y) for t in GRID]
    return round(float(GRID[int(np.argmin(losses))]), 4)
