"""Grouped cross-validation: folds hold each group once, every row is scored once per seed and
system, the summary and the paired comparison follow from the fold figures."""

import json

import numpy as np
import pytest
import yaml

from conftest import make_corpus, write_jsonl
from train.benchmarks.cv import fold_assignments, load_cv_config, main

SPLITS = {"train": 60, "validation": 24, "test": 24}


def _corpus(tmp_path):
    rows = make_corpus(SPLITS, seed=5, flip=0.15)
    for i, row in enumerate(rows):
        row["family"] = f"fam{i % 9}_{row['label']}"  # 18 single-label families
    return write_jsonl(tmp_path / "corpus.jsonl", rows), rows


def _config(tmp_path, data, systems, **cv):
    path = tmp_path / "cv.yaml"
    path.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "out"), "labels": ["benign", "grooming"], "positive_label": "grooming",
        "data": {"path": str(data), "split_column": "split"},
        "cv": {"folds": 3, "seeds": [0, 1], "group_by": "family", "reference": "tfidf_logreg", **cv},
        "systems": systems}))
    return path


def test_each_group_lands_in_exactly_one_fold_with_both_labels():
    labels = ["a", "b"] * 60
    groups = [f"g{i % 12}" for i in range(120)]
    for seed in (0, 1):
        folds = fold_assignments(labels, groups, 4, seed)
        assert set(folds) == {0, 1, 2, 3}
        for g in set(groups):
            assert len({folds[i] for i in range(120) if groups[i] == g}) == 1
        for k in range(4):
            assert {labels[i] for i in np.flatnonzero(folds == k)} == {"a", "b"}
    assert not np.array_equal(fold_assignments(labels, groups, 4, 0), fold_assignments(labels, groups, 4, 1))
    with pytest.raises(ValueError, match="groups"):
        fold_assignments(labels, groups, 13, 0)


