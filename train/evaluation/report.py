"""The readable evaluation report (``report.md``) rendered from a ``metrics.json`` result."""

from __future__ import annotations


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(ci) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines + [""]


def _confusion(result: dict) -> list[str]:
    labels = result["labels"]
    matrix = result["overall"]["confusion_matrix"]
    return (["Confusion matrix (rows: true class, columns: predicted class):", ""]
            + _table(["true \\ predicted"] + labels, [[f"**{name}**"] + row for name, row in zip(labels, matrix)]))


def _binary_sections(result: dict) -> list[str]:
    m, ci = result["overall"], result["confidence_intervals"]
    level = f"{int(result['bootstrap']['level'] * 100)}% CI"
    lines = [f"## At the decision threshold ({fmt(result['threshold'], 4)})", ""]
    lines += _table(["metric", "value", level], [
        ["accuracy", m["accuracy"], ""], ["precision", m["precision"], ""], ["recall", m["recall"], ""],
        ["F1", m["f1"], fmt_ci(ci["f1"])], ["false-positive rate", m["false_positive_rate"], ""]])
    lines += _confusion(result)
    lines += ["## Threshold-free", ""]
    lines += _table(["metric", "value", level], [
        ["AUROC", m["auroc"], fmt_ci(ci["auroc"])], ["AUPRC (average precision)", m["auprc"], fmt_ci(ci["auprc"])],
        ["recall at 1% FPR", m["recall_at_1pct_fpr"], ""], ["recall at 5% FPR", m["recall_at_5pct_fpr"], ""]])
    lines += ["## Calibration", ""]
    lines += _table(["metric", "value"], [["expected calibration error (10 equal-width bins)", m["ece"]],
                                          ["Brier score", m["brier"]]])
    if m.get("operating_points"):
        lines += ["## Operating points", "",
                  "The threshold that gives the highest recall within each false-positive budget, chosen on "
                  "this data (so optimistic for this data; pick thresholds on a validation split).", ""]
        lines += _table(["max FPR", "threshold", "recall", "precision", "FPR"],
                        [[p["max_fpr"], fmt(p["threshold"], 4), p["recall"], p["precision"], p["false_positive_rate"]]
                         for p in m["operating_points"]])
    return lines


def _multiclass_sections(result: dict) -> list[str]:
    m, ci = result["overall"], result["confidence_intervals"]
    level = f"{int(result['bootstrap']['level'] * 100)}% CI"
    lines = ["## Overall (predicted class: argmax)", ""]
    lines += _table(["metric", "value", level], [
        ["accuracy", m["accuracy"], ""], ["macro precision", m["macro_precision"], ""],
        ["macro recall", m["macro_recall"], ""], ["macro F1", m["macro_f1"], fmt_ci(ci["macro_f1"])],
        ["macro AUROC (one vs rest)", m["macro_auroc"], fmt_ci(ci["macro_auroc"])],
        ["macro AUPRC (one vs rest)", m["macro_auprc"], fmt_ci(ci["macro_auprc"])],
        ["top-label expected calibration error", m["ece"], ""], ["Brier score (multi-class)", m["brier"], ""]])
    lines += ["## Per class", ""]
    lines += _table(["class", "support", "precision", "recall", "F1", "AUROC", "AUPRC"],
                    [[name, c["support"], c["precision"], c["recall"], c["f1"], c["auroc"], c["auprc"]]
                     for name, c in m["per_class"].items()])
    lines += _confusion(result)
    return lines


