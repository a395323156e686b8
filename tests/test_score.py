import csv
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_rows, write_jsonl
from infer import Classifier
from infer.io import InputError, read_rows
from infer.score import score_file


@pytest.fixture(scope="module")
def clf(tiny_model):
    return Classifier.from_pretrained(tiny_model, device="cpu")


def _write_csv(path, rows, fields=("id", "text")):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _write_parquet(path, rows):
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}), path)
    return path


def read_output(path):
    if str(path).endswith(".jsonl"):
        return [json.loads(line) for line in open(path)]
    if str(path).endswith(".csv"):
        out = list(csv.DictReader(open(path, newline="")))
        for r in out:
            r["probs"] = json.loads(r["probs"]) if r["probs"] else None
            r["score"] = float(r["score"]) if r["score"] else None
        return out
    out = pq.read_table(path).to_pylist()
    for r in out:
        r["probs"] = dict(r["probs"]) if r["probs"] is not None else None
    return out


@pytest.mark.parametrize("in_ext", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("out_ext", ["jsonl", "csv", "parquet"])
def test_every_format_pair_keeps_rows_ids_and_order(clf, tmp_path, in_ext, out_ext):
    rows = make_rows(37, seed=7)
    src = {"jsonl": write_jsonl, "csv": _write_csv, "parquet": _write_parquet}[in_ext](tmp_path / f"in.{in_ext}", rows)
    out = tmp_path / f"out.{out_ext}"
    counts = score_file(clf, src, out, chunk_size=10, progress=False)
    assert counts == {"ok": 37}
    got = read_output(out)
    assert [str(r["id"]) for r in got] == [r["id"] for r in rows]
    expected = clf.predict([r["text"] for r in rows])
    for r, e in zip(got, expected):
        assert r["label"] == e.label and r["status"] == "ok"
        assert r["score"] == pytest.approx(e.score, abs=1e-6)
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-5)


def test_ids_are_generated_when_absent_and_columns_configurable(clf, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"body": f"message number {i}"} for i in range(5)])
    out = tmp_path / "out.jsonl"
    score_file(clf, src, out, text_column="body", id_column="msg_id", progress=False)
    assert [r["id"] for r in read_output(out)] == [1, 2, 3, 4, 5]


def test_bad_rows_get_error_records_and_do_not_stop_the_job(clf, tmp_path):
    src = tmp_path / "in.jsonl"
    with open(src, "wb") as fh:
        fh.write(b'{"id": "a", "text": "a normal message"}\n')
        fh.write(b'{"id": "b", "text": ""}\n')
        fh.write(b'{"id": "c", "text": null}\n')
        fh.write(b'{"id": "d", "text": 42}\n')
        fh.write(b'{"id": "e", "text": "broken\n')
        fh.write(b'{"id": "f", "text": "caf\xe9 latin-1"}\n')
        fh.write(b'{"id": "g", "text": "\\u200b \\u200d"}\n')
        fh.write(b'{"id": "h", "text": "another normal message"}\n')
    out = tmp_path / "out.jsonl"
    counts = score_file(clf, src, out, progress=False)
    got = read_output(out)
    assert [r["status"] for r in got] == ["ok", "empty_text", "null_text", "not_a_string", "malformed_json",
                                          "invalid_utf8", "empty_text", "ok"]
    assert [r["id"] for r in got] == ["a", "b", "c", "d", 5, 6, "g", "h"]
    assert all(r["label"] is None and r["score"] is None for r in got[1:-1])
    assert counts["ok"] == 2 and sum(counts.values()) == 8
    assert "broken" not in json.dumps(got)  # message text never appears in errors


def test_whole_input_errors_are_raised_before_scoring(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_rows(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown format"):
        read_rows(tmp_path / "x.txt")
    write_jsonl(tmp_path / "cols.jsonl", [{"id": 1, "body": "hi"}])
    with pytest.raises(InputError, match=r"no text column 'text'; columns present: \['body', 'id'\]"):
        read_rows(tmp_path / "cols.jsonl")
    _write_csv(tmp_path / "cols.csv", [{"id": 1, "body": "x"}], fields=("id", "body"))
    with pytest.raises(InputError, match="columns present"):
        read_rows(tmp_path / "cols.csv")


def test_cli_scores_without_training_packages(tiny_model, tmp_path):
    """Scoring must work where datasets, accelerate and evaluate are not installed.

    They are blocked the way a missing package looks to Python (``sys.modules[name] = None``
    makes ``find_spec`` return None and ``import`` fail). transformers >= 5 imports accelerate
    by itself when it *is* installed, so blocking is the only faithful check of ``infer``.
    """
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(12, seed=3))
    out = tmp_path / "out.csv"
    code = (
        "import sys\n"
        "for name in ('datasets', 'accelerate', 'evaluate', 'train', 'sklearn'):\n"
        "    sys.modules[name] = None\n"
        "from infer.cli import main\n"
        "sys.exit(main(['--model', sys.argv[1], '--input', sys.argv[2], '--output', sys.argv[3], '--no-progress']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tiny_model), str(src), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "ok=12" in res.stderr
    assert len(read_output(out)) == 12


def test_infer_never_imports_training_packages():
    import ast
    import pathlib

    banned = {"datasets", "accelerate", "evaluate", "train", "sklearn"}
    for path in (pathlib.Path(__file__).parents[1] / "infer").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not {n.split(".")[0] for n in names} & banned, f"{path} imports {names}"


def test_cli_reports_whole_input_errors_in_one_line(tiny_model, tmp_path):
    res = subprocess.run([sys.executable, "-m", "infer", "--model", str(tiny_model), "--input",
                          str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.jsonl'}: no such file"


def test_resume_skips_written_rows_and_drops_a_torn_line(clf, tmp_path):
    rows = make_rows(25, seed=11)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    full = tmp_path / "full.jsonl"
    score_file(clf, src, full, chunk_size=4, progress=False)
    lines = open(full).read().splitlines(keepends=True)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(lines[:9]) + lines[9][:17])  # 9 complete rows and a torn one
    counts = score_file(clf, src, partial, chunk_size=4, resume=True, progress=False)
    # Whole chunks are kept (rows 1-8); row 9 is scored again with its chunk, as before.
    assert counts["resumed"] == 8 and counts["ok"] == 25
    assert partial.read_text() == full.read_text()


def test_resume_refuses_output_of_another_input(clf, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(6, seed=1))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "someone-else", "label": "benign"}) + "\n")
    with pytest.raises(InputError, match="different input"):
        score_file(clf, src, out, resume=True, progress=False)
