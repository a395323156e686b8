import numpy as np
import pytest

from train.evaluation.metrics import precision_recall_f1
from train.evaluation.threshold import select_threshold


def test_max_f1_threshold_separates_separable_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    t = select_threshold(y, s)
    assert 0.3 < t <= 0.6
    assert precision_recall_f1(y, s >= t)[2] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_max_f1_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    t = select_threshold(y, s)
    best = max(precision_recall_f1(y, s >= c)[2] for c in np.unique(s))
    assert precision_recall_f1(y, s >= t)[2] == pytest.approx(best)


def test_constraint_rules():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    s = np.linspace(0.05, 0.95, 10)
    t = select_threshold(y, s, "min_precision", 1.0)
    assert precision_recall_f1(y, s >= t)[0] == 1.0 and (s >= t).sum() == 4
    t = select_threshold(y, s, "max_fpr", 0.2)
    fp = ((s >= t) & (y == 0)).sum()
    assert fp / (y == 0).sum() <= 0.2 and (s >= t).sum() == 6
    assert select_threshold(y, s, "fixed", 0.42) == 0.42
