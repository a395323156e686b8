"""outreach-guard runtime: load a saved model, normalise text, batch, score, write results.

This package never imports ``train`` (nor ``peft``, ``datasets``, ``accelerate`` or
``evaluate``), so scoring installs and starts light. Its names are imported on first use, so
``python -m infer --help`` answers without loading torch.
"""

import importlib

_EXPORTS = {"Classifier": "classifier", "Prediction": "classifier", "ModelFolderError": "manifest",
            "ModelManifest": "manifest", "TaskSpec": "manifest", "TextSettings": "text", "normalize_text": "text"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
