"""The shipped corpus passes its validator, including the composition targets."""

import json
import pathlib
import subprocess
import sys

from train.corpus.validate import validate

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus.jsonl"


def test_shipped_corpus_is_valid_and_meets_targets():
    res = subprocess.run([sys.executable, "-m", "train.corpus", "validate", str(CORPUS), "--targets"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "OK: no problems found" in res.stdout


def test_sample_file_rows_come_from_the_test_split():
    test_ids = {json.loads(l)["id"] for l in open(CORPUS) if json.loads(l)["split"] == "test"}
    sample = [json.loads(l) for l in open(ROOT / "data" / "sample.jsonl")]
    assert sample and {r["id"] for r in sample} <= test_ids
    assert all(set(r) == {"id", "text"} for r in sample)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(i, text, family="f1", split="train", label="benign", author="w1", **kw):
    return {"id": f"x{i}", "text": text, "label": label, "tactics": [], "family": family, "hard": False,
            "stage": "first_contact", "source": "authored", "author": author, "split": split, **kw}


def test_validator_catches_each_kind_of_violation(tmp_path):
    long_a = "we would like to invite you to speak at our annual policy forum in Vienna this coming spring season"
    long_b = "Separately: we would like to invite you to speak at our annual policy forum in Vienna next year"
    rows = [
        _row(1, long_a),
        _row(2, long_b, family="f2", split="test"),                        # shares a 12-word run with x1
        _row(3, "Exactly the same words here, friend.", family="f3"),
        _row(4, "exactly the same words here friend", family="f3"),        # exact duplicate after normalising
        _row(5, "Family one leaks into validation here now.", split="validation"),
        _row(6, "Unknown label and tag here please.", family="f4", label="spam", tactics=["bribery"]),
        _row(7, "A generated row outside the train split.", family="f5", split="test", source="generated"),
        _row(1, "Same id as the first row, different text.", family="f6"),
        _row(8, "A held-out writer's message in the author split.", family="f7", split="test_authors",
             author="w2"),
        _row(9, "The same held-out writer also wrote a training row.", family="f8", author="w2"),
        _row(10, "A grooming row in a benign family breaks the family.", family="f6", label="grooming"),
        _row(11, "A row whose author field is blank is not attributed.", family="f9", author=" "),
    ]
    problems = validate(_write(tmp_path / "c.jsonl", rows), out=open("/dev/null", "w"))
    text = "\n".join(problems)
    assert "near-duplicate (shared 12-word run): x1 (train) and x2 (test)" in text
    assert "duplicate texts: x3 (train), x4 (train)" in text
    assert "family 'f1' appears in several splits" in text
    assert "label 'spam'" in text and "unknown or repeated tactics ['bribery']" in text
    assert "generated rows belong in train only" in text
    assert "duplicate id" in text
    assert "author 'w2' of the test_authors split also has 1 rows in other splits" in text
    assert "family 'f6' holds both labels" in text
    assert "(id 'x11'): author must be a non-empty id" in text


def test_validator_exit_codes(tmp_path, capsys):
    from train.corpus.validate import main

    good = _write(tmp_path / "good.jsonl", [_row(1, "A perfectly ordinary note about a job."),
                                            _row(2, "Another unrelated message about a conference.", family="f2")])
    bad = _write(tmp_path / "bad.jsonl", [_row(1, "x y z", label="other")])
    # In-process: the console script's own subprocess test is in tests/test_cli.py.
    assert main([str(good)]) == 0
    assert main([str(bad)]) == 1
    assert main([str(good), "--targets"]) == 1  # two rows miss every composition target
    assert main([str(tmp_path / "missing.jsonl")]) == 2  # the file itself cannot be read
    assert "error: " in capsys.readouterr().err
