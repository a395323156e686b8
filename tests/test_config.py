import importlib.util
import pathlib

import pytest
import yaml

from train.benchmarks.cv import load_cv_config
from train.benchmarks.quality import load_bench_config
from train.recipes.config import apply_overrides, load_recipe, recipe_from_dict

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert any(p.name == "default.yaml" for p in CONFIGS)


def test_there_is_a_benchmark_config():
    assert any("systems" in yaml.safe_load(p.read_text()) and "cv" not in yaml.safe_load(p.read_text())
               for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses_and_starts_with_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m train"), f"{path.name} must start with the command that runs it"
    assert f"--config configs/{path.name}" in first
    # The command names a module that `python -m` can run.
    module = first.split()[3]
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{path.name}: no module {module}"
    if spec.submodule_search_locations is not None:
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{path.name}: {module} has no __main__"
    raw = yaml.safe_load(path.read_text())
    if module == "train.benchmarks.cv":  # cross-validation configs: their own loader
        config = load_cv_config(path)
        assert (ROOT / config.data.path).is_file() and config.systems
        for system in config.systems:
            if system.recipe:
                load_recipe(ROOT / system.recipe, system.overrides)
        return
    if "systems" in raw:  # benchmark configs are parsed by the benchmark's own loader
        assert module == "train.benchmarks"
        config = load_bench_config(path)
        assert config.datasets and config.systems
        for dataset in [*config.datasets, config.shipped_corpus]:
            if not dataset.data.path.startswith(".."):  # files outside the repository are not shipped with it
                assert (ROOT / dataset.data.path).is_file(), dataset.data.path
        for system in config.systems:
            if system.recipe:
                load_recipe(ROOT / system.recipe, system.overrides)
        return
    assert module == "train"
    recipe = load_recipe(path)
    from transformers import TrainingArguments

    args = dict(recipe.training, output_dir="/tmp/x")
    args["bf16"] = False
    TrainingArguments(**args)  # every training field is a real TrainingArguments field
    if recipe.data.path:
        assert (ROOT / recipe.data.path).is_file()


def test_overrides_reach_any_group_and_parse_as_yaml():
    recipe = load_recipe(ROOT / "configs/default.yaml", ["training.learning_rate=3e-5", "text.max_length=128",
                                                          "data.labels=[a, b]", "data.positive_label=b"])
    assert recipe.training["learning_rate"] == 3e-5
    assert recipe.text.max_length == 128
    assert recipe.data.labels == ["a", "b"]


def test_unknown_fields_are_rejected_with_their_names():
    base = {"data": {"path": "x.jsonl"}}
    with pytest.raises(ValueError, match="learning_rat"):
        recipe_from_dict({**base, "training": {"learning_rat": 1e-3}})
    with pytest.raises(ValueError, match="unknown fields"):
        recipe_from_dict({**base, "threshold": {"rul": "max_f1"}})
    with pytest.raises(ValueError, match="needs a value"):
        recipe_from_dict({**base, "threshold": {"rule": "min_precision"}})
    with pytest.raises(ValueError, match="either `path`"):
        recipe_from_dict({"data": {}})
    with pytest.raises(ValueError, match="group.field=value"):
        apply_overrides({}, ["nonsense"])
