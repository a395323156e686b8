"""The separate tag model (recipe ``tags.mode: tfidf``): word 1-2 gram TF-IDF and one logistic
regression per tag, exported from scikit-learn as plain JSON (``tag_tfidf.json``), scored by
``infer`` with numpy through the same Classifier methods and output columns as a joint tag head."""

import json
import shutil

import numpy as np
import pytest

from conftest import make_rows, read_scored_tags, tag_rows, tiny_recipe, write_jsonl
from infer import Classifier
from infer.blend import TfidfLogRegScorer
from infer.manifest import ModelFolderError, ModelManifest
from infer.score import score_file
from infer.tags import TAG_HEAD_FILE, TAG_TFIDF_FILE, TagSpec
from train.benchmarks.baselines import TfidfTagLogReg
from train.evaluation.tag_metrics import select_tag_thresholds
from train.recipes import recipe_from_dict, train

TEXTS = ["Hello, let's move to Telegram, no need to mention it.", "café ＷeChat — confidential!!", "", "   ",
         "a b c", "Our think tank pays a fee per report, keep it between us.", "trip trip trip travel"]


# Four tags keep the per-tag cross-validated fits quick; no synthetic row shows vague_identity.
NAMES = ("off_platform", "paid_analysis", "secrecy", "vague_identity")
# The tags of the trained model (tags.names).
TRAINED = ("off_platform", "paid_analysis", "secrecy")


def _only(rows: list[dict], names) -> list[dict]:
    """Synthetic rows with their ``tactics`` (``conftest.tag_rows``) kept to ``names``."""
    return [dict(r, tactics=[t for t in r["tactics"] if t in names]) for r in tag_rows(rows)]


def _tag_data(n: int, seed: int):
    rows = _only(make_rows(n, seed=seed), NAMES)
    return [r["text"] for r in rows], TagSpec(NAMES).targets([r["tactics"] for r in rows])


@pytest.fixture(scope="module")
def tag_model():
    """A TF-IDF tag model fitted on synthetic tagged rows (one tag never shown)."""
    texts, targets = _tag_data(60, seed=3)
    return TfidfTagLogReg(NAMES, seed=0).fit(texts, targets)


@pytest.fixture(scope="module")
def tfidf_tagged_model(tiny_model, tag_model, tmp_path_factory):
    """``tiny_model`` plus ``tag_model`` as its separate tag model, with thresholds."""
    folder = tmp_path_factory.mktemp("tfidf_tagged_model")
    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)
    tag_model.export().save(folder / TAG_TFIDF_FILE)
    ModelManifest.load(folder).replace(tags=TagSpec(NAMES, (0.3, 0.5, 0.5, 0.5), kind="tfidf")).save(folder)
    return folder


@pytest.fixture(scope="module")
def tfidf_data_files(tiny_data_files, tmp_path_factory):
    """``tiny_data_files``' rows, in their order, with a ``tactics`` column (``TRAINED`` tags)."""
    folder = tmp_path_factory.mktemp("tfidf_data")
    return {split: write_jsonl(folder / f"{split}.jsonl", _only([json.loads(line) for line in open(path)], TRAINED))
            for split, path in tiny_data_files.items()}


@pytest.fixture(scope="module")
def tfidf_run(tiny_base, tfidf_data_files, tmp_path_factory):
    """``trained_run``'s recipe and rows plus ``tags: {enabled: true, mode: tfidf}``."""
    raw = dict(tiny_recipe(tiny_base, tfidf_data_files), tags={"enabled": True, "mode": "tfidf", "names": list(TRAINED)})
    return train(recipe_from_dict(raw), tmp_path_factory.mktemp("tfidf_run"),
                 command="python -m train --config tiny_tags_tfidf.yaml")


# -- the exported model --------------------------------------------------------------------------

