"""Shortcut audit: can a bag of words separate the corpus? ``python -m train.audit``.

Trains TF-IDF (word 1-2 grams) + logistic regression on the ``train`` split, reports its
metrics on ``test`` (families unseen in training), and lists the strongest features per class,
so a reader can see whether a few keywords (WeChat, paid, clearance...) give the label away.
The text goes through the same normalisation as the models (``infer.text``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from infer.text import normalize_text

from .metrics import binary_metrics


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def run_audit(rows: list[dict], positive: str = "grooming", top: int = 30, seed: int = 0) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, preprocessor=lambda t: normalize_text(t).lower())
    x_train = vec.fit_transform([r["text"] for r in train])
    y_train = np.array([r["label"] == positive for r in train], dtype=int)
    clf = LogisticRegression(C=4.0, max_iter=2000, random_state=seed).fit(x_train, y_train)
    scores = clf.predict_proba(vec.transform([r["text"] for r in test]))[:, 1]
    y_test = np.array([r["label"] == positive for r in test], dtype=int)
    names = np.array(vec.get_feature_names_out())
    order = np.argsort(clf.coef_[0])
    hard = np.array([r["hard"] for r in test])
    neg = y_test == 0
    return {
        "train_rows": len(train),
        "test_rows": len(test),
        "test": binary_metrics(y_test, scores, 0.5),
        "test_hard_negative_fpr": float((scores[neg & hard] >= 0.5).mean()) if (neg & hard).any() else None,
        "top_positive": [(str(names[i]), round(float(clf.coef_[0][i]), 3)) for i in order[::-1][:top]],
        "top_negative": [(str(names[i]), round(float(clf.coef_[0][i]), 3)) for i in order[:top]],
    }


def render(result: dict, positive: str, command: str) -> str:
    m = result["test"]
    lines = [
        f"Produced by `{command}`",
        "",
        f"TF-IDF (word 1-2 grams) + logistic regression, trained on {result['train_rows']} `train` rows, "
        f"tested on {result['test_rows']} `test` rows from unseen families.",
        "",
        "| metric | value |", "|---|---|",
    ]
    for key in ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "recall_at_1pct_fpr"):
        lines.append(f"| {key} | {m[key]:.3f} |")
    if result["test_hard_negative_fpr"] is not None:
        lines.append(f"| false-positive rate on hard negatives | {result['test_hard_negative_fpr']:.3f} |")
    lines += ["", f"| # | strongest `{positive}` features | weight | strongest other-class features | weight |",
              "|---|---|---|---|---|"]
    for i, ((pf, pw), (nf, nw)) in enumerate(zip(result["top_positive"], result["top_negative"]), 1):
        lines.append(f"| {i} | {pf} | {pw} | {nf} | {nw} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.audit", description=__doc__)
    p.add_argument("--data", default="data/corpus.jsonl", type=Path)
    p.add_argument("--positive-label", default="grooming")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    args = p.parse_args(argv)
    command = "python -m train.audit " + " ".join(argv if argv is not None else sys.argv[1:])
    result = run_audit(load(args.data), args.positive_label, args.top)
    text = render(result, args.positive_label, command.strip())
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