def test_cross_validation_end_to_end(tiny_base, tmp_path, capsys):
    data, rows = _corpus(tmp_path)
    systems = [{"name": "keyword_rules", "kind": "keyword_rules"},
               {"name": "tfidf_logreg", "kind": "tfidf_logreg"},
               {"name": "frozen", "kind": "embedding_logreg", "model": str(tiny_base), "max_length": 32},
               {"name": "both", "kind": "average", "members": ["tfidf_logreg", "frozen"], "weights": [1, 3]}]
    assert main(["--config", str(_config(tmp_path, data, systems))]) == 0
    out = tmp_path / "out"
    report = json.loads((out / "cv.json").read_text())
    names = ["keyword_rules", "tfidf_logreg", "frozen", "both"]
    assert report["rows"] == len(rows) and report["groups"] == 18
    assert len(report["runs"]) == 2 * 3 * len(names)
    for seed in (0, 1):
        for name in names:
            runs = [r for r in report["runs"] if r["seed"] == seed and r["system"] == name]
            assert sum(r["n"] for r in runs) == len(rows)  # every row scored exactly once per seed
    for name in names:
        values = [r["auroc"] for r in report["runs"] if r["system"] == name]
        assert report["summary"][name]["auroc"]["mean"] == pytest.approx(np.mean(values))
        assert report["summary"][name]["auroc"]["std"] == pytest.approx(np.std(values, ddof=1))
    ref = {(r["seed"], r["fold"]): r for r in report["runs"] if r["system"] == "tfidf_logreg"}
    mine = [r for r in report["runs"] if r["system"] == "both"]
    diffs = [r["f1"] - ref[(r["seed"], r["fold"])]["f1"] for r in mine]
    paired = report["summary"]["both"]["f1"]
    assert paired["diff_mean"] == pytest.approx(np.mean(diffs))
    assert paired["wins"] == sum(d > 0 for d in diffs)
    assert "diff_mean" not in report["summary"]["tfidf_logreg"]["f1"]
    fpr = report["summary"]["both"]["hard_negative_fpr"]
    fpr_diffs = [r["hard_negative_fpr"] - ref[(r["seed"], r["fold"])]["hard_negative_fpr"] for r in mine]
    assert fpr["wins"] == sum(d < 0 for d in fpr_diffs)  # a lower false-positive rate wins
    table = (out / "cv.md").read_text()
    assert "python -m train.benchmarks.cv --config" in table and "| both |" in table
    assert len((out / "folds.csv").read_text().splitlines()) == 1 + len(report["runs"])
    # predictions.csv: every row once per seed and system as a test row, its fold run's figures
    # recomputable from the scores and the threshold it records.
    import csv

    from sklearn.metrics import f1_score, roc_auc_score

    with open(out / "predictions.csv") as fh:
        scored = list(csv.DictReader(fh))
    assert "text" not in scored[0]
    for name in names:
        for seed in (0, 1):
            test_rows = [r for r in scored if r["system"] == name and r["seed"] == str(seed) and r["role"] == "test"]
            assert sorted(r["id"] for r in test_rows) == sorted(str(r["id"]) for r in rows)
            assert any(r["role"] == "threshold" for r in scored if r["system"] == name and r["seed"] == str(seed))
        for run in (r for r in report["runs"] if r["system"] == name):
            mine = [r for r in scored if r["system"] == name and r["seed"] == str(run["seed"])
                    and r["fold"] == str(run["fold"]) and r["role"] == "test"]
            y = [r["label"] == "grooming" for r in mine]
            score = np.array([float(r["score"]) for r in mine])
            assert roc_auc_score(y, score) == pytest.approx(run["auroc"], abs=1e-4)
            assert f1_score(y, score >= float(mine[0]["threshold"])) == pytest.approx(run["f1"])
    assert "wrote" in capsys.readouterr().out

    # The blend sweep recomputes averages from those scores: weight 1 and 0 are the members
    # themselves, 0.25 the `both` system (weights 1:3), fold run by fold run.
    from train.benchmarks import blend_sweep

    sweep = blend_sweep.sweep(blend_sweep.load_predictions(out / "predictions.csv"), "frozen", "tfidf_logreg",
                              weights=(0.0, 0.25, 1.0))
    for weight, name in ((0.0, "frozen"), (0.25, "both"), (1.0, "tfidf_logreg")):
        expected = sorted((r for r in report["runs"] if r["system"] == name), key=lambda r: (r["seed"], r["fold"]))
        for got, run in zip(sweep["weights"][weight], expected, strict=True):
            assert got["auroc"] == pytest.approx(run["auroc"]) and got["auprc"] == pytest.approx(run["auprc"])
            assert got["f1"] == pytest.approx(run["f1"])
    assert len(sweep["weights"]["fit"]) == len(sweep["chosen"]) == 6
    assert all(w in (0.0, 0.25, 1.0) for w in sweep["chosen"])
    assert blend_sweep.main(["--predictions", str(out / "predictions.csv"), "--network", "frozen",
                             "--weights", "0,0.25,1"]) == 0
    table = capsys.readouterr().out
    assert "| 0.25 |" in table and "| fit |" in table and "| stack |" in table
    assert blend_sweep.main(["--predictions", str(out / "predictions.csv"), "--network", "nope"]) == 2
    assert "no scores of 'nope'" in capsys.readouterr().err
    # Several files pool their fold runs; the same fold run twice is refused.
    seed9 = tmp_path / "seed9.csv"
    seed9.write_text((out / "predictions.csv").read_text().replace("\n0,", "\n8,").replace("\n1,", "\n9,"))
    pooled = blend_sweep.load_predictions(out / "predictions.csv", seed9)
    assert len(pooled) == 12 and {seed for seed, _ in pooled} == {0, 1, 8, 9}
    assert blend_sweep.main(["--predictions", str(out / "predictions.csv"), str(out / "predictions.csv")]) == 2
    assert "also in an earlier file" in capsys.readouterr().err


@pytest.mark.parametrize("systems, cv, message", [
    ([{"name": "tfidf_logreg", "kind": "tfidf_logreg"}], {"reference": "nope"}, "reference"),
    ([{"name": "tfidf_logreg", "kind": "tfidf_logreg"}, {"name": "m", "kind": "finetuned", "model": "runs/x"}], {},
     "cannot be cross-validated"),
    ([{"name": "tfidf_logreg", "kind": "tfidf_logreg"}, {"name": "a", "kind": "average", "members": ["tfidf_logreg"]}],
     {}, "two or more"),
    ([{"name": "tfidf_logreg", "kind": "tfidf_logreg"}, {"name": "k", "kind": "keyword_rules"},
      {"name": "a", "kind": "average", "members": ["tfidf_logreg", "nope"]}], {}, "not systems that train"),
    ([{"name": "tfidf_logreg", "kind": "tfidf_logreg"}], {"folds": 2}, "at least 3"),
])
def test_bad_configs_are_refused(tmp_path, systems, cv, message, capsys):
    data, _ = _corpus(tmp_path)
    path = _config(tmp_path, data, systems, **cv)
    with pytest.raises(ValueError, match=message):
        load_cv_config(path)
    assert main(["--config", str(path)]) == 2
    assert message.split()[0] in capsys.readouterr().err


