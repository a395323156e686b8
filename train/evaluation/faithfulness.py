"""Is the evidence faithful, and what does it cost? ``python -m train.evaluation.faithfulness``.

For every message of at least two sentences, the sentences are ranked by occlusion
(``infer.explain``: the score drop without each). For the top ``k`` (``k`` = 1, 2, 3, below the
message's sentence count):

- comprehensiveness: the score minus the score without those sentences (higher: the evidence
  carries the score);
- sufficiency: the score minus the score of those sentences alone (lower: the evidence suffices);

both against a baseline of ``k`` sentences drawn at random (seeded). Scores are the positive
class's probability. The figures are means over messages, for all messages and for those the
model flags. Also timed: scoring the texts plainly against scoring them with evidence
(``--explain``), the cost factor the README reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

logger = logging.getLogger("train.evaluation.faithfulness")

KS = (1, 2, 3)


def faithfulness(clf, texts: list[str], ks=KS, seed: int = 0) -> dict:
    """Comprehensiveness and sufficiency of the occlusion ranking and of random sentences, per ``k``."""
    from infer.explain import keep_spans, occlusion_drops, remove_spans

    task = clf.task
    if not task.binary:
        raise ValueError("faithfulness is measured on binary models (the positive class's probability)")
    probs, _, spans, drops = occlusion_drops(clf, texts)
    full = task.scores(probs)
    flagged = task.decide_indices(probs) == task.positive_index
    rng = np.random.default_rng(seed)
    variants, index = [], []  # (k, method, kind, row) per variant text
    for i, (text, ts, d) in enumerate(zip(texts, spans, drops)):
        if len(ts) < 2:
            continue
        ranked = np.argsort(-d, kind="stable")
        shuffled = rng.permutation(len(ts))
        for k in ks:
            if k >= len(ts):
                continue
            for method, chosen in (("occlusion", ranked[:k]), ("random", shuffled[:k])):
                picked = [ts[j] for j in chosen]
                variants += [remove_spans(text, picked), keep_spans(text, picked)]
                index += [(k, method, "comprehensiveness", i), (k, method, "sufficiency", i)]
    scores = task.scores(clf.predict_proba(variants)) if variants else np.zeros(0)
    out: dict = {"rows": len(texts), "rows_with_2plus_sentences": int(sum(len(t) >= 2 for t in spans)),
                 "mean_sentences": float(np.mean([len(t) for t in spans])) if spans else 0.0, "by_k": {}}
    for k in ks:
        entry = {}
        for subset, keep in (("all", None), ("flagged", flagged)):
            for method in ("occlusion", "random"):
                for kind in ("comprehensiveness", "sufficiency"):
                    values = [full[i] - s for (kk, m, kd, i), s in zip(index, scores)
                              if kk == k and m == method and kd == kind and (keep is None or keep[i])]
                    entry.setdefault(subset, {}).setdefault(method, {})[kind] = (
                        float(np.mean(values)) if values else None)
                entry[subset]["n"] = len(values)
        out["by_k"][str(k)] = entry
    return out


def explain_cost(clf, texts: list[str], rounds: int = 3) -> dict:
    """Seconds to score ``texts`` plainly and with evidence (best of ``rounds`` interleaved rounds),
    and the factor."""
    from infer.explain import predict_with_evidence

    def timed(fn) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    # Interleaved rounds, so that load from other processes hits both alike; the best of each.
    plain, explained = float("inf"), float("inf")
    for _ in range(rounds):
        plain = min(plain, timed(lambda: clf.predict(texts)))
        explained = min(explained, timed(lambda: predict_with_evidence(clf, texts)))
    return {"rows": len(texts), "rounds": rounds, "plain_s": round(plain, 3), "explain_s": round(explained, 3),
            "plain_msgs_per_s": round(len(texts) / plain, 1), "explain_msgs_per_s": round(len(texts) / explained, 1),
            "factor": round(explained / plain, 2)}


def main(argv=None, prog: str = "python -m train.evaluation.faithfulness") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--rows", type=int, default=None, help="only the first N rows of the split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cost-rounds", type=int, default=3, help="timing rounds (0: skip the cost measurement)")
    p.add_argument("--no-faithfulness", action="store_true", help="only measure the cost")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from infer.classifier import Classifier
    from infer.device import configure_threads
    from infer.io import InputError
    from infer.manifest import ModelFolderError

    from .labelled import DataSpec, load_labelled

    try:
        rows = load_labelled(DataSpec(path=args.data)).split(args.split, "split")
        clf = Classifier.from_pretrained(args.model, device="cpu", precision=args.precision)
    except (InputError, ModelFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    texts = rows.texts[:args.rows] if args.rows else rows.texts
    if not texts:
        print(f"error: {args.data}: no rows with split == {args.split!r}", file=sys.stderr)
        return 2
    threads = configure_threads(None)
    result = {"command": f"{prog} " + " ".join(argv if argv is not None else sys.argv[1:]), "model": args.model,
              "data": args.data, "split": args.split, "precision": clf.precision, "threads": threads,
              "faithfulness": None if args.no_faithfulness else faithfulness(clf, texts, seed=args.seed)}
    if args.cost_rounds:
        result["cost"] = explain_cost(clf, texts, args.cost_rounds)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
