import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_rows, write_jsonl
from infer import Classifier
from infer.io import InputError
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
