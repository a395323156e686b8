"""Evaluation: metrics (``metrics``, also published as an ``evaluate`` module in
``outreach_guard_metrics/``), threshold rules, labelled data (``labelled``), the evaluation
command (``evaluate``), its report and plots, and robustness to obfuscation (``robustness``)."""
