"""Evaluate a model folder on labelled data: ``python -m train.evaluation --model DIR --data FILE``.

Reads top to bottom: parse -> load labelled rows (any JSONL/CSV/Parquet file, optionally one
split of it) -> score them with the ``infer`` runtime -> metrics at the model's saved threshold,
threshold-free metrics, calibration, seeded bootstrap intervals, per-slice metrics -> write
``metrics.json``, ``report.md`` and PNG plots to the output folder (and, with ``--html``, a
self-contained ``report.html`` that shows messages: ``train.evaluation.html_report``). A model
with a tactic-tag head is also scored per tag when the data has a tags column (``--tags-column``).

The metrics are ``train.metrics``, the same functions the training loop reports, computed
directly with numpy: nothing is fetched from a hub. Message text is never logged or written
to the report; examples are named by id.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from infer.io import InputError  # noqa: E402
from infer.manifest import ModelFolderError, TaskSpec  # noqa: E402
from infer.options import add_column_options, add_model_options, input_error  # noqa: E402

from ..recipes.data import DataError  # noqa: E402
from .labelled import DataSpec, LabelledRows, label_key, load_labelled  # noqa: E402
from .metrics import (auroc, average_precision, binary_metrics, bootstrap_ci, confusion_matrix,  # noqa: E402
                      multiclass_brier, multiclass_metrics, one_vs_rest_metrics, precision_recall_f1,
                      top_label_ece)
from .threshold import select_threshold  # noqa: E402

logger = logging.getLogger("train.evaluation")

CI_LEVEL = 0.95
TOP_ERRORS = 10
#: Metrics that need both classes in a slice; which of them a one-class slice still has.
_NEEDS_BOTH = ("precision", "recall", "f1", "false_positive_rate", "auroc", "auprc", "recall_at_1pct_fpr",
               "recall_at_5pct_fpr")
_STILL_DEFINED = {"positive": ("recall",), "negative": ("false_positive_rate",)}


def parse_args(argv=None, prog: str = "python -m train.evaluation"):
    p = argparse.ArgumentParser(prog=prog, description="Evaluate a model folder on labelled data.")
    add_model_options(p)
    p.add_argument("--data", required=True, help="labelled JSONL, CSV or Parquet file")
    p.add_argument("--split", help="evaluate only rows whose split column has this value (e.g. test)")
    add_column_options(p, label=True, split=True)
    p.add_argument("--label-map", nargs="*", default=[], metavar="RAW=LABEL",
                   help="map raw label values to the model's labels, e.g. true=grooming false=benign")
    p.add_argument("--messages-column", help="conversation-format data: the column with the list of messages")
    p.add_argument("--roles", nargs="*", default=["initiator"], help="conversation roles whose turns form the text")
    p.add_argument("--slice-by", nargs="*", default=[], metavar="COL", help="also report metrics per value of COL")
    p.add_argument("--output-dir", help="default: runs/eval/<run>_<data>[_<split>]")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the model's saved one)")
    p.add_argument("--bootstrap-resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--network-only", action="store_true",
                   help="score with the network alone, leaving out a TF-IDF model the folder blends in "
                        "(the saved threshold was picked for the blend: pass --threshold to set another)")
    p.add_argument("--temperature", type=float,
                   help="divide the network's logits by this instead of the saved temperature (1: as trained)")
    p.add_argument("--html", action="store_true",
                   help="also write report.html: one self-contained file with the metrics, the plots and, for the "
                        "highest-scoring messages, the false positives and the false negatives, the MESSAGE TEXT "
                        "with its evidence highlighted, its tags and its score. Message text appears in it only "
                        "because you ask for it with this flag (metrics.json and report.md name rows by id)")
    p.add_argument("--html-examples", type=int, default=10, metavar="N", help="messages per list in report.html")
    p.add_argument("--tags-column", default="tactics",
                   help="column with each row's tactic tags, for models with a tag head (per-tag metrics)")
    return p.parse_args(argv)


# -- metrics ---------------------------------------------------------------------------------

def _binary_point_metrics(truth, score, threshold) -> dict:
    m = binary_metrics(truth, score, threshold)
    c = m["confusion"]
    m["false_positive_rate"] = c["fp"] / (c["fp"] + c["tn"]) if c["fp"] + c["tn"] else None
    return m


def _multiclass_point_metrics(y, probs, labels) -> dict:
    m = multiclass_metrics(y, probs, labels)
    ranking = one_vs_rest_metrics(y, probs, labels)
    for name, values in ranking["per_class"].items():
        m["per_class"][name].update(values)
    m.update(macro_auroc=ranking["macro_auroc"], macro_auprc=ranking["macro_auprc"], ece=top_label_ece(y, probs),
             brier=multiclass_brier(y, probs), confusion_matrix=confusion_matrix(y, probs.argmax(axis=1), len(labels)))
    return m


def operating_points(truth, score, max_fprs=(0.01, 0.05)) -> list[dict]:
    """For each FPR budget, the threshold that maximises recall within it *on this data*
    (optimistic: chosen on the data it is measured on) and what it gives."""
    out = []
    for max_fpr in max_fprs:
        t = select_threshold(truth, score, "max_fpr", max_fpr)
        m = _binary_point_metrics(truth, score, t)
        out.append({"max_fpr": max_fpr, "threshold": t, "recall": m["recall"], "precision": m["precision"],
                    "false_positive_rate": m["false_positive_rate"]})
    return out


def confidence_intervals(y, probs, task: TaskSpec, n_resamples: int, seed: int) -> dict:
    """Percentile bootstrap intervals (rows resampled with replacement, seeded)."""
    alpha = 1 - CI_LEVEL
    labels, threshold = task.labels, task.decision_threshold
    if task.binary:
        truth, score = (y == task.positive_index).astype(int), task.scores(probs)
        metrics = {"f1": lambda t, s: precision_recall_f1(t, s >= threshold)[2], "auroc": auroc,
                   "auprc": average_precision}
        return {name: bootstrap_ci(truth, score, fn, n_resamples, seed, alpha) for name, fn in metrics.items()}
    metrics = {"macro_f1": lambda t, p: multiclass_metrics(t, p, labels)["macro_f1"],
               "macro_auroc": lambda t, p: one_vs_rest_metrics(t, p, labels)["macro_auroc"],
               "macro_auprc": lambda t, p: one_vs_rest_metrics(t, p, labels)["macro_auprc"]}
    return {name: bootstrap_ci(y, probs, fn, n_resamples, seed, alpha) for name, fn in metrics.items()}


def slice_values(values: list) -> dict[str, list[int]]:
    """Row indices per slice value; a row with a list value (tactics) belongs to each element's slice."""
    groups: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        members = value if isinstance(value, (list, tuple)) else [value]
        for member in members:
            groups.setdefault("(missing)" if member is None else label_key(member), []).append(i)
    return dict(sorted(groups.items()))


