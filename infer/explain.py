"""Evidence for a score: which sentences of a message raise it most (``--explain``).

Leave-one-sentence-out occlusion. A message is cut into sentences (a one-sentence message into
clauses) with character offsets into the text *as given* (not the normalised text); for each
sentence the message is scored again without it, and the sentence's evidence weight is how much
the score drops. Every variant of every message in a block is scored in one call, together with
the messages themselves, so they share the length-sorted batches of normal scoring: a message
of ``k`` sentences costs about ``1 + k`` shorter passes (the measured factor is in the README).

Evidence items: ``{"start", "end", "text", "drop"}`` with ``text == message[start:end]``,
the sentences whose removal lowers the score, largest drop first, at most ``top_k``.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

#: Between sentences: terminal punctuation (with closing quotes/brackets, kept in the sentence)
#: before whitespace, or a line break. A sentence ends at the boundary's first whitespace.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|\s*\n\s*")
#: Between clauses of one sentence: ``;``, ``:`` or ``,`` before whitespace, or a dash between spaces.
_CLAUSE_END = re.compile(r"[;:,]\s+|\s+[-–—]+\s+")
_SPACE = re.compile(r"\s")
#: Sentences occluded per message; a longer message's later sentences are not weighed (the
#: model reads at most ``max_length`` tokens of it anyway).
MAX_UNITS = 32
TOP_K = 3


def _split(text: str, start: int, end: int, boundary: re.Pattern) -> list[tuple[int, int]]:
    spans, pos = [], start
    for m in boundary.finditer(text, start, end):
        spans.append((pos, _SPACE.search(text, m.start(), m.end()).start()))
        pos = m.end()
    spans.append((pos, end))
    out = []
    for s, e in spans:  # trim whitespace so a span is exactly the visible sentence
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of the sentences of ``text`` (of its clauses when it
    is one sentence), in order; ``text[start:end]`` is the sentence without surrounding space."""
    spans = _split(text, 0, len(text), _SENTENCE_END)
    if len(spans) == 1:
        clauses = _split(text, spans[0][0], spans[0][1], _CLAUSE_END)
        if len(clauses) > 1:
            return clauses
    return spans


def remove_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the given spans (a space where each was)."""
    out, pos = [], 0
    for s, e in sorted(spans):
        out.append(text[pos:s])
        pos = max(pos, e)
    out.append(text[pos:])
    return " ".join(part.strip() for part in out if part.strip())


def keep_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """Only the given spans of ``text``, in text order, joined by spaces."""
    return " ".join(text[s:e] for s, e in sorted(spans))


def occlusion_drops(classifier, texts: Sequence[str], max_units: int = MAX_UNITS):
    """Score ``texts`` and every leave-one-sentence-out variant of each in one call.

    Returns ``(probs, tag_probs, spans, drops)``: the classifier's outputs for ``texts``
    (as :meth:`Classifier.predict_proba_and_tags`), and per text its sentence spans and the score
    drop without each (the score: the positive class's probability for binary models, else the
    probability of the class predicted for the whole text).
    """
    texts = list(texts)
    spans = [sentence_spans(t)[:max_units] for t in texts]
    variants = [remove_spans(t, [span]) for t, ts in zip(texts, spans) for span in ts]
    probs, tag_probs = classifier.predict_proba_and_tags(texts + variants)
    n = len(texts)
    task = classifier.task
    if task.binary:
        column = np.full(n, task.positive_index)
    else:
        column = probs[:n].argmax(axis=1)
    drops, pos = [], n
    for i, ts in enumerate(spans):
        full = probs[i, column[i]]
        drops.append(full - probs[pos:pos + len(ts), column[i]])
        pos += len(ts)
    return probs[:n], (tag_probs[:n] if tag_probs is not None else None), spans, drops


def evidence_items(text: str, spans: Sequence[tuple[int, int]], drops: np.ndarray, top_k: int = TOP_K) -> list[dict]:
    """The spans whose removal lowers the score, largest drop first, at most ``top_k``."""
    order = np.argsort(-np.asarray(drops), kind="stable")
    return [{"start": int(spans[i][0]), "end": int(spans[i][1]), "text": text[spans[i][0]:spans[i][1]],
             "drop": float(drops[i])} for i in order[:top_k] if drops[i] > 0]


def predict_with_evidence(classifier, texts: Sequence[str], top_k: int = TOP_K) -> list:
    """:meth:`Classifier.predict` plus ``evidence`` on every prediction (an empty list when no
    sentence raises the score)."""
    import dataclasses

    texts = list(texts)
    probs, tag_probs, spans, drops = occlusion_drops(classifier, texts)
    predictions = classifier.predictions(probs, tag_probs)
    return [dataclasses.replace(pred, evidence=evidence_items(text, ts, d, top_k))
            for pred, text, ts, d in zip(predictions, texts, spans, drops)]
