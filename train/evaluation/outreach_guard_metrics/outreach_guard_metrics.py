"""outreach-guard's metric set as a Hugging Face ``evaluate`` module, loadable offline by path:

    import evaluate
    metric = evaluate.load("train/evaluation/outreach_guard_metrics")   # a folder, no hub
    metric.compute(predictions=scores, references=labels, threshold=0.5)

``predictions`` are positive-class probabilities, ``references`` 0/1 labels (1 = positive).
Returns the figures ``python -m train.evaluation`` reports for a binary task: accuracy,
precision, recall, F1 and the confusion counts at ``threshold``; AUROC, AUPRC, recall at 1% and
5% false-positive rate; ECE and Brier score; with ``bootstrap_resamples`` > 0, percentile
intervals for F1, AUROC and AUPRC. Undefined values (AUROC on one class) are ``None``. The
numbers come from ``train.evaluation.metrics``, so they match the project's reports exactly.
Combine it with other metrics through ``evaluate.combine``.
"""

import datasets
import evaluate

from train.evaluation.metrics import auroc, average_precision, binary_metrics, bootstrap_ci, precision_recall_f1

_KWARGS = """
Args:
    predictions: list of float, the positive class's probability per row.
    references: list of int, 1 for the positive class, else 0.
    threshold: float, decision threshold (default 0.5).
    bootstrap_resamples: int, resamples for 95% intervals (default 0: none).
    seed: int, bootstrap seed (default 0).
"""


@evaluate.utils.file_utils.add_start_docstrings(__doc__, _KWARGS)
class OutreachGuardMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("int32")}),
            reference_urls=[])

    def _compute(self, predictions, references, threshold: float = 0.5, bootstrap_resamples: int = 0, seed: int = 0):
        result = binary_metrics(references, predictions, threshold)
        result.update(result.pop("confusion"))
        if bootstrap_resamples:
            functions = {"f1": lambda y, s: precision_recall_f1(y, s >= threshold)[2], "auroc": auroc,
                         "auprc": average_precision}
            for name, fn in functions.items():
                result[f"{name}_ci"] = bootstrap_ci(references, predictions, fn, bootstrap_resamples, seed)
        return result
