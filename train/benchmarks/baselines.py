"""Baseline systems for the benchmark, each scoring texts like ``infer.Classifier``.

- :class:`KeywordRules`: hand-written patterns for the tactic categories of the taxonomy
  (``TAXONOMY.md``), written from its definitions and never fitted to data. A message is
  flagged when it shows at least two categories: a single cue (WeChat, a fee, a trip)
  appears in ordinary outreach all the time.
- :class:`TfidfLogReg`: word 1-2 gram TF-IDF and logistic regression (the corpus audit's
  features). :class:`TfidfTagLogReg`: the same features, one logistic regression per tactic
  tag (the separate tag model of recipe ``tags.mode: tfidf``).
- :class:`EmbeddingLogReg`: frozen sentence embeddings (mean-pooled token states of a
  transformer encoder, L2-normalised: how all-MiniLM-L6-v2 was trained to be used) and
  logistic regression.

Both logistic regressions pick their regularisation strength by 5-fold cross-validation on
the training rows only. All baselines read text through ``infer.text.normalize_text``, the
models' own normalisation.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from infer.blend import tfidf_preprocess
from infer.text import TextSettings, normalize_text

# Money words (currency symbols have no word boundary, hence the letter look-arounds) and the
# kinds of work that grooming pays for.
_MONEY = (r"(\$|£|€|usd|eur|gbp|dollars?|euros?|pounds|fee|fees|paid|pay|payment|honorari(um|a)|compensat\w+"
          r"|remunerat\w+|stipend|budget)")
_WORK = (r"(reports?|papers?|analys[ie]s|insights?|briefings?|essays?|assessments?|consult\w*|advi[cs]e"
         r"|perspectives?|views)")

#: One entry per tactic category: patterns matched against the normalised, lowercased text.
KEYWORD_RULES: dict[str, list[str]] = {
    "off_platform": [
        r"\b(wechat|whatsapp|telegram|signal|viber|skype|line app|kakaotalk|threema|wickr)\b",
        r"\bpersonal (e-?mail|address|number|phone|account|line)\b",
        r"\b(gmail|protonmail|proton mail|yahoo|hotmail|outlook\.com|mobile number|phone number|cell number)\b",
        r"\b(off linkedin|off this platform|off-platform|(a )?(more )?private channel|outside (of )?linkedin)\b",
    ],
    "secrecy": [
        r"\bconfidential(ly|ity)?\b",
        r"\bbetween (us|ourselves|the two of us)\b",
        r"\bdiscre(et|etly|tion)\b",
        r"\b(don't|do not|no need to|without|needn't) "
        r"(tell|mention|inform|involv|loop in|notify|telling|mentioning|flag)\w*",
        r"\bdelete (this|these|the|our) (message|messages|chat|conversation|thread)s?\b",
        r"\b(off the record|keep (this|it) (quiet|private|to yourself|low[- ]key|between))\b",
        r"\b(your )?(employer|manager|security office|compliance)\b.{0,30}"
        r"\b(need not|needn't|doesn't need|does not need) to know\b",
    ],
    "paid_analysis": [
        rf"(?<![a-z]){_MONEY}(?![a-z]).{{0,60}}\b{_WORK}\b",
        rf"\b{_WORK}\b.{{0,60}}(?<![a-z]){_MONEY}(?![a-z])",
        r"\bwhite papers?\b",
    ],
    "financial_lure": [
        r"\b(cash|crypto|cryptocurrency|bitcoin|btc|usdt|gift cards?|wire transfer|western union)\b",
        r"\b(generous(ly)?|substantial|attractive|handsome(ly)?|well)[- ]"
        r"(fee|compensation|reward|payment|paid|pay|budget|rate)s?\b",
        r"\b(upfront|up-front|in advance|advance payment|retainer)\b",
        r"\b(gifts?|presents?)\b",
    ],
    "travel_offer": [
        r"\b(all|fully)[- ]expenses?[- ]paid\b",
        r"\b(cover|covered|pay for|paid for|reimburse\w*|arrange|book|host|hosted)\b.{0,30}"
        r"\b(flights?|airfare|travel|trip|hotel|accommodation|visa|stay)\b",
        r"\b(business|first)[- ]class\b",
        r"\binvite you to (visit|come to|travel to|fly to)\b",
    ],
    "access_probe": [
        r"\b(clearance|cleared|ts/sci|security vetting|vetted|classified)\b",
        r"\b(colleagues|team members|your unit|your team|your department|your ministry|your agency)\b",
        r"\b(your|the) (current )?(access|position|posting|role) (to|in|at|on)\b",
        r"\binternal (projects?|programmes?|programs?|work|structure|teams?)\b",
    ],
    "info_request": [
        r"\b(non-public|nonpublic|not (yet )?public|unpublished|sensitive|restricted|proprietary)\b",
        r"\binternal (documents?|reports?|plans?|memos?|roadmaps?|discussions?|views?|thinking|assessments?"
        r"|positions?|information)\b",
        r"\b(share|send|provide|bring|pass on|forward)\b.{0,40}"
        r"\b(documents?|files?|minutes|roadmaps?|supplier lists?|org charts?|notes|plans|drafts?)\b",
    ],
    "vague_identity": [
        r"\b(my|our) (client|principal|partner|sponsor)s?\b",
        r"\b(cannot|can't|unable to|not able to|not at liberty to) (disclose|name|share|reveal|say)\b",
        r"\b(a|an) (confidential|unnamed|discreet|private|certain) "
        r"(client|firm|organi[sz]ation|investor|sponsor|party|group)\b",
        r"\b(clients?|partners?|customers?|friends) in (asia|china|the region|the east)\b",
    ],
    "relationship_building": [
        r"\blong[- ]term (cooperation|collaboration|relationship|partnership|friendship)\b",
        r"\b(friendship|friends|mutual(ly)? benefi\w*|mutual trust|win-win)\b",
        r"\bmy (boss|superior|director|manager|senior colleague)s?\b",
        r"\b(favou?rs?|token of (our )?appreciation)\b",
    ],
}

_TEXT = TextSettings()


# The TF-IDF features read text as the blended scorer in ``infer`` does: one function.
_prepare = tfidf_preprocess


class KeywordRules:
    """Score ``1 - 0.5 ** k`` for a message showing ``k`` categories; flagged from ``min_categories``."""

    def __init__(self, labels: list[str], positive: str, min_categories: int = 2, rules=None):
        if positive not in labels or len(labels) != 2:
            raise ValueError(f"keyword rules score a binary task; labels {labels}, positive {positive!r}")
        self.labels, self.positive = list(labels), positive
        self.rules = {name: [re.compile(p) for p in patterns] for name, patterns in (rules or KEYWORD_RULES).items()}
        # Midway between the scores of min_categories - 1 and min_categories matches.
        self.threshold = 1 - 0.75 * 0.5 ** (min_categories - 1)

    def categories(self, text: str) -> list[str]:
        text = _prepare(text)
        return [name for name, patterns in self.rules.items() if any(p.search(text) for p in patterns)]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        score = np.array([1 - 0.5 ** len(self.categories(t)) for t in texts], dtype=float)
        k = self.labels.index(self.positive)
        probs = np.zeros((len(texts), 2))
        probs[:, k], probs[:, 1 - k] = score, 1 - score
        return probs


def _logistic_regression(seed: int, cv: int = 5, Cs=(0.25, 1.0, 4.0, 16.0, 64.0)):
    from sklearn.linear_model import LogisticRegressionCV

    # Newer scikit-learn (with use_legacy_attributes) asks for the L2 penalty and attribute layout explicitly.
    newer = "use_legacy_attributes" in LogisticRegressionCV().get_params()
    explicit = {"l1_ratios": (0.0,), "use_legacy_attributes": False} if newer else {}
    return LogisticRegressionCV(Cs=list(Cs), cv=cv, scoring="neg_log_loss", max_iter=3000,
                                random_state=seed, **explicit)


def _tfidf_vectorizer():
    """Word 1-2 grams of the normalised, lowercased text; the blend's and the tag model's features."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, preprocessor=_prepare)


