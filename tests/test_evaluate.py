import json

import numpy as np
import pytest
from sklearn import metrics as skm

from conftest import build_classifier_folder, make_rows, write_jsonl
from infer import Classifier
from train.recipes.data import DataError
from infer.io import InputError
from infer.manifest import TaskSpec
from train.evaluation.evaluate import evaluate_predictions, headline, main, parse_args, run_evaluation, slice_values
from train.evaluation.metrics import (confusion_matrix, expected_calibration_error, multiclass_brier, one_vs_rest_metrics,
                           recall_at_fpr, reliability_bins, top_label_ece)


# -- metric functions -------------------------------------------------------------------------

def test_reliability_bins_hand_computed_and_consistent_with_ece():
    y, s = [0, 1, 1, 0], [0.1, 0.15, 0.9, 0.95]
    bins = reliability_bins(y, s)
    assert [(b["low"], b["n"]) for b in bins] == [(0.1, 2), (0.9, 2)]
    assert bins[0]["mean_score"] == pytest.approx(0.125) and bins[0]["observed"] == 0.5
    assert bins[1]["mean_score"] == pytest.approx(0.925) and bins[1]["observed"] == 0.5
    gap = sum(b["n"] / 4 * abs(b["mean_score"] - b["observed"]) for b in bins)
    assert expected_calibration_error(y, s) == pytest.approx(gap)


def test_multiclass_calibration_hand_computed():
    probs = [[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]
    # predicted-class confidences 0.8 (right), 0.6 (wrong), 0.7 (right), one per bin
    assert top_label_ece([0, 1, 1], probs) == pytest.approx((0.2 + 0.6 + 0.3) / 3)
    assert multiclass_brier([0], [[0.7, 0.2, 0.1]]) == pytest.approx(0.09 + 0.04 + 0.01)


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_ranking_and_confusion_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 200)
    probs = rng.dirichlet([1, 1, 1], 200) + np.eye(3)[y] * 0.3
    probs /= probs.sum(1, keepdims=True)
    m = one_vs_rest_metrics(y, probs, ["a", "b", "c"])
    assert m["macro_auroc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    for k, name in enumerate("abc"):
        assert m["per_class"][name]["auprc"] == pytest.approx(skm.average_precision_score(y == k, probs[:, k]))
    pred = probs.argmax(1)
    assert confusion_matrix(y, pred, 3) == skm.confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()


# -- evaluate_predictions ---------------------------------------------------------------------

def _random_binary(seed, n=300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.round(np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1), 2)
    return y, np.c_[1 - score, score]


@pytest.mark.parametrize("seed", range(3))
def test_binary_report_agrees_with_scikit_learn(seed):
    y, probs = _random_binary(seed)
    r = evaluate_predictions(y, probs, TaskSpec(("benign", "grooming"), "grooming", 0.6), n_resamples=200, seed=3)
    m, score = r["overall"], probs[:, 1]
    assert r["task"] == "binary" and r["threshold"] == 0.6
    assert m["f1"] == pytest.approx(skm.f1_score(y, score >= 0.6))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, score))
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, score))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, score >= 0.6).tolist()
    tn, fp = m["confusion_matrix"][0]
    assert m["false_positive_rate"] == pytest.approx(fp / (fp + tn))
    for name in ("f1", "auroc", "auprc"):
        lo, hi = r["confidence_intervals"][name]
        assert lo <= m[name] <= hi and hi - lo > 0.01
    # The FPR-budget operating points reach recall at FPR exactly, within the budget.
    fpr, tpr, _ = skm.roc_curve(y, score)
    for point in m["operating_points"]:
        assert point["false_positive_rate"] <= point["max_fpr"]
        assert point["recall"] == pytest.approx(tpr[fpr <= point["max_fpr"]].max())
        assert point["recall"] == pytest.approx(recall_at_fpr(y, score, point["max_fpr"]))


def test_bootstrap_is_seeded_and_resamples_configurable():
    y, probs = _random_binary(7)
    args = (y, probs, TaskSpec(("benign", "grooming"), "grooming", 0.5))
    a = evaluate_predictions(*args, n_resamples=100, seed=1)
    assert a["confidence_intervals"] == evaluate_predictions(*args, n_resamples=100, seed=1)["confidence_intervals"]
    assert a["confidence_intervals"] != evaluate_predictions(*args, n_resamples=100, seed=2)["confidence_intervals"]
    assert a["bootstrap"]["resamples"] == 100
    more = evaluate_predictions(*args, n_resamples=150, seed=1)["confidence_intervals"]["f1"]
    assert more != a["confidence_intervals"]["f1"]  # the count is honoured, not ignored


