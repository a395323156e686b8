"""Agreement of a reduced-precision scorer with fp32: decided labels and probabilities.

Used by ``python -m infer --check-agreement N`` and by the throughput benchmark.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .manifest import TaskSpec

#: The agreement a precision mode needs with fp32, as a fraction of labels, to be offered.
AGREEMENT_BAR = 0.995


def label_agreement(task: TaskSpec, reference: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """Fraction of rows whose decided label matches the reference's, and the largest absolute
    probability difference."""
    same = task.decide_indices(reference) == task.decide_indices(probs)
    return float(same.mean()), float(np.abs(reference - probs).max())


def check_agreement(classifier, texts: list[str], **load_kwargs) -> tuple[float, float]:
    """Score ``texts`` with ``classifier`` and with an fp32 copy of its model (loaded from
    ``load_kwargs``, which name the folder as ``path``); returns :func:`label_agreement`."""
    from .classifier import Classifier

    reference = Classifier.from_pretrained(precision="fp32", device=classifier.device, **load_kwargs)
    # The same text pipeline, overrides included.
    reference.manifest = dataclasses.replace(reference.manifest, text=classifier.manifest.text)
    expected = reference.predict_proba(texts)
    del reference
    return label_agreement(classifier.manifest.task, expected, classifier.predict_proba(texts))