def _check_classes(y, n_labels: int) -> None:
    missing = sorted(set(range(n_labels)) - set(np.asarray(y).tolist()))
    if missing:
        raise ValueError(f"the training rows lack label index(es) {missing}; every label needs examples")


class TfidfLogReg:
    """Word 1-2 gram TF-IDF and logistic regression (regularisation chosen by 5-fold CV on the
    training rows); also the corpus's shortcut audit (``python -m train.corpus audit``)."""

    def __init__(self, labels: list[str], seed: int = 0):
        from sklearn.pipeline import make_pipeline

        self.labels = list(labels)
        self.pipeline = make_pipeline(_tfidf_vectorizer(), _logistic_regression(seed))

    def fit(self, texts: Sequence[str], y) -> "TfidfLogReg":
        _check_classes(y, len(self.labels))
        self.pipeline.fit(list(texts), np.asarray(y))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.pipeline.predict_proba(list(texts))

    @property
    def regularisation(self) -> float:
        """The C that cross-validation chose."""
        return float(np.ravel(self.pipeline[-1].C_)[0])

    def export(self):
        """The fitted model as :class:`infer.blend.TfidfLogRegScorer` (plain JSON when saved),
        which scores like :meth:`predict_proba` without scikit-learn."""
        from infer.blend import TfidfLogRegScorer

        return TfidfLogRegScorer.from_sklearn(self.pipeline[0], self.pipeline[-1])

    def top_features(self, n: int = 30) -> dict[str, list[tuple[str, float]]]:
        """The ``n`` n-grams with the largest weights toward each class of a binary model
        (``labels[1]`` positive weights, ``labels[0]`` negative), as ``(n-gram, weight)``."""
        if len(self.labels) != 2:
            raise ValueError("top_features explains a binary model")
        names = np.array(self.pipeline[0].get_feature_names_out())
        coef = np.ravel(self.pipeline[-1].coef_)
        order = np.argsort(coef)
        return {self.labels[1]: [(str(names[i]), round(float(coef[i]), 3)) for i in order[::-1][:n]],
                self.labels[0]: [(str(names[i]), round(float(coef[i]), 3)) for i in order[:n]]}