def slice_metrics(y, probs, task: TaskSpec) -> dict:
    """Metrics for one slice; those a one-class slice cannot have are None and listed in ``skipped``."""
    present = sorted(set(y.tolist()))
    labels = task.labels
    if task.binary:
        k = task.positive_index
        m = _binary_point_metrics(y == k, task.scores(probs), task.decision_threshold)
        m.pop("confusion")
        if len(present) == 1:
            side = "positive" if present[0] == k else "negative"
            m["skipped"] = [name for name in _NEEDS_BOTH if name not in _STILL_DEFINED[side]]
            for name in m["skipped"]:
                m[name] = None
            m["note"] = f"one class only ({labels[present[0]]}): {', '.join(m['skipped'])} need both classes"
        return m
    m = {"n": int(len(y)), "class_counts": {labels[c]: int((y == c).sum()) for c in present},
         "accuracy": float((probs.argmax(axis=1) == y).mean())}
    if len(present) == 1:
        m.update(macro_f1=None, macro_auroc=None, skipped=["macro_f1", "macro_auroc"],
                 note=f"one class only ({labels[present[0]]}): macro_f1, macro_auroc need several classes")
        return m
    # Macro over the classes present in the slice: an absent class has no recall to average.
    sub = [labels[c] for c in present]
    remap = {c: i for i, c in enumerate(present)}
    sub_probs = probs[:, present]
    m["macro_f1"] = multiclass_metrics(np.array([remap[c] for c in y]), sub_probs, sub)["macro_f1"]
    m["macro_auroc"] = one_vs_rest_metrics(y, probs, labels)["macro_auroc"]
    return m


def top_errors(y, probs, pred, task: TaskSpec, ids, limit: int = TOP_ERRORS) -> dict:
    """Ids (never text) of the most confident mistakes, for error analysis."""
    ids = np.asarray(ids, dtype=object)
    labels = task.labels
    if task.binary:
        k = task.positive_index
        score = task.scores(probs)
        fp = np.nonzero((pred == k) & (y != k))[0]
        fn = np.nonzero((pred != k) & (y == k))[0]
        fp = fp[np.argsort(-score[fp], kind="stable")][:limit]
        fn = fn[np.argsort(score[fn], kind="stable")][:limit]
        return {"false_positives": [{"id": str(ids[i]), "score": float(score[i])} for i in fp],
                "false_negatives": [{"id": str(ids[i]), "score": float(score[i])} for i in fn]}
    wrong = np.nonzero(pred != y)[0]
    wrong = wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:limit]
    return {"misclassified": [{"id": str(ids[i]), "true": labels[y[i]], "predicted": labels[pred[i]],
                               "probability": float(probs[i].max())} for i in wrong]}


