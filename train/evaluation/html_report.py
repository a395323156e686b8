"""A self-contained HTML report for people (``python -m train.evaluation ... --html``).

One file, no external resources: the headline metrics, the plots (embedded PNG), the tactic-tag
metrics when the model has a tag head, and three lists of messages — the highest-scoring, the
false positives and the false negatives — each message with its score, its tags as labels and its
evidence (``infer.explain``) highlighted. Message text appears in this file only because the user
asked for it with ``--html``; ``metrics.json`` and ``report.md`` name examples by id only.

Markup a program can check (the tests parse it): each message is an ``<article class="message">``
with ``data-id``, ``data-score``, ``data-true`` and ``data-predicted``; its text is the concatenated
text of its ``<div class="text">``, and each highlighted sentence is a ``<mark>`` with ``data-start``
and ``data-end`` (character offsets into that text) and ``data-drop``; each section says how many
rows of its kind there are in ``data-total``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from .report import fmt

#: Messages shown per list.
EXAMPLES = 10
SECTIONS = {"top_scoring": "Highest-scoring messages", "false_positives": "False positives (highest scores first)",
            "false_negatives": "False negatives (lowest scores first)"}

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.plots img{max-width:32%;margin:.3%;border:1px solid #eee}
article.message{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:.8em 0}
.meta{font-size:.9em;color:#555;margin-bottom:.3em}.score{font-weight:bold;color:#222}
.text{white-space:pre-wrap}mark{background:#ffd54f;padding:0 .1em;border-radius:2px}
.tag{display:inline-block;background:#e3f2fd;color:#0d47a1;border-radius:10px;padding:0 .6em;margin:0 .2em;font-size:.85em}
.evidence{font-size:.85em;color:#555;margin-top:.3em}.note{color:#555;font-size:.9em}
"""


def select_examples(y: np.ndarray, scores: np.ndarray, pred: np.ndarray, positive: int,
                    limit: int = EXAMPLES) -> dict[str, list[int]]:
    """Row indices per section: the highest scores; false positives, highest score first; false
    negatives, lowest score first (the most confident mistakes)."""
    y, scores, pred = np.asarray(y), np.asarray(scores, dtype=float), np.asarray(pred)
    fp = np.nonzero((pred == positive) & (y != positive))[0]
    fn = np.nonzero((pred != positive) & (y == positive))[0]
    return {"top_scoring": np.argsort(-scores, kind="stable")[:limit].tolist(),
            "false_positives": fp[np.argsort(-scores[fp], kind="stable")][:limit].tolist(),
            "false_negatives": fn[np.argsort(scores[fn], kind="stable")][:limit].tolist()}


def highlighted(text: str, evidence: list[dict]) -> str:
    """``text`` as HTML with each evidence span in a ``<mark>`` (spans must not overlap)."""
    parts, pos = [], 0
    for item in sorted(evidence, key=lambda e: e["start"]):
        start, end = int(item["start"]), int(item["end"])
        if start < pos or end > len(text) or text[start:end] != item["text"]:
            raise ValueError(f"evidence span {start}:{end} does not match its message")
        parts.append(html.escape(text[pos:start]))
        parts.append(f'<mark data-start="{start}" data-end="{end}" data-drop="{item["drop"]:.6g}" '
                     f'title="score drop without it: {item["drop"]:.3f}">{html.escape(text[start:end])}</mark>')
        pos = end
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def _message(example: dict) -> str:
    tags = "".join(f'<span class="tag" data-p="{example["tactics"][t]:.3f}">{html.escape(t)}</span>'
                   for t in example.get("tags") or [])
    evidence = example.get("evidence") or []
    drops = "; ".join(f"{e['drop']:+.3f}" for e in sorted(evidence, key=lambda e: -e["drop"]))
    return (f'<article class="message" data-id="{html.escape(str(example["id"]), quote=True)}" '
            f'data-score="{example["score"]:.6f}" data-true="{html.escape(example["true"])}" '
            f'data-predicted="{html.escape(example["predicted"])}">'
            f'<div class="meta">id <code>{html.escape(str(example["id"]))}</code> · score '
            f'<span class="score">{example["score"]:.3f}</span> · true {html.escape(example["true"])} · predicted '
            f'{html.escape(example["predicted"])} {tags}</div>'
            f'<div class="text">{highlighted(example["text"], evidence)}</div>'
            + (f'<div class="evidence">highlighted: the sentences whose removal lowers the score most '
               f'(drops {drops})</div>' if evidence else "")
            + "</article>")


