"""A second opinion inside the model folder: word n-gram TF-IDF + logistic regression, averaged
with the transformer.

On messages written outside the team, averaging the fine-tuned transformer with TF-IDF raised
AUROC to 0.98, above either alone (data/README.md, "Model-quality probes"): the two make
different mistakes. Training fits the TF-IDF model on the same training rows
(``train.benchmarks.baselines.TfidfLogReg``) and writes it here as plain JSON (vocabulary,
idf weights, coefficients; no pickle); :class:`TfidfLogRegScorer` recomputes scikit-learn's
``TfidfVectorizer`` + ``LogisticRegression`` probabilities from it with numpy, so scoring needs
neither scikit-learn nor unpickling. ``tests/test_blend.py`` checks the two agree.

The manifest's ``blend`` says how to combine::

    "blend": {"kind": "tfidf_logreg", "file": "tfidf_logreg.json", "weight": 0.5}

``weight`` is the TF-IDF model's share of the averaged probabilities. The transformer's own
probabilities are first sharpened or softened by the manifest's ``temperature`` (fitted on the
validation split), so that an over-confident transformer does not drown the other model.

Binary models may instead stack the two (recipe ``blend.combine: stack``; manifest format 4)::

    "blend": {"kind": "tfidf_logreg", "file": "tfidf_logreg.json", "combine": "logistic",
              "coef": [0.9, 1.3], "intercept": -0.2}

the positive class's probability is ``sigmoid(coef[0] * logit(network) + coef[1] * logit(tfidf)
+ intercept)`` of the two models' positive-class probabilities (the network's at the
temperature), a logistic regression fitted on the validation split (:func:`stack_probs`).

The same scorer, with ``multilabel``, holds a separate tactic-tag model (recipe
``tags.mode: tfidf``, :mod:`infer.tags`): one binary logistic regression per tag on the same
features, a coefficient row and a sigmoid per tag.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .text import TextSettings, normalize_text

#: ``blend.kind`` values this runtime can score.
BLEND_KINDS = ("tfidf_logreg",)
#: ``blend.combine`` values: ``mean`` (weighted average of probabilities, the default when absent)
#: and ``logistic`` (a logistic regression on the two models' log-odds; binary tasks only).
BLEND_COMBINES = ("mean", "logistic")
#: Probabilities are clipped to [eps, 1 - eps] before taking log-odds, so that a saturated
#: float32 probability (0.0 or 1.0) gives a finite feature.
LOGIT_EPS = 1e-6
BLEND_FILE = "tfidf_logreg.json"
FORMAT = "outreach-guard/tfidf-logreg/1"

# What the baseline's analyzer reads: scikit-learn's default token pattern on normalised,
# lowercased text (``tfidf_preprocess``).
_DEFAULT_TEXT = TextSettings()


def tfidf_preprocess(text: str) -> str:
    """The TF-IDF model's view of a message: the default normalisation, lowercased."""
    return normalize_text(text, _DEFAULT_TEXT).lower()


