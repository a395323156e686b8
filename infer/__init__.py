"""outreach-guard runtime: load a saved model, normalise text, batch, score, write results.

This package never imports ``train`` (nor ``peft``, ``datasets``, ``accelerate`` or
``evaluate``), so scoring installs and starts light.
"""

from .classifier import Classifier, Prediction
from .manifest import ModelFolderError, ModelManifest, TaskSpec
from .text import TextSettings, normalize_text

__all__ = ["Classifier", "ModelFolderError", "ModelManifest", "Prediction", "TaskSpec", "TextSettings",
           "normalize_text"]
