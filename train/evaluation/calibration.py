"""Temperature scaling (Guo et al., 2017): one number that divides a network's logits so that
its probabilities match how often it is right, fitted on the validation split.

A fine-tuned transformer is often over-confident: on messages from writers it never saw, some
of its mistakes score 0.01 or 0.99. Dividing the logits by a temperature above 1 softens them
without changing the ranking (AUROC, AUPRC) or, after the threshold is re-picked, F1; it makes
the probabilities fit to average with another model's (``infer.blend``) and lowers ECE.

:func:`fit_stack` fits the other way to combine two binary models on the validation split: a
logistic regression on their log-odds (``blend.combine: stack``), whose weights say how far to
trust each model and whose output is calibrated by construction.
"""

from __future__ import annotations

import numpy as np

from infer.blend import apply_temperature, log_odds

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


#: The stack's L2 regularisation (scikit-learn's ``C``): three parameters on a validation split
#: of hundreds of rows need little.
STACK_C = 1.0


def fit_stack(model_positive, other_positive, y) -> tuple[list[float], float]:
    """``(coef, intercept)`` of a logistic regression of ``y`` (booleans: positive or not) on the
    two models' positive-class log-odds (``infer.blend.log_odds``), as ``infer.blend.stack_probs``
    applies them. Raises ``ValueError`` unless ``y`` holds both classes."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y, dtype=bool)
    if len(np.unique(y)) < 2:
        raise ValueError("stacking needs positive and negative rows on the validation split")
    features = np.column_stack([log_odds(model_positive), log_odds(other_positive)])
    fitted = LogisticRegression(C=STACK_C).fit(features, y)
    return [round(float(c), 6) for c in fitted.coef_[0]], round(float(fitted.intercept_[0]), 6)