def evaluate_predictions(y, probs, task: TaskSpec, *, ids=None, slices: dict[str, list] | None = None,
                         n_resamples: int = 1000, seed: int = 0) -> dict:
    """Every reported figure for integer labels ``y`` and class probabilities ``probs`` under
    ``task`` (binary tasks decide at its threshold, 0.5 when it has none)."""
    y, probs = np.asarray(y, dtype=int), np.asarray(probs, dtype=float)
    ids = list(ids) if ids is not None else [str(i) for i in range(1, len(y) + 1)]
    labels = list(task.labels)
    pred = task.decide_indices(probs)
    result = {"task": "binary" if task.binary else "multiclass", "labels": labels,
              "positive_label": task.positive_label if task.binary else None, "threshold": task.decision_threshold,
              "n": int(len(y)), "class_counts": {name: int((y == k).sum()) for k, name in enumerate(labels)}}
    if task.binary:
        truth, score = y == task.positive_index, task.scores(probs)
        overall = _binary_point_metrics(truth, score, task.decision_threshold)
        overall["confusion_matrix"] = confusion_matrix(y, pred, len(labels))
        overall["operating_points"] = operating_points(truth, score) if len(set(y.tolist())) == 2 else []
    else:
        overall = _multiclass_point_metrics(y, probs, labels)
    result["overall"] = overall
    result["confidence_intervals"] = confidence_intervals(y, probs, task, n_resamples, seed)
    result["bootstrap"] = {"level": CI_LEVEL, "resamples": n_resamples, "seed": seed, "method": "percentile"}
    result["slices"] = {}
    for column, values in (slices or {}).items():
        result["slices"][column] = {value: slice_metrics(y[idx], probs[idx], task)
                                    for value, idx in slice_values(values).items()}
    result["top_errors"] = top_errors(y, probs, pred, task, ids)
    return result


def result_task(result: dict) -> TaskSpec:
    """The task an :func:`evaluate_predictions` result was computed under."""
    return TaskSpec(tuple(result["labels"]), result["positive_label"], result["threshold"])