class TfidfLogRegScorer:
    """Binary or multi-class probabilities of an exported TF-IDF + logistic regression model;
    with ``multilabel``, one independent probability per coefficient row (one-vs-rest binary
    logistic regressions: a sigmoid each, rows not summing to one)."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 ngram_range: tuple[int, int] = (1, 2), sublinear_tf: bool = True, norm: str | None = "l2",
                 token_pattern: str = r"(?u)\b\w\w+\b", classes: int = 2, multilabel: bool = False):
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        self.intercept = np.ravel(np.asarray(intercept, dtype=np.float64))
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.sublinear_tf = bool(sublinear_tf)
        if norm not in ("l2", None):
            raise ValueError(f"norm {norm!r} is not supported (l2 or none)")
        self.norm = norm
        self.token_pattern = re.compile(token_pattern)
        self.classes = int(classes)
        self.multilabel = bool(multilabel)
        if len(self.idf) != len(vocabulary) or self.coef.shape[1] != len(vocabulary):
            raise ValueError("vocabulary, idf and coefficients disagree in length")
        if len(self.intercept) != self.coef.shape[0] or (self.multilabel and self.classes != self.coef.shape[0]):
            raise ValueError("coefficients, intercepts and classes disagree in number")

    # -- export / import ----------------------------------------------------------------------

    @classmethod
    def from_sklearn(cls, vectorizer, logreg, multilabel: bool = False) -> "TfidfLogRegScorer":
        """From a fitted ``TfidfVectorizer`` (word analyzer) and ``LogisticRegression(CV)``; with
        ``multilabel``, ``logreg`` holds one binary model per row of its ``coef_`` (``(labels,
        features)``) and ``intercept_`` (``train.benchmarks.baselines.TfidfTagLogReg``)."""
        if (vectorizer.analyzer != "word" or vectorizer.stop_words is not None or not vectorizer.use_idf
                or vectorizer.preprocessor is not tfidf_preprocess or vectorizer.tokenizer is not None):
            raise ValueError("only word n-gram TF-IDF vectorizers reading text through tfidf_preprocess, "
                             "with idf and without stop words, can be exported")
        coef = np.atleast_2d(logreg.coef_)
        return cls({str(k): int(v) for k, v in vectorizer.vocabulary_.items()}, vectorizer.idf_, coef,
                   logreg.intercept_, vectorizer.ngram_range, vectorizer.sublinear_tf, vectorizer.norm,
                   vectorizer.token_pattern, coef.shape[0] if multilabel else len(logreg.classes_), multilabel)

    def to_dict(self) -> dict:
        terms = [None] * len(self.vocabulary)
        for term, index in self.vocabulary.items():
            terms[index] = term
        return {"format": FORMAT, "ngram_range": list(self.ngram_range), "sublinear_tf": self.sublinear_tf,
                "norm": self.norm, "token_pattern": self.token_pattern.pattern, "classes": self.classes,
                "multilabel": self.multilabel, "terms": terms, "idf": self.idf.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist()}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TfidfLogRegScorer":
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not an exported TF-IDF model (format {data.get('format')!r})")
        vocabulary = {term: i for i, term in enumerate(data["terms"])}
        return cls(vocabulary, np.array(data["idf"]), np.array(data["coef"]), np.array(data["intercept"]),
                   tuple(data["ngram_range"]), data["sublinear_tf"], data["norm"], data["token_pattern"],
                   data["classes"], data.get("multilabel", False))

    # -- scoring --------------------------------------------------------------------------

    def _features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Indices and TF-IDF values of one text's known n-grams (what ``transform`` computes)."""
        tokens = self.token_pattern.findall(tfidf_preprocess(text))
        counts: Counter = Counter()
        low, high = self.ngram_range
        for n in range(low, high + 1):
            for i in range(len(tokens) - n + 1):
                index = self.vocabulary.get(" ".join(tokens[i:i + n]))
                if index is not None:
                    counts[index] += 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        index = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear_tf:
            tf = 1.0 + np.log(tf)
        values = tf * self.idf[index]
        if self.norm == "l2":
            values = values / math.sqrt(float(values @ values))
        return index, values

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.coef.shape[0]))
        for row, text in enumerate(texts):
            index, values = self._features(text)
            out[row] = self.coef[:, index] @ values + self.intercept
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), classes)``: class probabilities, or with ``multilabel`` a sigmoid per label."""
        scores = self.decision_function(texts)
        if self.multilabel:
            return 1.0 / (1.0 + np.exp(-scores))
        if self.classes == 2:
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)``: the probabilities the logits divided by
    ``temperature`` would give (temperature > 1 softens, < 1 sharpens)."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-30, 1.0)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def blend_probs(model_probs: np.ndarray, other_probs: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * model_probs + weight * other_probs``, rows still summing to one."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight {weight} is outside [0, 1]")
    return ((1.0 - weight) * np.asarray(model_probs, dtype=np.float64)
            + weight * np.asarray(other_probs, dtype=np.float64)).astype(np.float32)


def log_odds(p) -> np.ndarray:
    """``log(p / (1 - p))`` in float64, ``p`` clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]``."""
    p = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def stack_probs(model_probs: np.ndarray, other_probs: np.ndarray, positive_index: int,
                coef: Sequence[float], intercept: float) -> np.ndarray:
    """Two-class probabilities from a logistic regression on the two models' positive-class
    log-odds: ``sigmoid(coef[0] * logit(model) + coef[1] * logit(other) + intercept)`` for the
    class at ``positive_index``, one minus it for the other."""
    model_probs, other_probs = np.asarray(model_probs), np.asarray(other_probs)
    if model_probs.ndim != 2 or model_probs.shape[1] != 2 or other_probs.shape != model_probs.shape:
        raise ValueError(f"stacking combines two-class probabilities, got shapes {model_probs.shape} and "
                         f"{other_probs.shape}")
    a, b = (float(c) for c in coef)
    z = a * log_odds(model_probs[:, positive_index]) + b * log_odds(other_probs[:, positive_index]) + float(intercept)
    positive = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow
    out = np.empty(model_probs.shape, dtype=np.float64)
    out[:, positive_index] = positive
    out[:, 1 - positive_index] = 1.0 - positive
    return out.astype(np.float32)


def check_blend(blend: dict, labels: Sequence[str], positive_label: str | None) -> None:
    """Raise ``ValueError`` unless ``blend`` (a manifest's) names a known model and a usable way
    to combine it: a weight in [0, 1] for ``mean``; two finite coefficients and an intercept for
    ``logistic``, which needs a binary task with a positive label."""
    if not isinstance(blend, dict) or blend.get("kind") not in BLEND_KINDS:
        raise ValueError(f"blend: kind must be one of {', '.join(BLEND_KINDS)}, got {blend!r}")
    if not blend.get("file"):
        raise ValueError(f"blend needs a file, got {blend!r}")
    combine = blend.get("combine", "mean")
    if combine not in BLEND_COMBINES:
        raise ValueError(f"blend: combine must be one of {', '.join(BLEND_COMBINES)}, got {combine!r}")
    if combine == "mean":
        try:
            ok = 0.0 <= float(blend.get("weight", -1)) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"blend needs a weight in [0, 1], got {blend!r}")
        return
    if len(labels) != 2 or positive_label is None:
        raise ValueError("blend: combine logistic needs a binary task with a positive label")
    try:
        values = [float(c) for c in blend.get("coef", ())] + [float(blend["intercept"])]
    except (KeyError, TypeError, ValueError):
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"blend: combine logistic needs coef (two numbers) and intercept, got {blend!r}")


def combine_probs(model_probs: np.ndarray, other_probs: np.ndarray, blend: dict,
                  positive_index: int | None = None) -> np.ndarray:
    """The manifest's ``blend`` applied to the (calibrated) network's and the other model's
    class probabilities: :func:`blend_probs` for ``combine: mean``, :func:`stack_probs` for
    ``combine: logistic`` (which needs ``positive_index``)."""
    if blend.get("combine", "mean") == "logistic":
        if positive_index is None:
            raise ValueError("blend: combine logistic needs the positive class's index")
        return stack_probs(model_probs, other_probs, positive_index, blend["coef"], blend["intercept"])
    return blend_probs(model_probs, other_probs, float(blend["weight"]))