def _slices(result: dict) -> list[str]:
    if not result["slices"]:
        return []
    binary = result["task"] == "binary"
    lines = ["## Slices", ""]
    for column, groups in result["slices"].items():
        lines += [f"### By `{column}`", ""]
        if binary:
            header = ["value", "n", "positives", "accuracy", "precision", "recall", "F1", "FPR", "AUROC", "AUPRC"]
            rows = [[f"`{value}`", g["n"], g["positives"], g["accuracy"], g["precision"], g["recall"], g["f1"],
                     g["false_positive_rate"], g["auroc"], g["auprc"]] for value, g in groups.items()]
        else:
            header = ["value", "n", "accuracy", "macro F1", "macro AUROC"]
            rows = [[f"`{value}`", g["n"], g["accuracy"], g["macro_f1"], g["macro_auroc"]]
                    for value, g in groups.items()]
        lines += _table(header, rows)
        one_class = [value for value, g in groups.items() if g.get("skipped")]
        if one_class:
            lines += [f"{len(one_class)} of {len(groups)} slices hold one class only; metrics that need both "
                      "classes are not computed for them (n/a): " + ", ".join(f"`{v}`" for v in one_class) + ".", ""]
    return lines


def _errors(result: dict) -> list[str]:
    errors = result["top_errors"]
    lines = ["## Most confident errors (ids only)", ""]
    if "false_positives" in errors:
        for title, key in (("False positives (highest scores)", "false_positives"),
                           ("False negatives (lowest scores)", "false_negatives")):
            items = ", ".join(f"`{e['id']}` ({e['score']:.3f})" for e in errors[key]) or "none"
            lines += [f"- {title}: {items}"]
    else:
        items = ", ".join(f"`{e['id']}` ({e['true']} -> {e['predicted']}, {e['probability']:.3f})"
                          for e in errors["misclassified"]) or "none"
        lines += [f"- Misclassified (most confident first): {items}"]
    return lines + [""]


def _tags(result: dict) -> list[str]:
    """Per-tag metrics of a model with a tactic-tag head (``train.evaluation.tag_metrics``)."""
    tags = result.get("tags")
    if not tags:
        return []
    lines = ["## Tactic tags", "", "At each tag's threshold (picked on the validation split); macro averages are "
             f"over the {tags['macro']['tags']} tags that some row carries.", ""]
    rows = [[name, m["support"], m["predicted"], m["precision"], m["recall"], m["f1"], m["auprc"]]
            for name, m in tags["per_tag"].items()]
    rows += [[f"**{avg} average**", "", "", tags[avg]["precision"], tags[avg]["recall"], tags[avg]["f1"],
              tags[avg]["auprc"]] for avg in ("micro", "macro")]
    return lines + _table(["tag", "rows", "flagged", "precision", "recall", "F1", "AUPRC"], rows)


def render_report(result: dict) -> str:
    counts = ", ".join(f"{name}: {n}" for name, n in result["class_counts"].items())
    lines = ["# Evaluation report", ""]
    if result.get("command"):
        lines += ["Produced by:", "", "```", result["command"], "```", ""]
    if result.get("model"):
        lines += [f"- Model: `{result['model']}`"]
    if result.get("data"):
        split = f", split `{result['split']}`" if result.get("split") else ""
        lines += [f"- Data: {result['data']}{split}"]
    lines += [f"- Rows: {result['n']} ({counts})"]
    if result["task"] == "binary":
        source = f" ({result['threshold_source']})" if result.get("threshold_source") else ""
        lines += [f"- Task: binary; metrics are for the positive class `{result['positive_label']}`; "
                  f"decision threshold {fmt(result['threshold'], 4)}{source}"]
    else:
        lines += [f"- Task: multi-class ({len(result['labels'])} labels); macro averages weight classes equally"]
    b = result["bootstrap"]
    lines += [f"- Intervals: {b['method']} bootstrap over rows, {b['resamples']} resamples, seed {b['seed']}", ""]
    lines += _binary_sections(result) if result["task"] == "binary" else _multiclass_sections(result)
    lines += _tags(result)
    lines += _slices(result)
    lines += _errors(result)
    if result.get("plots"):
        lines += ["## Plots", ""]
        lines += [f"![{name}]({path})" for name, path in result["plots"].items()]
        lines += [""]
    return "\n".join(lines)
