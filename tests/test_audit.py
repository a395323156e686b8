"""The corpus's shortcut audit: the benchmark's TF-IDF baseline on each held-out split."""

import numpy as np
import pytest

from conftest import make_corpus, write_jsonl
from train.benchmarks.baselines import TfidfLogReg
from train.corpus.audit import main, render, run_audit
from train.evaluation.metrics import binary_metrics

SPLITS = {"train": 60, "validation": 10, "test": 30, "test_authors": 20}


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(SPLITS, seed=5, flip=0.2)


@pytest.fixture(scope="module")
def audited(corpus):
    return run_audit(corpus, top=5, seed=0)


def test_audit_figures_are_the_tfidf_baselines_on_each_held_out_split(corpus, audited):
    train = [r for r in corpus if r["split"] == "train"]
    model = TfidfLogReg(["benign", "grooming"], seed=0).fit([r["text"] for r in train],
                                                             [int(r["label"] == "grooming") for r in train])
    assert audited["train_rows"] == 60 and audited["C"] == model.regularisation
    assert audited["top_features"] == model.top_features(5)
    assert list(audited["splits"]) == ["test", "test_authors"]  # validation is not a held-out split
    for split, expected_rows in (("test", 30), ("test_authors", 20)):
        held = [r for r in corpus if r["split"] == split]
        scores = model.predict_proba([r["text"] for r in held])[:, 1]
        y = np.array([r["label"] == "grooming" for r in held], dtype=int)
        got = audited["splits"][split]
        assert got["rows"] == expected_rows
        assert got["metrics"] == binary_metrics(y, scores, 0.5)
        hard_negative = np.array([r["hard"] and r["label"] == "benign" for r in held])
        assert got["hard_negative_fpr"] == pytest.approx((scores[hard_negative] >= 0.5).mean())
    # The flipped labels keep the figures informative (not all perfect).
    assert audited["splits"]["test"]["metrics"]["f1"] < 1.0


def test_a_split_without_hard_negatives_reports_none():
    rows = [dict(r, hard=False) for r in make_corpus({"train": 40, "test": 10}, seed=2)]
    result = run_audit(rows, top=3)
    assert list(result["splits"]) == ["test"] and result["splits"]["test"]["hard_negative_fpr"] is None
    assert "| false-positive rate on hard negatives | n/a |" in render(result, "grooming", "cmd")


def test_command_prints_the_table_and_writes_it(corpus, audited, tmp_path, capsys):
    data = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    report = tmp_path / "audit.md"
    assert main(["--data", str(data), "--top", "5", "--output", str(report)]) == 0
    out = capsys.readouterr().out
    assert out == report.read_text() + "\n"  # printed, and written as it was printed
    assert out.startswith(f"Produced by `python -m train.corpus audit --data {data} --top 5 --output {report}`")
    assert "| metric | `test` (30 rows) | `test_authors` (20 rows) |" in out
    test, authors = (audited["splits"][s]["metrics"] for s in ("test", "test_authors"))
    assert f"| f1 | {test['f1']:.3f} | {authors['f1']:.3f} |" in out
    assert f"| auroc | {test['auroc']:.3f} | {authors['auroc']:.3f} |" in out
    strongest = audited["top_features"]["grooming"][0]
    assert f"| 1 | {strongest[0]} | {strongest[1]} |" in out
    assert "trained on 60 `train` rows" in out


def test_command_exits_2_on_unreadable_data(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'missing.jsonl'}: no such file"]
    no_split = write_jsonl(tmp_path / "nosplit.jsonl", [{"text": "hello there", "label": "benign"}])
    assert main(["--data", str(no_split)]) == 2
    assert "no required column 'split'" in capsys.readouterr().err


def test_a_csv_corpus_audits_like_its_jsonl(corpus, audited, tmp_path, capsys):
    """CSV cells are strings: ``hard`` reads "True"/"False", and "False" is not a hard negative."""
    import csv

    path = tmp_path / "corpus.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(corpus[0]))
        writer.writeheader()
        writer.writerows(corpus)
    assert main(["--data", str(path), "--top", "5"]) == 0
    from_csv = capsys.readouterr().out.splitlines()
    assert main(["--data", str(write_jsonl(tmp_path / "corpus.jsonl", corpus)), "--top", "5"]) == 0
    from_jsonl = capsys.readouterr().out.splitlines()
    assert from_csv[1:] == from_jsonl[1:]  # all but the line naming the file
    fpr = [audited["splits"][s]["hard_negative_fpr"] for s in ("test", "test_authors")]
    assert f"| false-positive rate on hard negatives | {fpr[0]:.3f} | {fpr[1]:.3f} |" in from_csv
