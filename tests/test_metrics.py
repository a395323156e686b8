import numpy as np
import pytest
from sklearn import metrics as skm

from infer.manifest import TaskSpec

from train.evaluation.metrics import (auroc, average_precision, binary_metrics, bootstrap_ci, brier, classification_metrics,
                           expected_calibration_error, multiclass_metrics, recall_at_fpr)


def test_hand_computed_binary_metrics():
    y = [1, 1, 0, 0, 1, 0]
    s = [0.9, 0.4, 0.35, 0.1, 0.8, 0.7]
    m = binary_metrics(y, s, threshold=0.5)
    assert m["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Of 9 positive/negative pairs, the positive ranks higher in 8 (0.4 loses to 0.7).
    assert m["auroc"] == pytest.approx(8 / 9)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_scikit_learn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(y * 0.25 + rng.random(n) * 0.75, 0, 1), 2)  # rounding makes ties
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s))
    assert brier(y, s) == pytest.approx(skm.brier_score_loss(y, s))
    m = binary_metrics(y, s, 0.5)
    assert m["f1"] == pytest.approx(skm.f1_score(y, s >= 0.5, zero_division=0))
    assert m["precision"] == pytest.approx(skm.precision_score(y, s >= 0.5, zero_division=0))
    fpr, tpr, _ = skm.roc_curve(y, s)
    assert recall_at_fpr(y, s, 0.05) == pytest.approx(tpr[fpr <= 0.05].max())


def test_single_class_metrics_are_none_not_errors():
    assert auroc([1, 1], [0.2, 0.9]) is None
    assert recall_at_fpr([0, 0], [0.2, 0.9], 0.01) is None
    assert average_precision([0, 0], [0.2, 0.9]) is None


def test_ece_hand_computed():
    # Two bins used: [0.1, 0.1] with outcomes [0, 1] -> |0.1 - 0.5| ; [0.9] with [1] -> 0.1
    assert expected_calibration_error([0, 1, 1], [0.1, 0.1, 0.9]) == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.1)


def test_multiclass_against_scikit_learn():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], 300)
    y = rng.integers(0, 3, 300)
    m = multiclass_metrics(y, probs, ["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, probs.argmax(1), average="macro"))
    assert m["per_class"]["b"]["recall"] == pytest.approx(skm.recall_score(y, probs.argmax(1), average=None)[1])
    assert classification_metrics(y, probs, TaskSpec(("a", "b", "c")))["macro_f1"] == m["macro_f1"]


def test_bootstrap_interval_contains_point_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.clip(y * 0.4 + rng.random(300) * 0.6, 0, 1)
    lo, hi = bootstrap_ci(y, s, auroc, n_resamples=200, seed=1)
    assert lo < auroc(y, s) < hi
    assert bootstrap_ci(y, s, auroc, n_resamples=200, seed=1) == [lo, hi]
