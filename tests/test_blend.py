"""The mean-pooling head, temperature scaling and the TF-IDF blend: trained, saved, reloaded by
the runtime, scored the same way as at training time."""

import json

import numpy as np
import pytest
import torch
from conftest import make_rows, tiny_recipe

from infer import Classifier
from infer.blend import BLEND_FILE, TfidfLogRegScorer, apply_temperature, blend_probs
from infer.fastpath import optimize_for_inference
from infer.heads import HEAD_FILE, MeanPoolingClassifier, masked_mean
from infer.manifest import ModelManifest
from train.benchmarks.baselines import TfidfLogReg
from train.evaluation.calibration import fit_temperature
from train.recipes import recipe_from_dict, train

TEXTS = ["Hello, I am a recruiter at Acme; would you join a paid call?", "café ＷeChat — confidential!!",
         "", "   ", "a b c", "Our think tank pays $500 per report, keep it between us.", "report report report"]


def test_exported_tfidf_scores_like_scikit_learn(tmp_path):
    rows = make_rows(80, seed=3)
    model = TfidfLogReg(["benign", "grooming"], seed=0).fit([r["text"] for r in rows],
                                                             [int(r["label"] == "grooming") for r in rows])
    texts = [r["text"] for r in make_rows(30, seed=9)] + TEXTS
    scorer = TfidfLogRegScorer.load(model.export().save(tmp_path / "tfidf.json"))
    np.testing.assert_allclose(scorer.predict_proba(texts), model.predict_proba(texts), rtol=0, atol=1e-12)


def test_only_vectorizers_the_runtime_can_reproduce_are_exported():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, y = ["aa bb", "cc dd", "aa cc", "bb dd"], [0, 1, 0, 1]
    vectorizer = TfidfVectorizer().fit(texts)  # sklearn's own lowercasing, not the project's normaliser
    with pytest.raises(ValueError, match="tfidf_preprocess"):
        TfidfLogRegScorer.from_sklearn(vectorizer, LogisticRegression().fit(vectorizer.transform(texts), y))


def test_temperature_keeps_the_ranking_and_fits_an_overconfident_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    margin = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1.5, 400)  # often wrong...
    logits = np.stack([-margin, margin], 1) * 6.0  # ...and far too sure of itself
    probs = torch.softmax(torch.tensor(logits), -1).numpy()
    t = fit_temperature(probs, y)
    assert t > 3.0
    scaled = apply_temperature(probs, t)
    assert np.allclose(scaled.sum(1), 1.0, atol=1e-6)
    # Same order as the logits (the unscaled probabilities tie at 1.0 where they saturate).
    assert np.array_equal(np.argsort(scaled[:, 1]), np.argsort(margin))
    assert fit_temperature(probs, np.full(400, 1)) == 1.0  # one class: nothing to fit
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs)


def test_blend_weights_and_bounds():
    a, b = np.array([[0.9, 0.1]]), np.array([[0.3, 0.7]])
    np.testing.assert_allclose(blend_probs(a, b, 0.25), [[0.75, 0.25]], atol=1e-7)
    with pytest.raises(ValueError):
        blend_probs(a, b, 1.5)


def test_masked_mean_ignores_padding():
    hidden = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = masked_mean(hidden, mask)
    torch.testing.assert_close(pooled[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(pooled[1], hidden[1].mean(0))


def test_mean_pooling_fast_path_gives_the_plain_models_logits(tiny_base):
    model = MeanPoolingClassifier.from_encoder(str(tiny_base), ["benign", "grooming"]).eval()
    ids = torch.randint(5, 90, (3, 16))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    mask[2, 4:] = 0
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask).logits
        fast, report = optimize_for_inference(model, "cpu", "fp32")
        got = fast(input_ids=ids, attention_mask=mask).logits
    assert report.fused_attention_layers > 0 and not report.first_token_last_layer
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-4)
    assert type(model.encoder.encoder.layer[0].attention.self).__name__ != "FusedSelfAttention"  # copy=True


@pytest.fixture(scope="module")
def blended_run(tiny_base, tiny_data_files, tmp_path_factory):
    raw = tiny_recipe(tiny_base, tiny_data_files)
    raw["model"]["pooling"] = "mean"
    raw["calibration"] = {"temperature": "fit"}
    raw["blend"] = {"tfidf_weight": 0.5}
    return train(recipe_from_dict(raw), tmp_path_factory.mktemp("blended"))


