"""The benchmark's baseline systems: keyword rules and TF-IDF + logistic regression."""

import numpy as np
import pytest

from conftest import LABELS, make_rows
from train.benchmarks.baselines import KeywordRules, TfidfLogReg

#: The regularisation strengths the baselines' cross-validation chooses from.
CV_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)


def test_keyword_rules_flag_two_tactic_categories_not_a_single_cue():
    rules = KeywordRules(LABELS, "grooming")
    two = "Let's continue on WhatsApp, and please keep this between us."
    one = "Happy to continue the conversation on WhatsApp tomorrow."
    none = "Thanks for the update, see you at the meeting."
    assert rules.categories(two) == ["off_platform", "secrecy"]
    assert rules.categories(one) == ["off_platform"]
    assert rules.categories(none) == []
    probs = rules.predict_proba([two, one, none])
    np.testing.assert_allclose(probs.sum(1), 1.0)
    # score 1 - 0.5 ** k for k categories; flagged from two categories on
    np.testing.assert_allclose(probs[:, 1], [0.75, 0.5, 0.0])
    assert (probs[:, 1] >= rules.threshold).tolist() == [True, False, False]
    # The normaliser runs first: zero-width characters and lookalike letters do not hide a cue.
    assert rules.categories("Move to Whats\u200bApp and d\u0435lete this chat.") == ["off_platform", "secrecy"]


def test_keyword_rules_positive_column_follows_the_label_order():
    rules = KeywordRules(["grooming", "benign"], "grooming")
    probs = rules.predict_proba(["Let's continue on WhatsApp, and please keep this between us."])
    np.testing.assert_allclose(probs, [[0.75, 0.25]])
    with pytest.raises(ValueError, match="binary task"):
        KeywordRules(["a", "b", "c"], "a")
    with pytest.raises(ValueError, match="binary task"):
        KeywordRules(LABELS, "spam")


@pytest.fixture(scope="module")
def fitted():
    rows = make_rows(60, seed=3)
    model = TfidfLogReg(LABELS, seed=0).fit([r["text"] for r in rows], [LABELS.index(r["label"]) for r in rows])
    return model


def test_tfidf_logreg_probabilities(fitted):
    held_out = make_rows(20, seed=4)
    probs = fitted.predict_proba([r["text"] for r in held_out])
    assert probs.shape == (20, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    # The synthetic classes use different wording: the bag of words separates them.
    y = np.array([r["label"] == "grooming" for r in held_out])
    assert ((probs[:, 1] >= 0.5) == y).all()
    assert fitted.regularisation in CV_GRID


def test_tfidf_logreg_top_features(fitted):
    top = fitted.top_features(7)
    assert list(top) == ["grooming", "benign"]
    names = set(fitted.pipeline[0].get_feature_names_out())
    for label, sign in (("grooming", 1), ("benign", -1)):
        features = top[label]
        assert len(features) == 7 and all(name in names for name, _ in features)
        weights = [w for _, w in features]
        assert all(sign * w > 0 for w in weights), (label, weights)
        assert weights == sorted(weights, reverse=sign > 0)  # strongest first
    assert {name for name, _ in top["grooming"]}.isdisjoint(name for name, _ in top["benign"])
    # Unigrams and bigrams both count as features.
    assert all(1 <= len(name.split()) <= 2 for label in top for name, _ in top[label])


def test_tfidf_logreg_needs_every_label_and_a_binary_model_to_explain():
    rows = [r for r in make_rows(20) if r["label"] == "benign"]
    with pytest.raises(ValueError, match=r"lack label index\(es\) \[1\]"):
        TfidfLogReg(LABELS).fit([r["text"] for r in rows], [0] * len(rows))
    with pytest.raises(ValueError, match="binary"):
        TfidfLogReg(["a", "b", "c"]).top_features()