def hard_row_rates(y, probs, task: TaskSpec, hard) -> dict:
    """On rows marked ``hard`` (the corpus's hard negatives and subtle grooming): the share of
    hard negatives flagged and of subtle grooming caught, at the task's threshold (binary
    tasks; None where there are no such rows)."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    if hard is None or not task.binary:
        return {"hard_negative_fpr": None, "subtle_recall": None}
    hard = np.array([label_key(h) == "true" for h in hard])
    flagged = task.decide_indices(probs) == task.positive_index
    positive = y == task.positive_index
    negatives, subtle = hard & ~positive & (y >= 0), hard & positive
    return {"hard_negative_fpr": float(flagged[negatives].mean()) if negatives.any() else None,
            "subtle_recall": float(flagged[subtle].mean()) if subtle.any() else None}


def headline(result: dict) -> dict:
    """The benchmark table's figures: F1 with its interval, AUROC, AUPRC, recall at 1% FPR
    (macro F1/AUROC/AUPRC for multi-class tasks, which have no single FPR)."""
    m, ci = result["overall"], result["confidence_intervals"]
    if result["task"] == "binary":
        return {"f1": m["f1"], "f1_ci": ci["f1"], "auroc": m["auroc"], "auprc": m["auprc"],
                "recall_at_1pct_fpr": m["recall_at_1pct_fpr"]}
    return {"f1": m["macro_f1"], "f1_ci": ci["macro_f1"], "auroc": m["macro_auroc"], "auprc": m["macro_auprc"],
            "recall_at_1pct_fpr": None}


# -- output ----------------------------------------------------------------------------------

def write_evaluation(folder, result: dict, y, probs, plots: bool = True) -> Path:
    """``metrics.json``, ``report.md`` and (unless ``plots`` is False) ``plots/*.png`` in ``folder``."""
    from .report import render_report

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_files = None
    if plots:
        from .plots import write_plots

        task = result_task(result)
        pred = task.decide_indices(np.asarray(probs))
        plot_files = {name: f"plots/{file}" for name, file in
                      write_plots(folder / "plots", y, probs, pred, task).items()}
    result = dict(result, plots=plot_files)
    (folder / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "report.md").write_text(render_report(result))
    return folder


def write_html_report(folder, result: dict, clf, rows: LabelledRows, y, probs, tag_probs, task: TaskSpec,
                      limit: int) -> Path:
    """``report.html`` in ``folder`` (see :mod:`train.evaluation.html_report`); binary tasks only."""
    from .html_report import build_examples, render_html
    from .plots import PLOT_FILES

    if not task.binary:
        raise DataError("--html needs a binary model (its lists are false positives and false negatives)")
    examples, totals = build_examples(clf, rows.texts, rows.ids, y, probs, tag_probs, task, limit)
    folder = Path(folder)
    plots = {name: folder / "plots" / file for name, file in PLOT_FILES.items() if (folder / "plots" / file).is_file()}
    path = folder / "report.html"
    path.write_text(render_html(result, examples, plots, totals), encoding="utf-8")
    logger.info("wrote %s (it shows message text, as asked for with --html)", path)
    return path


def default_output_dir(model: str, data: str, split: str | None) -> Path:
    model_path = Path(model).resolve()
    run = model_path.parent.name if model_path.name == "model" else model_path.name
    return Path("runs/eval") / "_".join([run, Path(data).stem] + ([split] if split else []))


def run_evaluation(args: argparse.Namespace, command: str | None = None) -> dict:
    """Score ``args.data`` with the model in ``args.model`` and write the evaluation folder."""
    from infer.classifier import Classifier

    label_map = dict(item.split("=", 1) for item in args.label_map) if args.label_map else None
    spec = DataSpec(path=args.data, format="conversation" if args.messages_column else "flat",
                    text_column=args.text_column, label_column=args.label_column, id_column=args.id_column,
                    split_column=args.split_column, label_map=label_map,
                    messages_column=args.messages_column or "messages", roles=args.roles)
    rows: LabelledRows = load_labelled(spec).split(args.split, args.split_column)
    if args.split is None and args.split_column in rows.columns:
        logger.warning("evaluating every row of %s, whatever its %r (pass --split test to hold out training rows)",
                       args.data, args.split_column)
    if len(rows) == 0:
        raise DataError(f"{args.data}: no rows with {args.split_column} == {args.split!r}")
    missing = [c for c in args.slice_by if c not in rows.columns]
    if missing:
        raise DataError(f"{args.data}: no column(s) {missing} to slice by; columns: {sorted(rows.columns)}")

    clf = Classifier.from_pretrained(args.model, device=args.device, precision=args.precision)
    if args.temperature is not None:
        if not args.temperature > 0:
            raise ValueError("--temperature must be positive")
        clf = clf.with_manifest(clf.manifest.replace(temperature=args.temperature))
    if args.network_only:
        clf = clf.with_manifest(clf.manifest.replace(blend=None))
    task = clf.task if args.threshold is None else clf.task.with_threshold(args.threshold)
    y = task.label_indices(rows.labels, args.data)
    logger.info("scoring %d rows of %s with %s", len(rows), args.data, args.model)
    probs, tag_probs = clf.predict_proba_and_tags(rows.texts)

    result = evaluate_predictions(y, probs, task, ids=rows.ids, slices={c: rows.columns[c] for c in args.slice_by},
                                  n_resamples=args.bootstrap_resamples, seed=args.seed)
    if tag_probs is not None and args.tags_column in rows.columns:
        from .tag_metrics import parse_tag_list, tag_metrics

        try:
            targets = clf.manifest.tags.targets([parse_tag_list(v) for v in rows.columns[args.tags_column]])
        except ValueError as err:
            raise DataError(f"{args.data}: column {args.tags_column!r}: {err}") from None
        result["tags"] = tag_metrics(targets, tag_probs, clf.manifest.tags)
    result.update(command=command, model=str(args.model), data=spec.describe(), split=args.split,
                  scored_with={"network_only": bool(args.network_only), "temperature": clf.manifest.temperature},
                  threshold_source="--threshold" if args.threshold is not None else
                  ("saved with the model" if clf.threshold is not None else "default 0.5 (none saved)"))
    out = Path(args.output_dir) if args.output_dir else default_output_dir(args.model, args.data, args.split)
    write_evaluation(out, result, y, probs, plots=not args.no_plots)
    if args.html:
        write_html_report(out, result, clf, rows, y, probs, tag_probs, task, args.html_examples)
    figures = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in headline(result).items()}
    print(f"wrote {out}/report.md and metrics.json: {figures}")
    return result


def main(argv=None, prog: str = "python -m train.evaluation") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_evaluation(args, f"{prog} " + shlex.join(argv))
    except (InputError, ModelFolderError) as err:
        return input_error(err)
    return 0