def test_exported_tag_model_scores_like_scikit_learn(tag_model, tmp_path):
    saved = tag_model.export().save(tmp_path / TAG_TFIDF_FILE)
    data = json.loads(saved.read_text())  # plain JSON: one coefficient row per tag
    assert data["multilabel"] is True and len(data["coef"]) == len(data["intercept"]) == len(NAMES)
    scorer = TfidfLogRegScorer.load(saved)
    texts = [r["text"] for r in make_rows(30, seed=9)] + TEXTS
    expected = tag_model.predict_proba(texts)
    assert expected.shape == (len(texts), len(NAMES))
    np.testing.assert_allclose(scorer.predict_proba(texts), expected, rtol=0, atol=1e-10)
    # Each fitted tag's column is its own scikit-learn model's positive-class probability.
    features = tag_model.vectorizer.transform(texts)
    j = NAMES.index("off_platform")
    np.testing.assert_allclose(scorer.predict_proba(texts)[:, j], tag_model.models[j].predict_proba(features)[:, 1],
                               rtol=0, atol=1e-10)


def test_tag_model_learns_its_tags_and_keeps_unseen_ones_constant(tag_model):
    texts, targets = _tag_data(40, seed=11)
    probs = tag_model.export().predict_proba(texts)
    j = NAMES.index("off_platform")  # the rows with "Telegram" in them
    shown = targets[:, j] == 1
    assert shown.any() and (~shown).any()
    assert probs[shown, j].min() > probs[~shown, j].max()
    # vague_identity: no synthetic row shows it, so no model: the smoothed training rate everywhere.
    k = NAMES.index("vague_identity")
    assert tag_model.models[k] is None and tag_model.regularisation[k] is None
    np.testing.assert_allclose(probs[:, k], 0.5 / 61)


def test_a_binary_blend_model_still_loads_as_one(tmp_path):
    from train.benchmarks.baselines import TfidfLogReg

    rows = make_rows(40, seed=3)
    model = TfidfLogReg(["benign", "grooming"]).fit([r["text"] for r in rows],
                                                    [int(r["label"] == "grooming") for r in rows])
    scorer = TfidfLogRegScorer.load(model.export().save(tmp_path / "b.json"))
    assert not scorer.multilabel
    np.testing.assert_allclose(scorer.predict_proba(TEXTS).sum(axis=1), 1.0)


# -- the runtime -----------------------------------------------------------------------------------

def test_classifier_reads_tags_from_the_separate_model(tiny_model, tfidf_tagged_model, tag_model):
    texts = [r["text"] for r in make_rows(12, seed=5)] + TEXTS[:2]
    plain = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")
    clf = Classifier.from_pretrained(tfidf_tagged_model, device="cpu", precision="fp32")
    assert clf.manifest.tags.kind == "tfidf" and not (tfidf_tagged_model / TAG_HEAD_FILE).exists()
    probs, tag_probs = clf.predict_proba_and_tags(texts)
    np.testing.assert_allclose(probs, plain.predict_proba(texts), atol=1e-6)  # labels: the network alone
    np.testing.assert_allclose(tag_probs, tag_model.predict_proba(texts), atol=1e-6)
    assert clf.model_proba_and_tags(texts)[1] is not None and clf.model_proba(texts).shape == (len(texts), 2)
    spec = clf.manifest.tags
    for pred, row in zip(clf.predict(texts), tag_probs):
        assert list(pred.tactics) == list(NAMES)
        assert pred.tags == [n for n, p, t in zip(NAMES, row, spec.thresholds) if p >= t]
    assert "off_platform" in clf.predict([TEXTS[0]])[0].tags
    assert clf.predict_proba_and_tags([])[1].shape == (0, len(NAMES))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_scored_files_carry_tactics_and_tags_from_the_separate_model(tfidf_tagged_model, tmp_path, fmt):
    rows = make_rows(9, seed=4)
    rows[3]["text"] = "   "  # a per-row error keeps its place
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    clf = Classifier.from_pretrained(tfidf_tagged_model, device="cpu", precision="fp32")
    out = tmp_path / f"out.{fmt}"
    counts = score_file(clf, src, out, chunk_size=4, progress=False)
    assert counts["ok"] == 8 and counts["empty_text"] == 1
    got, tactics, tags = read_scored_tags(out, fmt)
    assert [str(g["id"]) for g in got] == [r["id"] for r in rows]
    assert [g["status"] for g in got] == ["ok"] * 3 + ["empty_text"] + ["ok"] * 5
    assert tactics[3] is None and tags[3] is None
    expected = clf.predict([r["text"] for i, r in enumerate(rows) if i != 3])
    for pred, t, g in zip(expected, tactics[:3] + tactics[4:], tags[:3] + tags[4:]):
        assert set(t) == set(NAMES) and g == pred.tags
        assert t["paid_analysis"] == pytest.approx(pred.tactics["paid_analysis"], abs=1e-6)