def test_a_blended_mean_pooling_model_trains_saves_and_scores_as_trained(blended_run, tiny_data_files):
    folder = blended_run.model_dir
    manifest = ModelManifest.load(folder)
    data = json.loads((folder / "outreach_guard.json").read_text())
    assert data["format_version"] == 3 and data["head"] == {"pooling": "mean"}
    assert manifest.pooling == "mean" and manifest.blend["weight"] == 0.5 and manifest.temperature > 0
    assert (folder / HEAD_FILE).is_file() and (folder / BLEND_FILE).is_file()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pkl"))
    components = blended_run.metrics["components"]["test"]
    assert set(components) == {"network", "network_at_temperature", "tfidf_logreg"}
    assert components["network"]["auroc"] == pytest.approx(components["network_at_temperature"]["auroc"])

    clf = Classifier.from_pretrained(folder, device="cpu", precision="fp32")
    rows = [json.loads(line) for line in open(tiny_data_files["test"])]
    texts = [r["text"] for r in rows]
    probs = clf.predict_proba(texts)
    network = apply_temperature(clf.model_proba(texts), manifest.temperature)
    tfidf = TfidfLogRegScorer.load(folder / BLEND_FILE).predict_proba(texts)
    np.testing.assert_allclose(probs, 0.5 * network + 0.5 * tfidf, atol=1e-6)
    # The figures training wrote are the runtime's figures on the same rows.
    from train.evaluation.metrics import classification_metrics

    y = np.array([int(r["label"] == "grooming") for r in rows])
    again = classification_metrics(y, probs, manifest.task)
    assert again["auroc"] == pytest.approx(blended_run.metrics["test"]["auroc"], abs=1e-6)
    assert again["f1"] == pytest.approx(blended_run.metrics["test"]["f1"], abs=1e-6)
    # The fast path and the plain model agree on the mean-pooling head too.
    plain = Classifier.from_pretrained(folder, device="cpu", precision="fp32", fast_path=False)
    np.testing.assert_allclose(plain.predict_proba(texts), probs, atol=1e-5)


def test_a_folder_missing_its_blend_file_is_refused(blended_run, tmp_path):
    import shutil

    from infer.manifest import ModelFolderError

    copy = tmp_path / "m"
    shutil.copytree(blended_run.model_dir, copy)
    (copy / BLEND_FILE).unlink()
    with pytest.raises(ModelFolderError, match=BLEND_FILE):
        Classifier.from_pretrained(copy, device="cpu")


def test_recipe_fields_are_validated(tiny_base, tiny_data_files):
    for group, value in (("model", {"pooling": "max"}), ("calibration", {"temperature": "platt"}),
                         ("blend", {"tfidf_weight": 1.0})):
        raw = tiny_recipe(tiny_base, tiny_data_files)
        raw[group] = {**raw.get(group, {}), **value}
        with pytest.raises(ValueError, match=group):
            recipe_from_dict(raw)


def test_evaluation_can_score_the_network_alone_at_any_temperature(blended_run, tiny_data_files, tmp_path):
    from train.evaluation.evaluate import main as evaluate_main

    folder = blended_run.model_dir
    clf = Classifier.from_pretrained(folder, device="cpu", precision="fp32")
    rows = [json.loads(line) for line in open(tiny_data_files["test"])]
    texts = [r["text"] for r in rows]
    for extra, expected in ((["--network-only", "--temperature", "1"], clf.model_proba(texts)),
                            (["--network-only"], apply_temperature(clf.model_proba(texts), clf.manifest.temperature)),
                            ([], clf.predict_proba(texts))):
        out = tmp_path / "_".join(extra or ["full"])
        assert evaluate_main(["--model", str(folder), "--data", str(tiny_data_files["test"]), "--output-dir",
                              str(out), "--no-plots", "--bootstrap-resamples", "0", "--device", "cpu",
                              "--precision", "fp32", *extra]) == 0
        result = json.loads((out / "metrics.json").read_text())
        from sklearn.metrics import roc_auc_score

        from train.evaluation.metrics import expected_calibration_error

        y = np.array([r["label"] == "grooming" for r in rows])
        assert result["overall"]["auroc"] == pytest.approx(roc_auc_score(y, expected[:, 1]))
        # The temperature moves the probabilities, hence the calibration error.
        assert result["overall"]["ece"] == pytest.approx(expected_calibration_error(y, expected[:, 1]), abs=1e-6)
        assert result["scored_with"]["network_only"] == ("--network-only" in extra)


