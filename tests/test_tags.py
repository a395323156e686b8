"""Tactic tags: the tag head in a model folder (infer.tags), joint training (train.recipes.tags),
scoring output and per-tag metrics."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import make_rows, read_scored_tags, write_jsonl
from infer import Classifier
from infer.manifest import ModelFolderError, ModelManifest
from infer.score import score_file
from infer.tags import (TAG_HEAD_FILE, TagSpec, head_probabilities, output_layer, save_tag_head, split_output_layer,
                        widen_output_layer)
from train.corpus.schema import TACTIC_TAGS
from train.evaluation.tag_metrics import parse_tag_list, select_tag_thresholds, tag_metrics
from train.recipes.tags import joint_loss

NAMES = ("secrecy", "paid_analysis", "off_platform")


@pytest.fixture(scope="module")
def tagged_model(tiny_model, tmp_path_factory):
    """``tiny_model`` plus a random 3-tag head with thresholds."""
    folder = tmp_path_factory.mktemp("tagged_model")
    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)
    torch.manual_seed(1)
    save_tag_head(folder, torch.randn(len(NAMES), 32), torch.randn(len(NAMES)))
    manifest = ModelManifest.load(folder)
    manifest.replace(tags=TagSpec(NAMES, (0.5, 0.3, 0.7))).save(folder)
    return folder


# -- the tag spec and the head ---------------------------------------------------------------------

def test_tag_spec_targets_decisions_and_manifest_round_trip(tmp_path, tiny_model):
    spec = TagSpec(NAMES, (0.5, 0.3, 0.7))
    assert spec.targets([["off_platform"], None, ["secrecy", "paid_analysis"]]).tolist() == [
        [0, 0, 1], [0, 0, 0], [1, 1, 0]]
    with pytest.raises(ValueError, match="wiretap"):
        spec.targets([["wiretap"]])
    assert spec.tags_of(np.array([0.5, 0.29, 0.71])) == ["secrecy", "off_platform"]
    with pytest.raises(ValueError, match="2 thresholds for 3 tags"):
        TagSpec(NAMES, (0.5, 0.5))
    shutil.copytree(tiny_model, tmp_path / "m")
    plain = ModelManifest.load(tmp_path / "m")
    assert "tags" not in plain.to_dict() and plain.tags is None  # no tag head: nothing written
    plain.replace(tags=spec).save(tmp_path / "m")
    assert ModelManifest.load(tmp_path / "m").tags == spec


def test_widened_output_layer_keeps_label_logits_and_splits_back(tiny_model):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    ids = torch.tensor([[101, 2023, 2003, 102]])
    before = model(input_ids=ids).logits
    weight, bias = torch.randn(3, 32), torch.randn(3)
    widen_output_layer(model, 2, weight, bias)
    after = model(input_ids=ids).logits
    assert after.shape == (1, 5)
    torch.testing.assert_close(after[:, :2], before)
    probs = head_probabilities(after, 2)
    torch.testing.assert_close(probs[:, :2], torch.softmax(before, -1))
    torch.testing.assert_close(probs[:, 2:], torch.sigmoid(after[:, 2:]))
    w, b = split_output_layer(model, 2, 3)
    torch.testing.assert_close(w, weight) and torch.testing.assert_close(b, bias)
    assert output_layer(model, 2).out_features == 2
    torch.testing.assert_close(model(input_ids=ids).logits, before)


def test_classifier_with_tag_head_keeps_label_probabilities(tiny_model, tagged_model):
    texts = [r["text"] for r in make_rows(12, seed=5)]
    plain = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")
    tagged = Classifier.from_pretrained(tagged_model, device="cpu", precision="fp32")
    probs, tag_probs = tagged.predict_proba_and_tags(texts)
    np.testing.assert_allclose(probs, plain.predict_proba(texts), atol=1e-6)
    assert plain.predict_proba_and_tags(texts)[1] is None
    assert tag_probs.shape == (12, 3) and ((tag_probs > 0) & (tag_probs < 1)).all()
    preds = tagged.predict(texts)
    for pred, row in zip(preds, tag_probs):
        assert list(pred.tactics) == list(NAMES)
        assert pred.tags == [n for n, p, t in zip(NAMES, row, (0.5, 0.3, 0.7)) if p >= t]
        assert {"tactics", "tags"} <= set(pred.to_dict())
    assert "tactics" not in plain.predict(texts[:1])[0].to_dict()


def test_long_text_shows_a_tag_if_any_window_does(tagged_model):
    clf = Classifier.from_pretrained(tagged_model, device="cpu", precision="fp32")
    clf.manifest = clf.manifest.replace(text=clf.manifest.text.with_long_text("sliding_window"))
    text = " ".join(r["text"] for r in make_rows(8, seed=9))
    windows, _ = clf.encode([text])
    assert len(windows) > 1
    per_window = clf._score_windows(windows)
    _, tag_probs = clf.predict_proba_and_tags([text])
    np.testing.assert_allclose(tag_probs[0], per_window[:, 2:].max(axis=0), atol=1e-6)


def test_missing_or_mismatched_tag_head_is_a_model_folder_error(tagged_model, tmp_path):
    shutil.copytree(tagged_model, tmp_path / "m")
    save_tag_head(tmp_path / "m", torch.randn(2, 32), torch.randn(2))
    with pytest.raises(ModelFolderError, match="3 tags"):
        Classifier.from_pretrained(tmp_path / "m", device="cpu")
    (tmp_path / "m" / TAG_HEAD_FILE).unlink()
    with pytest.raises(ModelFolderError, match="missing"):
        Classifier.from_pretrained(tmp_path / "m", device="cpu")


# -- scoring output ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_scored_files_carry_tactics_and_tags(tagged_model, tmp_path, fmt):
    rows = make_rows(9, seed=4)
    rows[3]["text"] = "   "  # a per-row error keeps its place
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    clf = Classifier.from_pretrained(tagged_model, device="cpu", precision="fp32")
    out = tmp_path / f"out.{fmt}"
    counts = score_file(clf, src, out, chunk_size=4, progress=False)
    assert counts["ok"] == 8 and counts["empty_text"] == 1
    got, tactics, tags = read_scored_tags(out, fmt)
    assert [str(g["id"]) for g in got] == [r["id"] for r in rows]
    assert tactics[3] is None and tags[3] is None
    expected = clf.predict([r["text"] for i, r in enumerate(rows) if i != 3])
    got_ok = [(t, g) for i, (t, g) in enumerate(zip(tactics, tags)) if i != 3]
    for pred, (t, g) in zip(expected, got_ok):
        assert set(t) == set(NAMES) and g == pred.tags
        assert t["secrecy"] == pytest.approx(pred.tactics["secrecy"], abs=1e-6)


def test_resume_with_tag_columns_matches_an_uninterrupted_run(tagged_model, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(10, seed=6))
    clf = Classifier.from_pretrained(tagged_model, device="cpu", precision="fp32")
    whole = tmp_path / "whole.csv"
    score_file(clf, src, whole, chunk_size=3, progress=False)
    cut = tmp_path / "cut.csv"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # killed mid-run: a cut-off record
    counts = score_file(clf, src, cut, chunk_size=3, resume=True, progress=False)
    assert counts["resumed"] > 0 and cut.read_bytes() == data


def test_scores_of_a_model_without_tag_head_have_no_tag_columns(tiny_model, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(3, seed=6))
    clf = Classifier.from_pretrained(tiny_model, device="cpu")
    score_file(clf, src, tmp_path / "o.jsonl", progress=False)
    first = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert list(first) == ["id", "label", "score", "probs", "status", "error"]


# -- metrics and training --------------------------------------------------------------------------

def test_tag_metrics_hand_computed():
    spec = TagSpec(("a", "b", "c"), (0.5, 0.5, 0.5))
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.1], [0.4, 0.8, 0.6], [0.6, 0.7, 0.2], [0.1, 0.1, 0.3]])
    m = tag_metrics(targets, probs, spec)
    a = m["per_tag"]["a"]  # flagged rows 0 and 2; true rows 0 and 1
    assert (a["precision"], a["recall"], a["f1"]) == (0.5, 0.5, 0.5)
    assert m["per_tag"]["b"]["f1"] == 1.0
    assert m["per_tag"]["c"]["recall"] is None and m["per_tag"]["c"]["precision"] == 0.0
    # micro: tp 3 (a0, b1, b2), fp 2 (a2, c1), fn 1 (a1)
    assert m["micro"]["precision"] == pytest.approx(3 / 5) and m["micro"]["recall"] == pytest.approx(3 / 4)
    assert m["macro"]["tags"] == 2 and m["macro"]["f1"] == pytest.approx(0.75)
    assert m["per_tag"]["a"]["auprc"] == pytest.approx(0.8333, abs=1e-3)


def test_tag_thresholds_and_tag_lists():
    targets = np.array([[1], [1], [0], [0]])
    (t,) = select_tag_thresholds(targets, np.array([[0.8], [0.6], [0.4], [0.1]]))
    assert 0.4 < t <= 0.6
    assert parse_tag_list('["secrecy", "flattery"]') == ["secrecy", "flattery"]
    assert parse_tag_list("secrecy|flattery") == ["secrecy", "flattery"] and parse_tag_list("") == []


def test_joint_loss_adds_weighted_tag_cross_entropy():
    logits = torch.tensor([[0.2, -0.1, 1.0, -2.0], [1.5, 0.3, 0.0, 0.5]])
    labels = torch.tensor([[1, 1, 0], [0, 0, 1]])
    ce = torch.nn.functional.cross_entropy(logits[:, :2], labels[:, 0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 2:], labels[:, 1:].float())
    loss = joint_loss(None, 2, 0.5)({"logits": logits}, labels)
    assert loss.item() == pytest.approx((ce + 0.5 * bce).item(), rel=1e-6)
    # The Trainer counts every label entry as an item (2 rows x 3 entries): the same loss.
    assert joint_loss(None, 2, 0.5)({"logits": logits}, labels, num_items_in_batch=torch.tensor(6)).item() == \
        pytest.approx(loss.item(), rel=1e-6)


def test_training_with_tags_writes_a_tag_head_thresholds_and_metrics(tagged_run, tagged_data_files):
    folder = tagged_run.model_dir
    assert (folder / TAG_HEAD_FILE).is_file()
    spec = tagged_run.manifest.tags
    assert spec.names == TACTIC_TAGS and ModelManifest.load(folder).tags == spec
    # Thresholds are max-F1 on validation: recomputed from the saved model, they match.
    clf = Classifier.from_pretrained(folder, device="cpu", precision="fp32")
    val = [json.loads(line) for line in open(tagged_data_files["validation"])]
    _, tag_probs = clf.predict_proba_and_tags([r["text"] for r in val])
    targets = spec.targets([r["tactics"] for r in val])
    np.testing.assert_allclose(spec.thresholds, select_tag_thresholds(targets, tag_probs), atol=1e-4)
    test = tagged_run.metrics["test"]["tags"]
    assert set(test["per_tag"]) == set(TACTIC_TAGS) and test["n"] == 24
    assert {"micro", "macro"} <= set(test) and "f1" in tagged_run.metrics["test"]
    # The saved model is a plain classifier: transformers loads it without the tag head.
    from transformers import AutoModelForSequenceClassification

    assert output_layer(AutoModelForSequenceClassification.from_pretrained(folder), 2).out_features == 2
    recipe = json.loads((folder / "outreach_guard.json").read_text())["provenance"]["recipe"]
    assert recipe["tags"]["enabled"] is True
    assert "Tactic tags (10, `tag_head.safetensors`" in (folder / "README.md").read_text()


def test_training_without_tags_writes_no_tag_head(trained_run):
    assert not (trained_run.model_dir / TAG_HEAD_FILE).exists() and trained_run.manifest.tags is None
    assert "tags" not in trained_run.metrics["test"]


def test_tags_need_the_tags_column(tiny_base, tiny_data_files, tmp_path):
    from conftest import tiny_recipe
    from train.recipes import recipe_from_dict, train

    raw = dict(tiny_recipe(tiny_base, tiny_data_files), tags={"enabled": True})
    with pytest.raises(ValueError, match="no 'tactics' column"):
        train(recipe_from_dict(raw), tmp_path)


def test_evaluation_reports_per_tag_metrics(tagged_run, tagged_data_files, tmp_path):
    from train.evaluation.evaluate import parse_args, run_evaluation

    result = run_evaluation(parse_args(["--model", str(tagged_run.model_dir), "--data", str(tagged_data_files["test"]),
                                        "--output-dir", str(tmp_path), "--no-plots", "--bootstrap-resamples", "10"]))
    assert result["tags"]["per_tag"].keys() == set(TACTIC_TAGS)
    # the same figures training reported for its test split
    assert result["tags"]["micro"] == pytest.approx(tagged_run.metrics["test"]["tags"]["micro"])
    assert "## Tactic tags" in (tmp_path / "report.md").read_text()