def test_explain_and_resume_with_the_separate_model(tfidf_tagged_model, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(10, seed=6))
    clf = Classifier.from_pretrained(tfidf_tagged_model, device="cpu", precision="fp32")
    explained = tmp_path / "explained.jsonl"
    score_file(clf, src, explained, chunk_size=4, progress=False, explain=True)
    first = json.loads(explained.read_text().splitlines()[0])
    assert {"tactics", "tags", "evidence"} <= set(first)
    whole = tmp_path / "whole.csv"
    score_file(clf, src, whole, chunk_size=3, progress=False)
    cut = tmp_path / "cut.csv"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # killed mid-run: a cut-off record
    counts = score_file(clf, src, cut, chunk_size=3, resume=True, progress=False)
    assert counts["resumed"] > 0 and cut.read_bytes() == data


def test_old_manifests_without_a_kind_read_as_a_joint_head(tmp_path, tiny_model):
    shutil.copytree(tiny_model, tmp_path / "m")
    path = tmp_path / "m" / "outreach_guard.json"
    data = json.loads(path.read_text())
    data.update(format_version=3, tags={"names": ["secrecy", "flattery"], "thresholds": [0.5, 0.4]})
    path.write_text(json.dumps(data))
    spec = ModelManifest.load(tmp_path / "m").tags
    assert spec.kind == "joint" and spec.in_network and spec.thresholds == (0.5, 0.4)
    assert spec.to_dict()["kind"] == "joint"  # written from now on
    with pytest.raises(ModelFolderError, match=TAG_HEAD_FILE):  # a joint folder needs its head
        Classifier.from_pretrained(tmp_path / "m", device="cpu")


def test_a_bad_or_missing_tag_model_is_a_model_folder_error(tfidf_tagged_model, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tfidf_tagged_model, folder)
    manifest = ModelManifest.load(folder)
    manifest.replace(tags=TagSpec(NAMES[:3], kind="tfidf")).save(folder)
    with pytest.raises(ModelFolderError, match="for the manifest's 3 tags"):
        Classifier.from_pretrained(folder, device="cpu")
    manifest.save(folder)
    (folder / TAG_TFIDF_FILE).write_text("{not json")
    with pytest.raises(ModelFolderError, match=f"cannot load {TAG_TFIDF_FILE}"):
        Classifier.from_pretrained(folder, device="cpu")
    (folder / TAG_TFIDF_FILE).unlink()
    with pytest.raises(ModelFolderError, match=f"{TAG_TFIDF_FILE} is missing"):
        Classifier.from_pretrained(folder, device="cpu")
    data = json.loads((folder / "outreach_guard.json").read_text())
    data["tags"]["kind"] = "tfidf_logreg"
    (folder / "outreach_guard.json").write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="kind must be one of joint, tfidf"):
        Classifier.from_pretrained(folder, device="cpu")


# -- training --------------------------------------------------------------------------------------

def test_unknown_tags_mode_is_a_clear_config_error(tiny_base, tfidf_data_files):
    raw = dict(tiny_recipe(tiny_base, tfidf_data_files), tags={"enabled": True, "mode": "separate"})
    with pytest.raises(ValueError, match="tags.mode must be one of joint, tfidf, got 'separate'"):
        recipe_from_dict(raw)
    assert recipe_from_dict(dict(raw, tags={"enabled": True})).tags.mode == "joint"  # the default