def test_slices_skip_what_one_class_cannot_have_and_say_so():
    y = np.array([1, 1, 1, 0, 1, 0, 0, 1])
    score = np.array([0.9, 0.4, 0.8, 0.7, 0.6, 0.2, 0.1, 0.3])
    slices = {"family": ["f", "f", "f", "m", "m", "m", "m", "m"], "tactics": [["a"], [], ["a", "b"], ["b"], [], [], [], []],
              "stage": ["x", "x", "x", "x", "x", "neg", "neg", "x"]}
    r = evaluate_predictions(y, np.c_[1 - score, score], TaskSpec(("benign", "grooming"), "grooming", 0.5), slices=slices,
                             n_resamples=20)
    only_positive = r["slices"]["family"]["f"]
    assert only_positive["recall"] == pytest.approx(2 / 3) and only_positive["auroc"] is None
    assert "auroc" in only_positive["skipped"] and "recall" not in only_positive["skipped"]
    assert "one class only (grooming)" in only_positive["note"]
    mixed = r["slices"]["family"]["m"]  # y [0, 1, 0, 0, 1], scores [.7, .6, .2, .1, .3]
    assert "skipped" not in mixed
    assert mixed["auroc"] == pytest.approx(skm.roc_auc_score([0, 1, 0, 0, 1], [0.7, 0.6, 0.2, 0.1, 0.3]))
    assert mixed["false_positive_rate"] == pytest.approx(1 / 3)
    # a row with a list value counts in each of its elements' slices
    assert r["slices"]["tactics"]["a"]["n"] == 2 and r["slices"]["tactics"]["b"]["n"] == 2
    assert r["slices"]["tactics"]["b"]["positives"] == 1  # rows 2 and 3: both classes
    only_negative = r["slices"]["stage"]["neg"]  # scores 0.2 and 0.1: no false positive
    assert only_negative["false_positive_rate"] == 0.0 and only_negative["accuracy"] == 1.0
    assert only_negative["recall"] is None and only_negative["f1"] is None and "recall" in only_negative["skipped"]
    assert "one class only (benign)" in only_negative["note"]
    assert slice_values([True, None, "x", ["x", False]]) == {"(missing)": [1], "false": [3], "true": [0], "x": [2, 3]}