def _metrics_table(result: dict) -> str:
    m = result["overall"]
    if result["task"] == "binary":
        rows = [("n", "n", result["n"]), ("threshold", "threshold", result["threshold"]),
                ("accuracy", "accuracy", m["accuracy"]), ("precision", "precision", m["precision"]),
                ("recall", "recall", m["recall"]), ("f1", "F1", m["f1"]),
                ("false_positive_rate", "false-positive rate", m["false_positive_rate"]),
                ("auroc", "AUROC", m["auroc"]), ("auprc", "AUPRC", m["auprc"]),
                ("recall_at_1pct_fpr", "recall at 1% FPR", m["recall_at_1pct_fpr"]),
                ("ece", "ECE", m["ece"])]
        c = m["confusion"]
        rows += [(f"confusion_{k}", {"tp": "true positives", "fp": "false positives", "fn": "false negatives",
                                     "tn": "true negatives"}[k], c[k]) for k in ("tp", "fp", "fn", "tn")]
    else:
        rows = [("n", "n", result["n"]), ("accuracy", "accuracy", m["accuracy"]),
                ("macro_f1", "macro F1", m["macro_f1"]), ("macro_auroc", "macro AUROC", m["macro_auroc"])]
    body = "".join(f'<tr data-metric="{key}"><td>{html.escape(name)}</td><td>{fmt(value)}</td></tr>'
                   for key, name, value in rows)
    return f'<table class="metrics"><tr><th>metric</th><th>value</th></tr>{body}</table>'


def _tags_table(tags: dict) -> str:
    rows = "".join(
        f'<tr data-tag="{html.escape(name)}"><td>{html.escape(name)}</td><td>{m["support"]}</td><td>{m["predicted"]}</td>'
        f'<td>{fmt(m["precision"])}</td><td>{fmt(m["recall"])}</td><td>{fmt(m["f1"])}</td><td>{fmt(m["auprc"])}</td></tr>'
        for name, m in tags["per_tag"].items())
    for avg in ("micro", "macro"):
        m = tags[avg]
        rows += (f'<tr data-tag="{avg}"><td><b>{avg} average</b></td><td></td><td></td><td>{fmt(m["precision"])}</td>'
                 f'<td>{fmt(m["recall"])}</td><td>{fmt(m["f1"])}</td><td>{fmt(m["auprc"])}</td></tr>')
    return ('<table class="tags"><tr><th>tag</th><th>rows</th><th>flagged</th><th>precision</th><th>recall</th>'
            f'<th>F1</th><th>AUPRC</th></tr>{rows}</table>')


def render_html(result: dict, examples: dict[str, list[dict]], plots: dict[str, str | Path] | None = None,
                totals: dict[str, int] | None = None) -> str:
    """The report as one HTML string. ``examples``: per section of :data:`SECTIONS`, dicts with
    ``id``, ``text``, ``score``, ``true``, ``predicted``, ``tags``, ``tactics``, ``evidence``;
    ``totals``: how many rows each section's kind has; ``plots``: name -> PNG file, embedded."""
    title = f"outreach-guard evaluation: {result.get('model', '')}"
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">Data: {html.escape(str(result.get("data", "")))}'
             + (f' (split {html.escape(str(result["split"]))})' if result.get("split") else "")
             + ". This report shows message text because it was asked for (<code>--html</code>); "
               "treat it like the data it quotes.</p>",
             '<section id="metrics"><h2>Headline metrics</h2>', _metrics_table(result), "</section>"]
    if plots:
        images = "".join(f'<img alt="{html.escape(name)}" src="data:image/png;base64,'
                         f'{base64.b64encode(Path(path).read_bytes()).decode("ascii")}">'
                         for name, path in plots.items())
        parts.append(f'<section id="plots" class="plots"><h2>Plots</h2>{images}</section>')
    if result.get("tags"):
        parts.append(f'<section id="tags"><h2>Tactic tags</h2>{_tags_table(result["tags"])}</section>')
    for key, heading in SECTIONS.items():
        items = examples.get(key, [])
        total = (totals or {}).get(key, len(items))
        parts.append(f'<section id="{key}" data-total="{total}" data-shown="{len(items)}">'
                     f"<h2>{html.escape(heading)}</h2><p class=\"note\">{len(items)} shown of {total}.</p>"
                     + "".join(_message(e) for e in items) + "</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_examples(clf, texts: list[str], ids: list, y: np.ndarray, probs: np.ndarray, tag_probs, task,
                   limit: int = EXAMPLES) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """The report's example lists with evidence (occlusion on the listed messages only) and
    the total count of each kind."""
    from infer.explain import evidence_items, occlusion_drops

    positive = task.positive_index
    scores = task.scores(probs)
    pred = task.decide_indices(probs)
    chosen = select_examples(y, scores, pred, positive, limit)
    wanted = sorted({i for rows in chosen.values() for i in rows})
    _, _, spans, drops = occlusion_drops(clf, [texts[i] for i in wanted]) if wanted else (None, None, [], [])
    evidence = {i: evidence_items(texts[i], s, d) for i, s, d in zip(wanted, spans, drops)}
    spec = clf.manifest.tags

    def example(i: int) -> dict:
        out = {"id": ids[i], "text": texts[i], "score": float(scores[i]), "true": task.labels[int(y[i])],
               "predicted": task.labels[int(pred[i])], "evidence": evidence[i], "tags": None, "tactics": None}
        if spec is not None and tag_probs is not None:
            out["tactics"] = {n: float(p) for n, p in zip(spec.names, tag_probs[i])}
            out["tags"] = spec.tags_of(tag_probs[i])
        return out

    totals = {"top_scoring": len(y), "false_positives": int(((pred == positive) & (y != positive)).sum()),
              "false_negatives": int(((pred != positive) & (y == positive)).sum())}
    return {key: [example(i) for i in rows] for key, rows in chosen.items()}, totals
