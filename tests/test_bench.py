import csv
import json
import pathlib

import pytest
import yaml

from conftest import make_rows, write_jsonl
from train.baselines import KeywordRules
from train.bench import load_bench_config, main
from train.eval_data import flatten_conversation

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_flatten_conversation_keeps_the_initiators_turns_in_order():
    messages = [{"idx": 2, "role": "initiator", "text": "third"}, {"idx": 0, "role": "initiator", "text": " first "},
                {"idx": 1, "role": "target", "text": "reply"}]
    assert flatten_conversation(messages, ["initiator"]) == "first\nthird"
    assert flatten_conversation(json.dumps(messages), ["initiator", "target"], joiner=" | ") == "first | reply | third"
    assert flatten_conversation([{"role": "target", "text": "x"}], ["initiator"]) == ""


def test_keyword_rules_need_two_tactic_categories():
    rules = KeywordRules(["benign", "grooming"], "grooming")
    one_cue = "Happy to continue on WeChat if that is easier for you."
    two_cues = "Let's continue on Telegram, and please keep this between us: no need to tell your employer."
    ordinary = "We are hiring a data engineer in Berlin, requisition 4411. Open to a call next week?"
    assert rules.categories(one_cue) == ["off_platform"]
    assert rules.categories(two_cues) == ["off_platform", "secrecy"]
    assert rules.categories(ordinary) == []
    probs = rules.predict_proba([one_cue, two_cues, ordinary])
    assert list(probs[:, 1] >= rules.threshold) == [False, True, False]
    assert probs[:, 1].tolist() == [0.5, 0.75, 0.0] and (probs.sum(1) == 1).all()
    # Normalisation first: invisible characters and look-alike letters do not hide a cue.
    assert rules.categories("T\u0435l\u0435gr\u200bam, k\u0435ep this between us") == ["off_platform", "secrecy"]
    with pytest.raises(ValueError, match="binary"):
        KeywordRules(["a", "b", "c"], "a")


def test_shipped_benchmark_config_loads():
    path = ROOT / "configs" / "bench.yaml"
    assert path.read_text().splitlines()[0] == "# python -m train.bench --config configs/bench.yaml"
    config = load_bench_config(path)
    names = {d.name: d for d in config.datasets}
    assert names["seconvo"].data.path == "../shared/external/seconvo/seconvo_partial.jsonl"
    assert names["seconvo"].data.format == "conversation" and names["seconvo"].train_split is None
    assert names["seconvo"].data.label_map == {"true": "grooming", "false": "benign"}
    assert names["shipped_test"].eval_split == "test" and names["shipped_test"].train_split == "train"
    assert {s.kind for s in config.systems} == {"keyword_rules", "tfidf_logreg", "embedding_logreg", "finetuned"}


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown top-level keys"),
    ({"systems": [{"name": "x", "kind": "magic"}]}, "kind must be one of"),
    ({"systems": [{"name": "x", "kind": "finetuned"}]}, "either `model`"),
    ({"datasets": [{"name": "d"}]}, "`path` is required"),
    ({"datasets": [{"name": "d", "path": "x.jsonl", "colour": 1}]}, "unknown keys"),
    ({"systems": [{"name": "x", "kind": "tfidf_logreg"}] * 2}, "unique"),
])
def test_bad_benchmark_configs_are_clear_errors(tmp_path, change, message):
    raw = {"shipped_corpus": {"path": "c.jsonl"}, "datasets": [{"name": "d", "path": "x.jsonl"}],
           "systems": [{"name": "k", "kind": "keyword_rules"}], **change}
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=message):
        load_bench_config(path)


# -- end to end on small fixtures ------------------------------------------------------------

def _fixtures(tmp_path):
    """A shipped-style corpus, a flat CSV with its own splits and other column names, and a
    conversation-format file with no training split."""
    corpus = []
    for split, n, seed in (("train", 40, 1), ("validation", 12, 2), ("test", 12, 3)):
        corpus += [dict(r, split=split) for r in make_rows(n, seed=seed, prefix=f"c{split}")]
    corpus_path = write_jsonl(tmp_path / "corpus.jsonl", corpus)

    flat_path = tmp_path / "flat.csv"
    with open(flat_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "msg", "cls", "part", "channel"])
        for split, n, seed in (("train", 32, 4), ("validation", 10, 5), ("test", 14, 6)):
            for i, r in enumerate(make_rows(n, seed=seed, prefix=f"f{split}")):
                # tokens that occur only in one split show which rows a system learned from
                text = r["text"] + (" zqxtrainonly" if split == "train" else " zqxtestonly" if split == "test" else "")
                w.writerow([r["id"], text, {"benign": "ok", "grooming": "bad"}[r["label"]], split,
                            "mail" if i % 2 else "chat"])

    conv = []
    for i, r in enumerate(make_rows(16, seed=7)):
        conv.append({"conversation_id": i, "is_malicious": r["label"] == "grooming", "scenario": "s" + str(i % 2),
                     "messages": [{"idx": 0, "speaker": "A", "role": "initiator", "text": r["text"]},
                                  {"idx": 1, "speaker": "B", "role": "target", "text": "Sounds interesting."}]})
    conv_path = write_jsonl(tmp_path / "conv.jsonl", conv)
    return corpus_path, flat_path, conv_path