def test_a_blended_finetuned_system_also_reports_its_network_alone(tiny_base, tmp_path):
    from conftest import tag_rows, tiny_recipe

    data, rows = _corpus(tmp_path)
    write_jsonl(data, tag_rows(rows))  # the corpus's tag lists, which the recipe's tag model trains on
    recipe = tiny_recipe(tiny_base, {s: tmp_path / f"never_read_{s}.jsonl" for s in ("train", "validation", "test")},
                         num_train_epochs=1)
    # Blended (averaged; `stacked` below: the shipped default), temperature-scaled, with a separate TF-IDF tag model.
    recipe.update({"blend": {"tfidf_weight": 0.5}, "calibration": {"temperature": "fit"},
                   "tags": {"enabled": True, "mode": "tfidf"}})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "stacked.yaml").write_text(yaml.safe_dump({**recipe, "blend": {"combine": "stack"}}))
    systems = [{"name": "tfidf_logreg", "kind": "tfidf_logreg"},
               {"name": "tuned", "kind": "finetuned", "recipe": str(tmp_path / "recipe.yaml")},
               {"name": "stacked", "kind": "finetuned", "recipe": str(tmp_path / "stacked.yaml")}]
    assert main(["--config", str(_config(tmp_path, data, systems, seeds=[0]))]) == 0
    report = json.loads((tmp_path / "out" / "cv.json").read_text())
    assert list(report["summary"]) == ["tfidf_logreg", "tuned", "tuned (network alone)", "stacked",
                                       "stacked (network alone)"]
    # The blend sweep's `stack` row, from the stacked system's network and TF-IDF scores, is what
    # cross-validating the stacked recipe gave: same fit, same threshold, fold run by fold run.
    from train.benchmarks import blend_sweep

    sweep = blend_sweep.sweep(blend_sweep.load_predictions(tmp_path / "out" / "predictions.csv"),
                              "stacked (network alone)", "tfidf_logreg", weights=(0.0, 1.0))
    expected = sorted((r for r in report["runs"] if r["system"] == "stacked"), key=lambda r: (r["seed"], r["fold"]))
    for got, run in zip(sweep["weights"]["stack"], expected, strict=True):
        assert got["auroc"] == pytest.approx(run["auroc"], abs=1e-6) and got["f1"] == pytest.approx(run["f1"])
    blended = {r["fold"]: r for r in report["runs"] if r["system"] == "tuned"}
    alone = {r["fold"]: r for r in report["runs"] if r["system"] == "tuned (network alone)"}
    assert sorted(alone) == sorted(blended) == [0, 1, 2]
    assert sum(r["n"] for r in alone.values()) == len(rows)
    # Same training, different scores: the blend moves the ranking on at least one fold.
    assert any(alone[k]["auroc"] != blended[k]["auroc"] for k in alone)
    assert "| tuned (network alone) |" in (tmp_path / "out" / "cv.md").read_text()
    folder = tmp_path / "out" / "systems" / "tuned" / "seed0" / "fold0" / "model"
    assert json.loads((folder / "outreach_guard.json").read_text())["tags"] is not None  # trained with its tags


def test_a_recipe_with_tags_on_rows_without_tag_lists_trains_without_them(tiny_base, tmp_path, caplog):
    from conftest import tiny_recipe

    data, rows = _corpus(tmp_path)
    write_jsonl(data, [{k: v for k, v in r.items() if k != "tactics"} for r in rows])
    recipe = tiny_recipe(tiny_base, {s: tmp_path / f"never_read_{s}.jsonl" for s in ("train", "validation", "test")},
                         num_train_epochs=1)
    recipe.update({"tags": {"enabled": True, "mode": "tfidf"}})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    systems = [{"name": "tfidf_logreg", "kind": "tfidf_logreg"},
               {"name": "tuned", "kind": "finetuned", "recipe": str(tmp_path / "recipe.yaml")}]
    with caplog.at_level("WARNING", logger="train.benchmarks"):
        assert main(["--config", str(_config(tmp_path, data, systems, seeds=[0]))]) == 0
    assert "has no 'tactics' column" in caplog.text
    report = json.loads((tmp_path / "out" / "cv.json").read_text())
    assert sum(r["n"] for r in report["runs"] if r["system"] == "tuned") == len(rows)
