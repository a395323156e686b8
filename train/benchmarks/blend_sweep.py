"""Blend weights under cross-validation, without retraining:
``python -m train.benchmarks.blend_sweep --predictions runs/cv-authors/predictions.csv`` (several
files, e.g. cross-validation runs of different seeds, are pooled over their fold runs).

A blended model combines its network's (temperature-scaled) probabilities with a TF-IDF
model's: averaged, ``(1 - w) * network + w * tfidf`` with ``w = blend.tfidf_weight``
(``blend.combine: mean``), or stacked (``blend.combine: stack``, the default recipe's). Cross-validation
(``train.benchmarks.cv``) writes every system's score for every row of every fold run to
``predictions.csv``, both on the held-out fold (``role`` test) and on the fold that picks the
threshold (``role`` threshold). From those scores this recomputes, per fold run, the blend at
each weight in ``--weights``: the threshold re-picked for best F1 on the threshold fold, then
F1, AUROC and AUPRC on the held-out fold, as ``cv`` does for every system. ``fit`` picks the
weight on each fold run's threshold fold (best AUROC there) before scoring its held-out fold, so
its row measures what choosing the weight on validation data would deliver; the fixed-weight
rows, chosen after seeing the held-out folds, are descriptive. ``stack`` is the recipe's
``blend.combine: stack``: a logistic regression on the two models' log-odds fitted on each fold
run's threshold fold (``train.evaluation.calibration.fit_stack``, the function training uses),
then the threshold picked there as well.

Printed as markdown: mean and standard deviation over fold runs per weight, and the paired
difference with ``--reference`` (default the other member, i.e. weight 1) on the same fold runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..evaluation.threshold import select_threshold

MEASURES = ("f1", "auroc", "auprc")
DEFAULT_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


def load_predictions(*paths) -> dict:
    """``{(seed, fold): {system: {role: {id: (label, score)}}}}`` from one or more of cv's
    predictions.csv files (e.g. runs of different seeds, pooled; a fold run in two files is refused)."""
    runs: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for path in paths:
        mine: set = set()
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"seed", "fold", "system", "role", "id", "label", "score"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: not a cross-validation predictions file (missing columns {sorted(missing)})")
            for row in reader:
                key = (int(row["seed"]), int(row["fold"]))
                if key not in mine:
                    if key in runs:
                        raise ValueError(f"{path}: seed {key[0]} fold {key[1]} is also in an earlier file")
                    mine.add(key)
                runs[key][row["system"]][row["role"]][row["id"]] = (row["label"], float(row["score"]))
        if not mine:
            raise ValueError(f"{path}: no predictions")
    return runs


def _aligned(a: dict, b: dict, positive: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if set(a) != set(b):
        raise ValueError("the two systems scored different rows in a fold run")
    ids = sorted(a)
    y = np.array([a[i][0] == positive for i in ids])
    return y, np.array([a[i][1] for i in ids]), np.array([b[i][1] for i in ids])


def _measures(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """F1 at ``threshold``, AUROC and AUPRC of positive-class ``scores``, as ``cv`` measures a fold run."""
    from infer.manifest import TaskSpec

    from .cv import fold_measures

    task = TaskSpec(("other", "positive"), "positive", float(np.clip(threshold, 0.0, 1.0)))
    scores = np.asarray(scores, dtype=np.float64)
    measured = fold_measures(np.asarray(y, dtype=int), np.column_stack([1 - scores, scores]), task, None)
    return {m: measured[m] for m in MEASURES}


def sweep(runs: dict, network: str, other: str, weights=DEFAULT_WEIGHTS, positive: str = "grooming") -> dict:
    """Per weight (and ``"fit"``, ``"stack"``): the list of per-fold-run measures, in fold-run order."""
    from sklearn.metrics import roc_auc_score

    from infer.blend import stack_probs

    from ..evaluation.calibration import fit_stack

    out: dict = {w: [] for w in weights}
    out["fit"] = []
    out["stack"] = []
    chosen = []
    for key in sorted(runs):
        systems = runs[key]
        for name in (network, other):
            if name not in systems:
                raise ValueError(f"fold run seed {key[0]} fold {key[1]} has no scores of {name!r}; "
                                 f"systems: {sorted(systems)}")
        y_val, net_val, oth_val = _aligned(systems[network]["threshold"], systems[other]["threshold"], positive)
        y, net, oth = _aligned(systems[network]["test"], systems[other]["test"], positive)
        for w in weights:
            threshold = select_threshold(y_val, (1 - w) * net_val + w * oth_val, "max_f1")
            out[w].append(_measures(y, (1 - w) * net + w * oth, threshold))
        # Nested: the weight with the best AUROC on the threshold fold (the lower weight on ties).
        best = max(weights, key=lambda w: (roc_auc_score(y_val, (1 - w) * net_val + w * oth_val), -w))
        chosen.append(best)
        threshold = select_threshold(y_val, (1 - best) * net_val + best * oth_val, "max_f1")
        out["fit"].append(_measures(y, (1 - best) * net + best * oth, threshold))
        # Stacked as training does it: fitted, then thresholded, on the threshold fold.
        coef, intercept = fit_stack(net_val, oth_val, y_val)
        two = lambda p: np.column_stack([1 - p, p])  # noqa: E731
        stacked_val = stack_probs(two(net_val), two(oth_val), 1, coef, intercept)[:, 1]
        threshold = select_threshold(y_val, stacked_val, "max_f1")
        out["stack"].append(_measures(y, stack_probs(two(net), two(oth), 1, coef, intercept)[:, 1], threshold))
    return {"weights": out, "chosen": chosen, "fold_runs": [list(k) for k in sorted(runs)]}


def summarise(result: dict, reference) -> list[dict]:
    ref = result["weights"][reference]
    rows = []
    for weight, values in result["weights"].items():
        row = {"weight": weight}
        for m in MEASURES:
            v = np.array([r[m] for r in values])
            d = v - np.array([r[m] for r in ref])
            row[m] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
            row[f"{m}_diff"] = (float(d.mean()), int((d > 0).sum()), len(d))
        rows.append(row)
    return rows


def render(rows: list[dict], result: dict, network: str, other: str, reference, command: str) -> str:
    n = len(result["fold_runs"])
    lines = ["# Blend weights under cross-validation", "", "```", command, "```", "",
             f"`(1 - w) * {network} + w * {other}` over {n} fold runs; threshold re-picked (best F1) on each "
             f"threshold fold; `fit`: w picked per fold run on its threshold fold (best AUROC), chosen "
             f"{', '.join(str(w) for w in result['chosen'])}; `stack`: a logistic regression on the two "
             f"log-odds fitted on each threshold fold (`blend.combine: stack`). Paired with w = {reference}: "
             f"mean difference (fold runs won of {n}).", "",
             "| w | F1 | AUROC | AUPRC | F1 vs ref | AUROC vs ref | AUPRC vs ref |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row[m][0]:.3f} +- {row[m][1]:.3f}" for m in MEASURES]
        cells += [f"{row[m + '_diff'][0]:+.3f} ({row[m + '_diff'][1]}/{row[m + '_diff'][2]})" for m in MEASURES]
        lines.append(f"| {row['weight']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None, prog: str = "python -m train.benchmarks.blend_sweep") -> int:
    import shlex

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    p.add_argument("--predictions", required=True, nargs="+",
                   help="predictions.csv written by python -m train.benchmarks.cv; several (e.g. of different "
                        "seeds) are pooled over their fold runs")
    p.add_argument("--network", default="minilm_default (network alone)",
                   help="the system whose scores get weight 1 - w (default: %(default)s)")
    p.add_argument("--other", default="tfidf_logreg", help="the system whose scores get weight w (default: %(default)s)")
    p.add_argument("--weights", default=",".join(str(w) for w in DEFAULT_WEIGHTS),
                   help="comma-separated weights of --other in [0, 1]")
    p.add_argument("--positive-label", default="grooming")
    p.add_argument("--json", help="also write the per-fold-run figures here")
    args = p.parse_args(argv)
    try:
        weights = tuple(float(w) for w in args.weights.split(","))
        if not weights or min(weights) < 0 or max(weights) > 1:
            raise ValueError("--weights must lie in [0, 1]")
        runs = load_predictions(*args.predictions)
        result = sweep(runs, args.network, args.other, weights, args.positive_label)
        reference = 1.0 if 1.0 in weights else weights[-1]
        rows = summarise(result, reference)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(rows, result, args.network, args.other, reference, f"{prog} " + shlex.join(argv)))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "weights": {str(k): v for k, v in result["weights"].items()}},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