def _config(tmp_path, corpus, flat, conv, systems):
    config = {
        "output_dir": str(tmp_path / "results"), "seed": 0, "bootstrap_resamples": 50, "plots": False,
        "labels": ["benign", "grooming"], "positive_label": "grooming",
        "shipped_corpus": {"path": str(corpus)},
        "datasets": [
            {"name": "flat", "path": str(flat), "text_column": "msg", "label_column": "cls", "id_column": "key",
             "split_column": "part", "label_map": {"ok": "benign", "bad": "grooming"}, "eval_split": "test",
             "train_split": "train", "validation_split": "validation", "slice_by": ["channel"]},
            {"name": "conv", "path": str(conv), "format": "conversation", "label_column": "is_malicious",
             "id_column": "conversation_id", "label_map": {True: "grooming", False: "benign"}, "slice_by": ["scenario"]},
        ],
        "systems": systems,
    }
    path = tmp_path / "bench.yaml"
    path.write_text("# python -m train.bench --config bench.yaml\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_benchmark_end_to_end(tiny_base, tiny_model, tmp_path):
    corpus, flat, conv = _fixtures(tmp_path)
    # The harness replaces the recipe's data with each training source.
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_base)}, "data": {"path": "replaced.jsonl"}, "text": {"max_length": 64},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-3, "seed": 7,
                     "report_to": "none", "use_cpu": True, "disable_tqdm": True}}))
    systems = [{"name": "keywords", "kind": "keyword_rules"},
               {"name": "tfidf", "kind": "tfidf_logreg"},
               {"name": "frozen", "kind": "embedding_logreg", "model": str(tiny_base), "max_length": 64},
               {"name": "loaded", "kind": "finetuned", "model": str(tiny_model)},
               {"name": "tuned", "kind": "finetuned", "recipe": str(recipe)}]
    cfg = _config(tmp_path, corpus, flat, conv, systems)
    out = main(["--config", str(cfg)])

    table = (out / "benchmark.md").read_text()
    assert table.index(f"python -m train.bench --config {cfg}") < table.index("| system | dataset |")
    rows = _read_csv(out / "benchmark.csv")
    assert [(r["system"], r["dataset"]) for r in rows] == [(s["name"], d) for d in ("flat", "conv") for s in systems]
    assert table.count("| flat |") == 5 and table.count("| conv |") == 5
    by = {(r["system"], r["dataset"]): r for r in rows}

    # Trained systems learn from the dataset's own training split, or from the shipped corpus
    # when it has none; the table says which.
    for system in ("tfidf", "frozen", "tuned"):
        assert by[system, "flat"]["trained_on"] == "flat `train` split" and by[system, "flat"]["training_rows"] == "32"
        assert by[system, "conv"]["trained_on"].startswith("shipped corpus `train` split")
        assert by[system, "conv"]["training_rows"] == "40"
    assert by["keywords", "flat"]["trained_on"] == "none (hand-written rules)"
    assert by["loaded", "conv"]["trained_on"].startswith(f"loaded `{tiny_model}`")
    assert "shipped corpus `train` split (dataset has no training split)" in table
    for source, n in (("flat", 32), ("shipped_corpus", 40)):
        model = out / "systems" / "tuned" / source / "model"
        assert json.loads((model / "metrics.json").read_text())["train"]["rows"] == n

    # Each cell's metrics.json holds the evaluated split only and matches the table.
    for (system, dataset), row in by.items():
        metrics = json.loads((out / dataset / system / "metrics.json").read_text())
        assert metrics["n"] == (14 if dataset == "flat" else 16) == int(row["n"])
        assert metrics["overall"]["f1"] == pytest.approx(float(row["f1"]))
        lo, hi = float(row["f1_ci_low"]), float(row["f1_ci_high"])
        assert lo <= float(row["f1"]) <= hi
        assert (out / dataset / system / "report.md").is_file()
        assert set(metrics["slices"]) == {"channel" if dataset == "flat" else "scenario"}
    # The synthetic classes differ in wording: bag-of-words learns them from 32 rows.
    assert float(by["tfidf", "flat"]["auroc"]) > 0.9


def test_trained_baselines_never_see_evaluation_rows_and_runs_repeat(tmp_path):
    from train.bench import Bench

    corpus, flat, conv = _fixtures(tmp_path)
    cfg = _config(tmp_path, corpus, flat, conv, [{"name": "keywords", "kind": "keyword_rules"},
                                                 {"name": "tfidf", "kind": "tfidf_logreg"}])
    config = load_bench_config(cfg)
    bench = Bench(config)
    scorer = bench.scorer(config.systems[1], config.datasets[0])
    vocabulary = scorer.predict_proba.__self__.pipeline[0].vocabulary_
    assert "zqxtrainonly" in vocabulary and "zqxtestonly" not in vocabulary
    # the fit for the shipped corpus is reused, but says why it applies
    shipped = bench.scorer(config.systems[1], config.datasets[1])
    assert shipped.training_rows == 40 and "no training split" in shipped.trained_on

    first = (main(["--config", str(cfg), "--output-dir", str(tmp_path / "a")]) / "benchmark.csv").read_text()
    second = (main(["--config", str(cfg), "--output-dir", str(tmp_path / "b")]) / "benchmark.csv").read_text()
    assert first == second