def test_training_with_a_separate_tag_model(tfidf_run, tfidf_data_files):
    folder = tfidf_run.model_dir
    assert (folder / TAG_TFIDF_FILE).is_file() and not (folder / TAG_HEAD_FILE).exists()
    spec = ModelManifest.load(folder).tags
    assert spec == tfidf_run.manifest.tags and spec.kind == "tfidf" and spec.names == TRAINED
    assert json.loads((folder / "outreach_guard.json").read_text())["tags"]["kind"] == "tfidf"
    # The network has no tag head: transformers loads it as a plain two-label classifier.
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(folder).classifier.out_features == 2
    # The saved tag model is scikit-learn's, fitted on the training rows' tags.
    rows = {split: [json.loads(line) for line in open(path)] for split, path in tfidf_data_files.items()}
    reference = TfidfTagLogReg(TRAINED, seed=7).fit([r["text"] for r in rows["train"]],
                                                    spec.targets([r["tactics"] for r in rows["train"]]))
    texts = [r["text"] for r in rows["validation"]]
    clf = Classifier.from_pretrained(folder, device="cpu", precision="fp32")
    _, tag_probs = clf.predict_proba_and_tags(texts)
    np.testing.assert_allclose(TfidfLogRegScorer.load(folder / TAG_TFIDF_FILE).predict_proba(texts),
                               reference.predict_proba(texts), rtol=0, atol=1e-10)
    np.testing.assert_allclose(tag_probs, reference.predict_proba(texts), atol=1e-6)
    # Thresholds: max-F1 on validation, as for a joint head.
    targets = spec.targets([r["tactics"] for r in rows["validation"]])
    np.testing.assert_allclose(spec.thresholds, select_tag_thresholds(targets, tag_probs), atol=1e-4)
    for split in ("validation", "test"):
        tags = tfidf_run.metrics[split]["tags"]
        assert set(tags["per_tag"]) == set(TRAINED) and {"micro", "macro"} <= set(tags)
        assert {"precision", "recall", "f1", "auprc"} <= set(tags["per_tag"]["off_platform"])
    assert tfidf_run.metrics["test"]["tags"]["n"] == 16 and "f1" in tfidf_run.metrics["test"]
    assert tfidf_run.metrics["test"]["tags"]["per_tag"]["off_platform"]["f1"] > 0.5
    assert json.loads((folder / "metrics.json").read_text())["test"]["tags"] == tfidf_run.metrics["test"]["tags"]
    assert f"Tactic tags (3, `{TAG_TFIDF_FILE}`" in (folder / "README.md").read_text()
    recipe = json.loads((folder / "outreach_guard.json").read_text())["provenance"]["recipe"]
    assert recipe["tags"]["mode"] == "tfidf"


def test_the_network_of_a_tfidf_run_is_the_run_without_tags(tfidf_run, trained_run, tiny_data_files):
    """No tag loss and no tag head: the same recipe and rows without tags give the same network."""
    texts = [json.loads(line)["text"] for line in open(tiny_data_files["test"])]
    with_tags = Classifier.from_pretrained(tfidf_run.model_dir, device="cpu", precision="fp32")
    without = Classifier.from_pretrained(trained_run.model_dir, device="cpu", precision="fp32")
    np.testing.assert_allclose(with_tags.predict_proba(texts), without.predict_proba(texts), atol=1e-6)
    assert tfidf_run.manifest.threshold == pytest.approx(trained_run.manifest.threshold)
    for split in ("validation", "test"):
        assert tfidf_run.metrics[split]["auroc"] == pytest.approx(trained_run.metrics[split]["auroc"])


def test_evaluation_reports_the_separate_models_tags(tfidf_run, tfidf_data_files, tmp_path):
    from train.evaluation.evaluate import parse_args, run_evaluation

    result = run_evaluation(parse_args(["--model", str(tfidf_run.model_dir), "--data", str(tfidf_data_files["test"]),
                                        "--output-dir", str(tmp_path), "--no-plots", "--bootstrap-resamples", "10"]))
    assert result["tags"]["micro"] == pytest.approx(tfidf_run.metrics["test"]["tags"]["micro"])
    assert "## Tactic tags" in (tmp_path / "report.md").read_text()
