"""outreach-guard training: data loading and validation, fine-tuning, evaluation, benchmarks.

Builds on ``infer``'s text pipeline so that training and scoring treat text identically.
"""