def test_a_tag_head_on_the_mean_pooling_head_with_a_blend(tiny_base, tagged_data_files, tmp_path):
    """The three options of the default recipe together with a tag head: the blend and the
    temperature act on the label probabilities, the tags come from the network."""
    raw = tiny_recipe(tiny_base, tagged_data_files)
    raw.update(model={**raw["model"], "pooling": "mean"}, calibration={"temperature": "fit"},
               blend={"tfidf_weight": 0.5}, tags={"enabled": True, "loss_weight": 1.0})
    run = train(recipe_from_dict(raw), tmp_path / "run")
    manifest = ModelManifest.load(run.model_dir)
    assert manifest.pooling == "mean" and manifest.blend and manifest.tags is not None
    assert "tags" in run.metrics["test"]
    clf = Classifier.from_pretrained(run.model_dir, device="cpu", precision="fp32")
    texts = [json.loads(line)["text"] for line in open(tagged_data_files["test"])]
    probs, tag_probs = clf.predict_proba_and_tags(texts)
    network, network_tags = clf.model_proba_and_tags(texts)
    np.testing.assert_allclose(probs, clf.predict_proba(texts), atol=1e-6)
    np.testing.assert_allclose(probs, blend_probs(apply_temperature(network, manifest.temperature),
                                                  clf.blend.predict_proba(texts), 0.5), atol=1e-6)
    np.testing.assert_allclose(tag_probs, network_tags)
    assert tag_probs.shape == (len(texts), len(manifest.tags.names))
    prediction = clf.predict(texts[:1])[0]
    assert set(prediction.tactics) == set(manifest.tags.names)


def test_lora_recipes_keep_the_models_own_head(tiny_base, tiny_data_files):
    raw = tiny_recipe(tiny_base, tiny_data_files)
    raw.update(method="lora", model={**raw["model"], "pooling": "mean"})
    with pytest.raises(ValueError, match="model.pooling: model"):
        recipe_from_dict(raw)


# Stacking (blend.combine: stack): a logistic regression on the two models' log-odds.

