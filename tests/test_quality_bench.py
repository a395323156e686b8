"""The quality benchmark end to end on a tiny config: systems x datasets, trained and loaded models."""

import csv
import json
import tempfile

import numpy as np
import pytest
import yaml
from sklearn import metrics as skm

from conftest import make_corpus, tiny_recipe, write_jsonl
from infer import Classifier, ModelManifest
from infer.io import readers
from infer.io.readers import iter_records
from train.benchmarks.quality import SYSTEM_KINDS, load_bench_config, main

SPLITS = {"train": 40, "validation": 12, "test": 16, "test_authors": 10}


def _config(tmp_path, data, systems, datasets=2):
    config = {
        "output_dir": str(tmp_path / "not_used"), "seed": 0, "bootstrap_resamples": 20, "plots": False,
        "labels": ["benign", "grooming"], "positive_label": "grooming",
        "shipped_corpus": {"path": str(data), "split_column": "split", "train_split": "train",
                           "validation_split": "validation"},
        "datasets": [
            {"name": "synthetic", "path": str(data), "split_column": "split", "eval_split": "test",
             "train_split": "train", "validation_split": "validation", "slice_by": ["hard"]},
            # No training split of its own: systems train on the shipped corpus's.
            {"name": "authors", "path": str(data), "split_column": "split", "eval_split": "test_authors"},
        ],
        "systems": systems,
    }
    config["datasets"] = config["datasets"][:datasets]
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_systems_by_datasets_with_trained_and_loaded_models(tiny_base, trained_run, tmp_path, monkeypatch):
    corpus = make_corpus(SPLITS, seed=9, flip=0.1)
    data = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    # The harness trains on the rows it holds: the recipe's own files are never read.
    recipe = tiny_recipe(tiny_base, {split: tmp_path / f"never_read_{split}.jsonl"
                                     for split in ("train", "validation", "test")}, num_train_epochs=1)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    systems = [{"name": "keyword_rules", "kind": "keyword_rules"},
               {"name": "tfidf_logreg", "kind": "tfidf_logreg"},
               {"name": "harness_tuned", "kind": "finetuned", "recipe": str(tmp_path / "recipe.yaml")},
               {"name": "loaded", "kind": "finetuned", "model": str(trained_run.model_dir)}]
    cfg = _config(tmp_path, data, systems)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where any temporary file would go
    read = set()  # every file the one reader opens

    def recording(path, *args, **kwargs):
        read.add(str(path))
        return iter_records(path, *args, **kwargs)

    monkeypatch.setattr(readers, "iter_records", recording)
    out = tmp_path / "bench"

    assert main(["--config", str(cfg), "--output-dir", str(out)]) == 0

    for name in ("benchmark.md", "benchmark.csv", "benchmark.json"):
        assert (out / name).is_file(), name
    table = list(csv.DictReader(open(out / "benchmark.csv", newline="")))
    cells = json.loads((out / "benchmark.json").read_text())["cells"]
    pairs = [(s["name"], d) for d in ("synthetic", "authors") for s in systems]
    assert [(r["system"], r["dataset"]) for r in table] == pairs
    assert [(c["system"], c["dataset"]) for c in cells] == pairs
    cell = {(c["system"], c["dataset"]): c for c in cells}
    n_eval = {"synthetic": SPLITS["test"], "authors": SPLITS["test_authors"]}
    assert all(c["n"] == n_eval[c["dataset"]] for c in cells)
    md = (out / "benchmark.md").read_text()
    assert f"python -m train.benchmarks --config {cfg} --output-dir {out}" in md
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + len(pairs)  # header + one row per cell

    # A loaded model names the data its manifest records; it was not trained here.
    recorded = trained_run.manifest.provenance["data"]
    assert recorded and str(trained_run.model_dir) in cell["loaded", "synthetic"]["trained_on"]
    assert f"trained on `{recorded}`" in cell["loaded", "synthetic"]["trained_on"]
    assert cell["loaded", "synthetic"]["training_rows"] is None
    assert cell["loaded", "synthetic"]["threshold"] == trained_run.manifest.threshold
    test_rows = [r for r in corpus if r["split"] == "test"]
    scores = Classifier.from_pretrained(trained_run.model_dir).predict_proba([r["text"] for r in test_rows])[:, 1]
    assert cell["loaded", "synthetic"]["auroc"] == pytest.approx(
        skm.roc_auc_score([r["label"] == "grooming" for r in test_rows], scores), abs=1e-6)

    # Systems that train do so on the training split only, once per training source.
    for system in ("tfidf_logreg", "harness_tuned"):
        assert cell[system, "synthetic"]["training_rows"] == SPLITS["train"]
        assert cell[system, "synthetic"]["trained_on"] == "synthetic `train` split"
        assert cell[system, "authors"]["training_rows"] == SPLITS["train"]
        assert cell[system, "authors"]["trained_on"] == "shipped corpus `train` split (dataset has no training split)"
    assert cell["keyword_rules", "synthetic"]["trained_on"] == "none (hand-written rules)"
    assert [r["training_rows"] for r in table if r["system"] == "harness_tuned"] == [str(SPLITS["train"])] * 2
    runs = out / "systems" / "harness_tuned"
    assert [p.name for p in runs.iterdir()] == ["synthetic"]  # the same rows: one fit serves both datasets
    manifest = ModelManifest.load(runs / "synthetic" / "model")
    assert manifest.provenance["data"] == "rows given to train()"
    assert manifest.provenance["training_rows"] == SPLITS["train"]
    assert manifest.threshold == cell["harness_tuned", "synthetic"]["threshold"]

    for dataset in ("synthetic", "authors"):
        for system in systems:
            saved = json.loads((out / dataset / system["name"] / "metrics.json").read_text())
            assert saved["n"] == n_eval[dataset] and saved["system"] == system["name"]
    assert set(json.loads((out / "synthetic" / "tfidf_logreg" / "metrics.json").read_text())["slices"]) == {"hard"}
    # No temporary data files: not in the run folder, not in the temporary directory.
    assert not list(out.rglob("*.jsonl")) and [p.name for p in out.rglob("*.csv")] == ["benchmark.csv"]
    assert not [p for p in scratch.rglob("*") if p.is_file()]
    assert read == {str(data)}  # every row the systems trained on came from the corpus, in memory