#: The tag model's regularisation grid: ten tags x 3 folds x 3 values keeps fitting within about
#: a minute on 2 cores for the shipped corpus (5 x 5 took three); every tag of corpus v3 chose 16 or 64.
TAG_CS = (4.0, 16.0, 64.0)


class TfidfTagLogReg:
    """Multi-label: :class:`TfidfLogReg`'s features, one binary logistic regression per tag
    (one-vs-rest; regularisation chosen from :data:`TAG_CS` by 3-fold cross-validation per tag
    on the training rows).

    A tag that the training rows never show (or always show) cannot be fitted: it gets a
    constant probability, the training rate smoothed away from 0 and 1 (``(k + 0.5) / (n + 1)``)
    with zero coefficients. A tag with fewer than 5 rows on one side is cross-validated over as
    many folds as it has, up to 3 (plain ``C=1`` below 2).
    """

    def __init__(self, names: Sequence[str], seed: int = 0):
        self.names = list(names)
        self.seed = seed
        self.vectorizer = _tfidf_vectorizer()
        self.models: list = []  # per tag: the fitted logistic regression, or None (constant)
        self.coef_ = self.intercept_ = None

    def fit(self, texts: Sequence[str], targets) -> "TfidfTagLogReg":
        """``targets``: 0/1 ``(len(texts), len(names))`` (``infer.tags.TagSpec.targets``)."""
        from sklearn.linear_model import LogisticRegression

        targets = np.asarray(targets)
        if targets.shape != (len(texts), len(self.names)):
            raise ValueError(f"targets {targets.shape} do not match {len(texts)} texts x {len(self.names)} tags")
        features = self.vectorizer.fit_transform(list(texts))
        self.coef_ = np.zeros((len(self.names), features.shape[1]))
        self.intercept_ = np.zeros(len(self.names))
        self.models = []
        for j in range(len(self.names)):
            y = targets[:, j].astype(int)
            shown = int(y.sum())
            minority = min(shown, len(y) - shown)
            if minority == 0:
                rate = (shown + 0.5) / (len(y) + 1)
                self.models.append(None)
                self.intercept_[j] = np.log(rate / (1 - rate))
                continue
            model = (_logistic_regression(self.seed, cv=min(3, minority), Cs=TAG_CS) if minority >= 2
                     else LogisticRegression(C=1.0, max_iter=3000, random_state=self.seed))
            model.fit(features, y)
            self.models.append(model)
            self.coef_[j], self.intercept_[j] = model.coef_[0], model.intercept_[0]
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), len(names))``: each tag's probability, from scikit-learn's models."""
        features = self.vectorizer.transform(list(texts))
        out = np.empty((len(texts), len(self.names)))
        for j, model in enumerate(self.models):
            out[:, j] = (model.predict_proba(features)[:, 1] if model is not None
                         else 1.0 / (1.0 + np.exp(-self.intercept_[j])))
        return out

    @property
    def regularisation(self) -> list[float | None]:
        """Per tag: the C chosen (None for a constant tag)."""
        return [None if m is None else float(np.ravel(m.C_ if hasattr(m, "C_") else m.C)[0]) for m in self.models]

    def export(self):
        """The fitted models as one multi-label :class:`infer.blend.TfidfLogRegScorer` (plain
        JSON when saved), which scores like :meth:`predict_proba` without scikit-learn."""
        from infer.blend import TfidfLogRegScorer

        if self.coef_ is None:
            raise ValueError("fit the tag model before exporting it")
        return TfidfLogRegScorer.from_sklearn(self.vectorizer, self, multilabel=True)


class SentenceEmbedder:
    """Mean-pooled, L2-normalised token states of a frozen encoder (a local folder)."""

    def __init__(self, model_dir: str, max_length: int = 256, max_tokens: int = 8192, max_batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir, use_safetensors=True).eval()
        self.max_length, self.max_tokens, self.max_batch_size = max_length, max_tokens, max_batch_size
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text. Each distinct text is embedded once per embedder (the encoder is
        frozen), so cross-validation folds re-use the vectors."""
        cache = self._cache
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        if todo:
            cache.update(zip(todo, self._embed(todo)))
        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.stack([cache[t] for t in texts])

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        from infer.batching import length_sorted_batches

        ids = self.tokenizer([normalize_text(t, _TEXT) for t in texts], truncation=True, max_length=self.max_length,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        out = np.zeros((len(ids), self.model.config.hidden_size), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        for batch in length_sorted_batches([len(x) for x in ids], self.max_tokens, self.max_batch_size):
            longest = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = torch.as_tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            with torch.inference_mode():
                states = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
            out[batch] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


class EmbeddingLogReg:
    def __init__(self, labels: list[str], embedder: SentenceEmbedder, seed: int = 0):
        self.labels, self.embedder = list(labels), embedder
        self.logreg = _logistic_regression(seed)

    def fit(self, texts: Sequence[str], y) -> "EmbeddingLogReg":
        _check_classes(y, len(self.labels))
        self.logreg.fit(self.embedder.embed(texts), np.asarray(y))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.logreg.predict_proba(self.embedder.embed(texts))