def test_stacked_probabilities_are_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from infer.blend import log_odds, stack_probs
    from train.evaluation.calibration import STACK_C, fit_stack

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300).astype(bool)
    strong = 1 / (1 + np.exp(-(np.where(y, 2.0, -2.0) + rng.normal(0, 1.5, 300))))
    noise = rng.uniform(0, 1, 300)
    strong[:3], noise[:3] = 1.0, 0.0  # saturated float32 probabilities stay finite
    coef, intercept = fit_stack(strong, noise, y)
    assert coef[0] > 0.5 and abs(coef[1]) < 0.3  # it trusts the informative model, not the noise
    features = np.column_stack([log_odds(strong), log_odds(noise)])
    expected = LogisticRegression(C=STACK_C).fit(features, y).predict_proba(features)[:, 1]
    two = lambda p: np.column_stack([1 - p, p])  # noqa: E731
    got = stack_probs(two(strong), two(noise), 1, coef, intercept)
    assert np.isfinite(got).all() and np.allclose(got.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(got[:, 1], expected, atol=1e-5)
    # The positive class may be the first column.
    flipped = stack_probs(two(strong)[:, ::-1], two(noise)[:, ::-1], 0, coef, intercept)
    np.testing.assert_allclose(flipped[:, ::-1], got, atol=1e-7)
    with pytest.raises(ValueError, match="positive and negative"):
        fit_stack(strong, noise, np.ones(300, dtype=bool))
    with pytest.raises(ValueError, match="two-class"):
        stack_probs(np.full((2, 3), 1 / 3), np.full((2, 3), 1 / 3), 1, coef, intercept)


def test_manifest_blend_is_checked_and_a_stacked_folder_needs_format_4(monkeypatch):
    from infer import manifest as manifest_module
    from infer.manifest import TaskSpec

    task = TaskSpec(("benign", "grooming"), "grooming", 0.5)
    stacked = {"kind": "tfidf_logreg", "file": BLEND_FILE, "combine": "logistic", "coef": [1.2, 0.8], "intercept": -0.1}
    m = ModelManifest(task, blend=stacked)
    assert m.to_dict()["format_version"] == 4
    assert ModelManifest(task, blend={"kind": "tfidf_logreg", "file": BLEND_FILE, "weight": 0.5}).to_dict()[
        "format_version"] == 3
    assert ModelManifest.from_dict(m.to_dict()).blend == stacked
    for bad, match in (({**stacked, "coef": [1.0]}, "coef"), ({**stacked, "intercept": float("nan")}, "coef"),
                       ({**stacked, "combine": "max"}, "combine"),
                       ({"kind": "tfidf_logreg", "file": BLEND_FILE}, "weight")):
        with pytest.raises(ValueError, match=match):
            ModelManifest(task, blend=bad)
    with pytest.raises(ValueError, match="binary"):
        ModelManifest(TaskSpec(("a", "b", "c")), blend=stacked)
    # A runtime that reads format 3 refuses the stacked folder instead of averaging it.
    monkeypatch.setattr(manifest_module, "FORMAT_VERSION", 3)
    with pytest.raises(ValueError, match="format_version 4 is newer"):
        ModelManifest.from_dict(m.to_dict())


@pytest.fixture(scope="module")
def stacked_run(tiny_base, tiny_data_files, tmp_path_factory):
    raw = tiny_recipe(tiny_base, tiny_data_files)
    raw["model"]["pooling"] = "mean"
    raw["calibration"] = {"temperature": "fit"}
    raw["blend"] = {"combine": "stack"}
    return train(recipe_from_dict(raw), tmp_path_factory.mktemp("stacked"))


def test_a_stacked_model_fits_on_validation_and_scores_as_trained(stacked_run, tiny_data_files):
    from sklearn.linear_model import LogisticRegression

    from infer.blend import log_odds, stack_probs
    from train.evaluation.calibration import STACK_C
    from train.evaluation.metrics import classification_metrics

    folder = stacked_run.model_dir
    manifest = ModelManifest.load(folder)
    assert json.loads((folder / "outreach_guard.json").read_text())["format_version"] == 4
    blend = manifest.blend
    assert blend["combine"] == "logistic" and blend["coef"] != [1.0, 1.0]  # fitted, not the placeholder
    clf = Classifier.from_pretrained(folder, device="cpu", precision="fp32")
    tfidf = TfidfLogRegScorer.load(folder / BLEND_FILE)

    def parts(split):
        rows = [json.loads(line) for line in open(tiny_data_files[split])]
        texts = [r["text"] for r in rows]
        return (texts, np.array([r["label"] == "grooming" for r in rows]),
                apply_temperature(clf.model_proba(texts), manifest.temperature), tfidf.predict_proba(texts))

    # The saved weights are the logistic regression of validation's labels on the two log-odds.
    texts, y, network, other = parts("validation")
    features = np.column_stack([log_odds(network[:, 1]), log_odds(other[:, 1])])
    reference = LogisticRegression(C=STACK_C).fit(features, y)
    np.testing.assert_allclose(blend["coef"], reference.coef_[0], atol=1e-4)
    assert blend["intercept"] == pytest.approx(float(reference.intercept_[0]), abs=1e-4)
    # The runtime scores test as training did.
    texts, y, network, other = parts("test")
    probs = clf.predict_proba(texts)
    np.testing.assert_allclose(probs, stack_probs(network, other, 1, blend["coef"], blend["intercept"]), atol=1e-6)
    again = classification_metrics(y.astype(int), probs, manifest.task)
    assert again["auroc"] == pytest.approx(stacked_run.metrics["test"]["auroc"], abs=1e-6)
    assert again["f1"] == pytest.approx(stacked_run.metrics["test"]["f1"], abs=1e-6)
    assert "stacked" in (folder / "README.md").read_text()


def test_stacking_is_refused_before_training_where_it_cannot_be_fitted(tiny_base, tiny_data_files, tmp_path):
    raw = tiny_recipe(tiny_base, tiny_data_files)
    with pytest.raises(ValueError, match="tfidf_weight"):
        recipe_from_dict({**raw, "blend": {"combine": "stack", "tfidf_weight": 0.5}})
    with pytest.raises(ValueError, match="combine"):
        recipe_from_dict({**raw, "blend": {"combine": "vote"}})
    no_validation = {**raw, "data": {k: v for k, v in raw["data"].items() if k != "validation_file"},
                     "blend": {"combine": "stack"}}
    with pytest.raises(ValueError, match="stack fits on the validation split, and there is none"):
        train(recipe_from_dict(no_validation), tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()
