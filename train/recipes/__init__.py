"""Training recipes: a YAML recipe (``config``), the training methods (``full``; one module
each), the data they read (``data``) and :func:`train`, the API below the command line.
Names are imported on first use, so ``python -m train --help`` answers without loading torch."""

import importlib

_EXPORTS = {"DataError": "data", "Recipe": "config", "load_recipe": "config", "recipe_from_dict": "config",
            "TrainingRun": "run", "train": "run"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
