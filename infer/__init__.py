"""outreach-guard runtime: load a saved model, normalise text, batch, score, write results.

This package never imports ``train`` (nor ``datasets``, ``accelerate`` or ``evaluate``), so
scoring installs and starts light.
"""

from .model import Classifier, ModelFolderError, PipelineConfig, Prediction
from .text import TextSettings, normalize_text

__all__ = ["Classifier", "ModelFolderError", "PipelineConfig", "Prediction", "TextSettings", "normalize_text"]
