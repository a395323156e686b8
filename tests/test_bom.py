"""A CSV that starts with a byte-order mark (spreadsheet exports) reads like any other, in every
command that reads files. (Training on one: tests/test_recipes.py.)

Each command runs on the same rows written twice, with and without the mark, and must give the
same result. ``text`` is the first column, so a mark left on the header would hide it."""

import csv
import json

import pytest
import yaml

from conftest import make_corpus

FIELDS = ["text", "id", "label", "tactics", "family", "hard", "stage", "source", "author", "split"]
SPLITS = {"train": 40, "validation": 12, "test": 16, "test_authors": 8}


@pytest.fixture(scope="module")
def rows():
    return make_corpus(SPLITS, seed=13, flip=0.2)


def _write_csv(path, rows, encoding):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def score(path, out, model, rows, capsys):
    from infer.cli import main

    target = out / "scores.jsonl"
    assert main(["--model", str(model), "--input", str(path), "--output", str(target), "--device", "cpu",
                 "--no-progress"]) == 0
    got = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in got] == [r["id"] for r in rows]  # the id column was found
    assert {r["status"] for r in got} == {"ok"}
    return target.read_text()


def evaluate(path, out, model, rows, capsys):
    from train.evaluation.evaluate import main

    assert main(["--model", str(model), "--data", str(path), "--split", "test", "--slice-by", "family",
                 "--device", "cpu", "--output-dir", str(out / "eval"), "--no-plots", "--bootstrap-resamples",
                 "10"]) == 0
    result = json.loads((out / "eval" / "metrics.json").read_text())
    assert result["n"] == SPLITS["test"]
    errors = result["top_errors"]["false_positives"] + result["top_errors"]["false_negatives"]
    assert {e["id"] for e in errors} <= {r["id"] for r in rows}
    return {k: result[k] for k in ("n", "overall", "slices", "top_errors", "confidence_intervals")}


def validate(path, out, model, rows, capsys):
    from train.corpus.validate import main

    code = main([str(path)])
    err = capsys.readouterr().err
    # Every field was found (CSV cells are strings, which the schema's list and bool fields reject).
    assert code == 1 and "missing field" not in err and "unknown fields" not in err
    assert "'tactics' must be list" in err
    return code, err


def audit(path, out, model, rows, capsys):
    from train.corpus.audit import main

    assert main(["--data", str(path), "--top", "5"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "| metric | `test` (16 rows) | `test_authors` (8 rows) |" in printed
    return printed[1:]  # the first line names the file


def bench(path, out, model, rows, capsys):
    from train.benchmarks.quality import main

    source = {"path": str(path), "split_column": "split", "train_split": "train", "validation_split": "validation"}
    config = {"seed": 0, "bootstrap_resamples": 10, "labels": ["benign", "grooming"], "positive_label": "grooming",
              "shipped_corpus": source, "datasets": [{"name": "csv", "eval_split": "test", **source}],
              "systems": [{"name": "keyword_rules", "kind": "keyword_rules"},
                          {"name": "tfidf_logreg", "kind": "tfidf_logreg"}]}
    (out / "bench.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", str(out / "bench.yaml"), "--output-dir", str(out / "bench")]) == 0
    cells = json.loads((out / "bench" / "benchmark.json").read_text())["cells"]
    assert [(c["system"], c["n"]) for c in cells] == [("keyword_rules", 16), ("tfidf_logreg", 16)]
    assert cells[1]["training_rows"] == SPLITS["train"]
    return cells


def robustness(path, out, model, rows, capsys):
    from train.evaluation.robustness import main

    assert main(["--model", str(model), "--data", str(path), "--split", "test", "--device", "cpu", "--output",
                 str(out / "robustness.json")]) == 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["rows"] == SPLITS["test"]
    report.pop("data")
    return report


def throughput_corpus(path, out, model, rows, capsys):
    from train.benchmarks.throughput import load_corpus

    loaded = load_corpus(path)
    assert [r["text"] for r in loaded] == [r["text"] for r in rows] and list(loaded[0]) == FIELDS
    return loaded


COMMANDS = [score, evaluate, validate, audit, bench, robustness, throughput_corpus]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
def test_a_byte_order_mark_changes_nothing(command, rows, tiny_model, tmp_path, capsys):
    results = []
    for encoding in ("utf-8", "utf-8-sig"):
        path = _write_csv(tmp_path / encoding / "corpus.csv", rows, encoding)
        assert path.read_bytes().startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
        results.append(command(path, path.parent, tiny_model, rows, capsys))
        capsys.readouterr()
    plain, marked = results
    assert marked == plain