def test_embedding_baseline_on_a_local_encoder(tiny_base, tmp_path):
    from train.benchmarks.baselines import EmbeddingLogReg, SentenceEmbedder

    corpus = make_corpus({"train": 30, "test": 10}, seed=4, flip=0.2)
    data = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    systems = [{"name": "embedding", "kind": "embedding_logreg", "model": str(tiny_base), "max_length": 32}]
    cfg = _config(tmp_path, data, systems, datasets=1)
    out = tmp_path / "bench"
    assert main(["--config", str(cfg), "--output-dir", str(out)]) == 0
    [cell] = json.loads((out / "benchmark.json").read_text())["cells"]
    assert (cell["system"], cell["dataset"], cell["n"], cell["training_rows"]) == ("embedding", "synthetic", 10, 30)
    saved = json.loads((out / "synthetic" / "embedding" / "metrics.json").read_text())
    assert saved["threshold_source"] == "default 0.5 (no validation split)" and cell["threshold"] == 0.5

    # The same frozen encoder and logistic regression, fitted here, give the same figures.
    embedder = SentenceEmbedder(str(tiny_base), max_length=32)
    train, test = ([r for r in corpus if r["split"] == s] for s in ("train", "test"))
    vectors = embedder.embed([r["text"] for r in test])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    model = EmbeddingLogReg(["benign", "grooming"], embedder, seed=0).fit(
        [r["text"] for r in train], [int(r["label"] == "grooming") for r in train])
    scores = model.predict_proba([r["text"] for r in test])[:, 1]
    y = [r["label"] == "grooming" for r in test]
    assert cell["auroc"] == pytest.approx(skm.roc_auc_score(y, scores))


