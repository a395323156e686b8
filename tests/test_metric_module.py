"""The metric set as a Hugging Face ``evaluate`` module, loaded offline from its folder."""

import pathlib

import numpy as np
import pytest

from train.evaluation.metrics import binary_metrics, bootstrap_ci, precision_recall_f1

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULE = ROOT / "train" / "evaluation" / "outreach_guard_metrics"

# A second local module, as a user would write one, to combine with ours.
SECOND_MODULE = '''
import datasets
import evaluate


class MeanScore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="mean score and flagged share", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("float64"),
                                                               "references": datasets.Value("int32")}))

    def _compute(self, predictions, references, threshold=0.5):
        flagged = [p >= threshold for p in predictions]
        return {"mean_score": sum(predictions) / len(predictions), "flagged_share": sum(flagged) / len(flagged)}
'''


@pytest.fixture
def evaluate_offline(monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import evaluate

    return evaluate


def _random(seed, n=300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = np.round(np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1), 2)  # rounding makes ties
    return y, scores


@pytest.fixture
def module(evaluate_offline):
    return evaluate_offline.load(str(MODULE), keep_in_memory=True)


@pytest.mark.parametrize("seed", range(3))
def test_the_module_gives_the_projects_figures(module, seed):
    y, scores = _random(seed)
    got = module.compute(predictions=scores.tolist(), references=y.tolist(), threshold=0.6)
    expected = binary_metrics(y, scores, 0.6)
    expected.update(expected.pop("confusion"))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_the_module_bootstrap_intervals_are_the_projects(module):
    y, scores = _random(7)
    got = module.compute(predictions=scores.tolist(), references=y.tolist(), threshold=0.5, bootstrap_resamples=50,
                         seed=3)
    f1 = bootstrap_ci(y, scores, lambda t, s: precision_recall_f1(t, s >= 0.5)[2], 50, 3)
    assert got["f1_ci"] == pytest.approx(f1)
    assert got["f1_ci"][0] <= got["f1"] <= got["f1_ci"][1]
    assert {"auroc_ci", "auprc_ci"} <= got.keys()


def test_combine_with_another_local_module(evaluate_offline, module, tmp_path):
    folder = tmp_path / "mean_score"
    folder.mkdir()
    (folder / "mean_score.py").write_text(SECOND_MODULE)
    second = evaluate_offline.load(str(folder), keep_in_memory=True)
    combined = evaluate_offline.combine([module, second])
    y, scores = _random(1)
    got = combined.compute(predictions=scores.tolist(), references=y.tolist())
    ours = binary_metrics(y, scores, 0.5)
    ours.update(ours.pop("confusion"))
    assert got.keys() == ours.keys() | {"mean_score", "flagged_share"}
    assert got["f1"] == pytest.approx(ours["f1"]) and got["auroc"] == pytest.approx(ours["auroc"])
    assert got["mean_score"] == pytest.approx(scores.mean())
    assert got["flagged_share"] == pytest.approx((scores >= 0.5).mean())
