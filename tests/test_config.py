import pathlib

import pytest
import yaml

from train.recipes.config import apply_overrides, load_recipe, recipe_from_dict

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert any(p.name == "default.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses_and_starts_with_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m train"), f"{path.name} must start with the command that runs it"
    assert f"--config configs/{path.name}" in first
    raw = yaml.safe_load(path.read_text())
    if "systems" in raw:  # benchmark configs are parsed by the benchmark's own loader
        return
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