def test_config_errors_exit_2(tmp_path, capsys):
    data = write_jsonl(tmp_path / "corpus.jsonl", make_corpus({"train": 10, "test": 4}, seed=1))
    bad_kind = _config(tmp_path, data, [{"name": "x", "kind": "magic"}])
    assert main(["--config", str(bad_kind)]) == 2
    assert f"kind must be one of {SYSTEM_KINDS}" in capsys.readouterr().err
    both = _config(tmp_path, data, [{"name": "x", "kind": "finetuned", "model": "m", "recipe": "r.yaml"}])
    with pytest.raises(ValueError, match="either `model`"):
        load_bench_config(both)
    missing = _config(tmp_path, tmp_path / "nope.jsonl", [{"name": "k", "kind": "keyword_rules"}])
    assert main(["--config", str(missing), "--output-dir", str(tmp_path / "o")]) == 2
    assert f"error: {tmp_path / 'nope.jsonl'}: no such file" in capsys.readouterr().err


def test_average_and_network_only_systems(trained_run, tmp_path):
    from infer.blend import apply_temperature
    from train.benchmarks.quality import Bench
    from train.evaluation.threshold import select_threshold

    corpus = make_corpus(SPLITS, seed=4, flip=0.1)
    data = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    systems = [{"name": "tfidf_logreg", "kind": "tfidf_logreg"},
               {"name": "loaded", "kind": "finetuned", "model": str(trained_run.model_dir)},
               {"name": "network", "kind": "finetuned", "model": str(trained_run.model_dir), "network_only": True},
               {"name": "both", "kind": "average", "members": ["tfidf_logreg", "loaded"], "weights": [1, 3]}]
    config = load_bench_config(_config(tmp_path, data, systems, datasets=1))
    bench = Bench(config)
    dataset = config.datasets[0]
    scorers = {s.name: bench.scorer(s, dataset) for s in config.systems}
    rows = [r for r in corpus if r["split"] == "test"]
    texts = [r["text"] for r in rows]
    expected = 0.25 * scorers["tfidf_logreg"].predict_proba(texts) + 0.75 * scorers["loaded"].predict_proba(texts)
    np.testing.assert_allclose(scorers["both"].predict_proba(texts), expected, atol=1e-6)
    validation = [r for r in corpus if r["split"] == "validation"]
    y_val = np.array([r["label"] == "grooming" for r in validation])
    val_probs = scorers["both"].predict_proba([r["text"] for r in validation])
    assert scorers["both"].task.threshold == pytest.approx(select_threshold(y_val, val_probs[:, 1]))
    clf = Classifier.from_pretrained(trained_run.model_dir)
    np.testing.assert_allclose(scorers["network"].predict_proba(texts),
                               apply_temperature(clf.model_proba(texts), clf.manifest.temperature), atol=1e-6)
    assert "network only" in scorers["network"].trained_on


def test_an_average_of_systems_not_yet_listed_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "corpus.jsonl", make_corpus(SPLITS, seed=4))
    systems = [{"name": "both", "kind": "average", "members": ["tfidf_logreg", "keyword_rules"]},
               {"name": "tfidf_logreg", "kind": "tfidf_logreg"}, {"name": "keyword_rules", "kind": "keyword_rules"}]
    with pytest.raises(ValueError, match="listed before"):
        load_bench_config(_config(tmp_path, data, systems))


def test_a_blended_system_and_its_network_alone_share_one_network_pass_per_text_list():
    from train.benchmarks.quality import _memoised

    calls = []

    def model_proba(texts):
        calls.append(list(texts))
        return np.array([[1 - len(t) / 10, len(t) / 10] for t in texts])

    cached = _memoised(model_proba)
    a, b = ["ab", "abc"], ["a"]
    first = cached(a)
    np.testing.assert_allclose(cached(list(a)), first)  # an equal list: no second pass
    assert calls == [a]
    with pytest.raises(ValueError):
        first[0, 0] = 5.0  # read-only: one caller cannot change what the next one gets
    cached(b)
    cached(["abc", "ab"])  # another order is another list
    assert calls == [a, b, ["abc", "ab"]]
    for i in range(10):  # bounded: the oldest is dropped
        cached([str(i)])
    cached(a)
    assert calls[-1] == a and len(calls) == 14
