"""Tactic-tag metrics: per tag precision, recall, F1 and AUPRC, with micro and macro averages.

Targets are 0/1 ``(rows, tags)`` arrays (``infer.tags.TagSpec.targets`` builds them from tag
lists); decisions use the model's per-tag thresholds. A tag no row carries has no recall or
AUPRC: those are None for it, and macro averages are over the tags that have positives.
"""

from __future__ import annotations

import json

import numpy as np

from infer.tags import TagSpec

from .metrics import average_precision, precision_recall_f1
from .threshold import select_threshold


def parse_tag_list(value) -> list[str]:
    """A row's tags as a list: a list as it is; a JSON list or a ``|``/``,``-separated string
    (CSV files); None or empty: no tags."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if not isinstance(value, str):
        raise ValueError(f"a tactics value must be a list or a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return []
    if text.startswith("["):
        parsed = json.loads(text)
        if not isinstance(parsed, list):
            raise ValueError("a tactics value must be a list")
        return [str(v) for v in parsed]
    sep = "|" if "|" in text else ","
    return [part.strip() for part in text.split(sep) if part.strip()]


def select_tag_thresholds(targets: np.ndarray, tag_probs: np.ndarray, rule: str = "max_f1") -> list[float]:
    """One threshold per tag, by ``rule`` on that tag's column (0.5 for a tag without both classes)."""
    targets, tag_probs = np.asarray(targets), np.asarray(tag_probs)
    return [select_threshold(targets[:, j], tag_probs[:, j], rule) for j in range(targets.shape[1])]


def tag_metrics(targets: np.ndarray, tag_probs: np.ndarray, spec: TagSpec) -> dict:
    """``{"per_tag": {tag: {support, predicted, precision, recall, f1, auprc, threshold}},
    "micro": {precision, recall, f1, auprc}, "macro": {...}, "n": rows}``."""
    targets = np.asarray(targets).astype(bool)
    tag_probs = np.asarray(tag_probs, dtype=float)
    if targets.shape != tag_probs.shape or targets.shape[1] != len(spec.names):
        raise ValueError(f"targets {targets.shape} and tag probabilities {tag_probs.shape} do not match "
                         f"{len(spec.names)} tags")
    decided = spec.decide(tag_probs)
    per_tag = {}
    for j, name in enumerate(spec.names):
        truth, pred = targets[:, j], decided[:, j]
        p, r, f = precision_recall_f1(truth, pred)
        has_pos = bool(truth.any())
        per_tag[name] = {"support": int(truth.sum()), "predicted": int(pred.sum()),
                         "precision": p if pred.any() else (None if not has_pos else 0.0),
                         "recall": r if has_pos else None, "f1": f if has_pos else None,
                         "auprc": average_precision(truth, tag_probs[:, j]),
                         "threshold": float(spec.decision_thresholds[j])}
    mp, mr, mf = precision_recall_f1(targets.ravel(), decided.ravel())
    micro = {"precision": mp, "recall": mr, "f1": mf, "auprc": average_precision(targets.ravel(), tag_probs.ravel())}
    scored = [m for m in per_tag.values() if m["support"] > 0]
    macro = {key: (float(np.mean([m[key] or 0.0 for m in scored])) if scored else None)
             for key in ("precision", "recall", "f1", "auprc")}
    macro["tags"] = len(scored)
    return {"n": int(targets.shape[0]), "per_tag": per_tag, "micro": micro, "macro": macro}
