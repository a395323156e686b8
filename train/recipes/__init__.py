"""Training recipes: a YAML recipe (``config``), the training methods (``full``; one module
each), the data they read (``data``) and :func:`train`, the API below the command line."""

from .config import Recipe, load_recipe, recipe_from_dict
from .data import DataError
from .run import TrainingRun, train

__all__ = ["DataError", "Recipe", "TrainingRun", "load_recipe", "recipe_from_dict", "train"]