def test_multiclass_report_agrees_with_scikit_learn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 150)
    probs = rng.dirichlet([1, 1, 1], 150) + np.eye(3)[y] * 0.4
    probs /= probs.sum(1, keepdims=True)
    r = evaluate_predictions(y, probs, TaskSpec(("a", "b", "c")), n_resamples=50,
                             slices={"g": ["x"] * 100 + ["y"] * 50})
    m = r["overall"]
    assert r["task"] == "multiclass" and r["threshold"] is None
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, probs.argmax(1), average="macro"))
    assert m["macro_auroc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    assert m["per_class"]["c"]["recall"] == pytest.approx(skm.recall_score(y, probs.argmax(1), average=None)[2])
    assert set(r["confidence_intervals"]) == {"macro_f1", "macro_auroc", "macro_auprc"}
    assert headline(r)["f1"] == m["macro_f1"] and headline(r)["recall_at_1pct_fpr"] is None
    assert r["slices"]["g"]["y"]["n"] == 50


def test_top_errors_name_ids_most_confident_first():
    y = np.array([0, 0, 1, 1, 0])
    score = np.array([0.9, 0.7, 0.1, 0.3, 0.2])
    r = evaluate_predictions(y, np.c_[1 - score, score], TaskSpec(("benign", "grooming"), "grooming", 0.5),
                             ids=["a", "b", "c", "d", "e"], n_resamples=10)
    assert [e["id"] for e in r["top_errors"]["false_positives"]] == ["a", "b"]
    assert [e["id"] for e in r["top_errors"]["false_negatives"]] == ["c", "d"]


# -- the command line on a tiny model ---------------------------------------------------------

def _eval_rows():
    rows = []
    for split, n, seed in (("train", 8, 1), ("test", 40, 2)):
        for i, r in enumerate(make_rows(n, seed=seed, prefix=split)):
            # `family` has a one-class slice (grooming only) and a mixed one
            r.update(split=split, family="fam_g" if r["label"] == "grooming" and i % 4 == 1 else "mixed",
                     hard=i % 3 == 0, tactics=["secrecy"] if i % 5 == 0 else [])
            rows.append(r)
    return rows


def _png_ok(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_cli_writes_metrics_report_and_plots(tiny_model, tmp_path):
    rows = _eval_rows()
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    out = tmp_path / "eval"
    assert main(["--model", str(tiny_model), "--data", str(data), "--split", "test", "--slice-by", "family", "hard",
                 "tactics", "--output-dir", str(out), "--bootstrap-resamples", "50", "--threshold", "0.5"]) == 0
    result = json.loads((out / "metrics.json").read_text())

    # Figures are those of the runtime's own predictions on the test rows only.
    test = [r for r in rows if r["split"] == "test"]
    score = Classifier.from_pretrained(tiny_model).predict_proba([r["text"] for r in test])[:, 1]
    y = np.array([r["label"] == "grooming" for r in test])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n"] == 40 and saved["overall"]["f1"] == pytest.approx(skm.f1_score(y, score >= 0.5))
    assert saved["overall"]["auroc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-6)
    assert saved["overall"]["brier"] == pytest.approx(skm.brier_score_loss(y, score), abs=1e-6)
    assert saved["confidence_intervals"]["f1"] == result["confidence_intervals"]["f1"]
    assert saved["threshold_source"] == "--threshold"
    assert saved["slices"]["family"]["fam_g"]["auroc"] is None and "note" in saved["slices"]["family"]["fam_g"]
    assert set(saved["slices"]["hard"]) == {"true", "false"}

    report = (out / "report.md").read_text()
    assert "python -m train.evaluation --model" in report and "## Slices" in report and "### By `family`" in report
    assert "one class only" in report or "hold one class only" in report
    for name, path in saved["plots"].items():
        assert f"]({path})" in report
        _png_ok(out / path)
    assert len(saved["plots"]) == 5
    # Message text never reaches the report or the metrics file; ids do.
    written = report + (out / "metrics.json").read_text()
    assert not any(r["text"] in written for r in test)


def test_cli_multiclass_model_and_label_map(tiny_base, tmp_path):
    folder = build_classifier_folder(tmp_path / "m3", tiny_base, labels=["low", "mid", "high"], positive=None,
                                     threshold=None)
    import csv

    path = tmp_path / "three.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "body", "grade"])
        for i, r in enumerate(make_rows(30, seed=4)):
            w.writerow([f"k{i}", r["text"], str(i % 3)])
    assert main(["--model", str(folder), "--data", str(path), "--text-column", "body", "--label-column", "grade",
          "--id-column", "key", "--label-map", "0=low", "1=mid", "2=high", "--output-dir", str(tmp_path / "o"),
          "--bootstrap-resamples", "20"]) == 0
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert saved["task"] == "multiclass" and saved["class_counts"] == {"low": 10, "mid": 10, "high": 10}
    assert np.array(saved["overall"]["confusion_matrix"]).sum() == 30
    assert set(saved["overall"]["per_class"]) == {"low", "mid", "high"}
    assert "macro F1" in (tmp_path / "o" / "report.md").read_text()
    for path in saved["plots"].values():
        _png_ok(tmp_path / "o" / path)


def test_cli_reads_conversations(tiny_model, tmp_path):
    rows = []
    for i, r in enumerate(make_rows(12, seed=6)):
        rows.append({"conversation_id": 100 + i, "is_malicious": r["label"] == "grooming", "messages": [
            {"idx": 1, "role": "target", "text": "Thanks, tell me more."},
            {"idx": 0, "role": "initiator", "text": r["text"]},
            {"idx": 2, "role": "initiator", "text": "Great, talk soon."}]})
    data = write_jsonl(tmp_path / "conv.jsonl", rows)
    result = run_evaluation(parse_args(["--model", str(tiny_model), "--data", str(data), "--messages-column", "messages",
                   "--label-column", "is_malicious", "--id-column", "conversation_id", "--label-map", "true=grooming",
                   "false=benign", "--no-plots", "--output-dir", str(tmp_path / "o"), "--bootstrap-resamples", "20"]))
    assert result["n"] == 12 and result["class_counts"] == {"benign": 6, "grooming": 6}
    assert not (tmp_path / "o" / "plots").exists()
    clf = Classifier.from_pretrained(tiny_model)
    expected = clf.predict_proba([r["messages"][1]["text"] + "\nGreat, talk soon." for r in rows])[:, 1]
    assert result["overall"]["brier"] == pytest.approx(skm.brier_score_loss([r["is_malicious"] for r in rows], expected),
                                                       abs=1e-6)


def test_labels_outside_the_model_are_a_clear_error(tiny_model, tmp_path):
    rows = make_rows(4) + [{"id": "x9", "text": "hello there", "label": "spam"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(InputError, match=r"labels \['spam'\] are not among the model's labels"):
        run_evaluation(parse_args(["--model", str(tiny_model), "--data", str(data), "--output-dir", str(tmp_path / "o")]))
    with pytest.raises(DataError, match="no column"):
        run_evaluation(parse_args(["--model", str(tiny_model), "--data",
                                   str(write_jsonl(tmp_path / "e.jsonl", make_rows(4))), "--slice-by", "nope",
                                   "--output-dir", str(tmp_path / "o")]))
