"""Shortcut audit: can a bag of words separate the corpus? ``python -m train.corpus audit``.

A thin command over the benchmark's TF-IDF baseline (:class:`train.benchmarks.baselines.TfidfLogReg`,
the same features, regularisation chosen by cross-validation on ``train``): it reports the
baseline's metrics on each held-out split (unseen families in ``test``, unseen writers in
``test_authors``) and lists its strongest n-grams per class, so a reader can see whether a few
keywords (WeChat, paid, clearance...) give the label away. The figures match the benchmark's
``tfidf_logreg`` row on the same split, since they are the same model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from infer.io import InputError, read_table
from infer.options import input_error

from ..evaluation.metrics import binary_metrics
from .schema import HELD_OUT_SPLITS, LABELS


def run_audit(rows: list[dict], positive: str = "grooming", top: int = 30, seed: int = 0) -> dict:
    from ..benchmarks.baselines import TfidfLogReg

    labels = [lab for lab in LABELS if lab != positive] + [positive]
    train = [r for r in rows if r["split"] == "train"]
    model = TfidfLogReg(labels, seed).fit([r["text"] for r in train], [labels.index(r["label"]) for r in train])
    result = {"train_rows": len(train), "C": model.regularisation, "splits": {},
              "top_features": model.top_features(top)}
    for split in HELD_OUT_SPLITS:
        held = [r for r in rows if r["split"] == split]
        if not held:
            continue
        scores = model.predict_proba([r["text"] for r in held])[:, 1]
        y = np.array([r["label"] == positive for r in held], dtype=int)
        hard_negative = np.array([_flag(r.get("hard")) for r in held]) & (y == 0)
        result["splits"][split] = {
            "rows": len(held),
            "metrics": binary_metrics(y, scores, 0.5),
            "hard_negative_fpr": float((scores[hard_negative] >= 0.5).mean()) if hard_negative.any() else None,
        }
    return result


def _flag(value) -> bool:
    """A yes/no cell: JSON true/false, or the text a CSV cell holds ("True", "false", "1", "0")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def render(result: dict, positive: str, command: str) -> str:
    lines = [f"Produced by `{command}`", "",
             f"TF-IDF (word 1-2 grams) + logistic regression (C={result['C']:g}, chosen by 5-fold cross-validation), "
             f"trained on {result['train_rows']} `train` rows; threshold 0.5.", ""]
    splits = list(result["splits"])
    lines += ["| metric | " + " | ".join(f"`{s}` ({result['splits'][s]['rows']} rows)" for s in splits) + " |",
              "|---|" + "---|" * len(splits)]
    for key in ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "recall_at_1pct_fpr"):
        lines.append(f"| {key} | " + " | ".join(f"{result['splits'][s]['metrics'][key]:.3f}" for s in splits) + " |")
    lines.append("| false-positive rate on hard negatives | " + " | ".join(
        "n/a" if result["splits"][s]["hard_negative_fpr"] is None else f"{result['splits'][s]['hard_negative_fpr']:.3f}"
        for s in splits) + " |")
    other = next(k for k in result["top_features"] if k != positive)
    lines += ["", f"| # | strongest `{positive}` features | weight | strongest `{other}` features | weight |",
              "|---|---|---|---|---|"]
    for i, ((pf, pw), (nf, nw)) in enumerate(zip(result["top_features"][positive], result["top_features"][other]), 1):
        lines.append(f"| {i} | {pf} | {pw} | {nf} | {nw} |")
    return "\n".join(lines) + "\n"


def build_parser(prog: str = "python -m train.corpus audit") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/corpus.jsonl", type=Path)
    p.add_argument("--positive-label", default="grooming")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    return p


def main(argv=None, prog: str = "python -m train.corpus audit") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    try:
        rows = read_table(args.data, required=["text", "label", "split"])
    except InputError as err:
        return input_error(err)
    result = run_audit(rows, args.positive_label, args.top)
    text = render(result, args.positive_label, " ".join([prog, *argv]))
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0
