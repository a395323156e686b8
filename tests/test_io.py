"""Readers and writers under arbitrary input: no exception escapes, one output row per input row."""

import csv
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infer import Classifier
from infer.io import InputError, read_rows
from infer.score import score_file

STATUSES = {"ok", "empty_line", "invalid_utf8", "malformed_json", "missing_text", "null_text", "not_a_string",
            "empty_text", "bad_csv_row", "model_error"}

# Strings with what breaks naive code: unpaired surrogates, NUL, invisible and bidi characters.
nasty_text = st.text(st.characters() | st.sampled_from(["\ud800", "\udfff", "\x00", "\u200b", "\u202e", "\r", '"']))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | nasty_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


def _encode(obj, ascii_only: bool) -> bytes:
    # ensure_ascii=False with a surrogate gives bytes that are not UTF-8: an invalid_utf8 row.
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


jsonl_lines = st.one_of(
    st.builds(lambda i, t, a: _encode({"id": i, "text": t}, a), st.integers() | nasty_text, json_values, st.booleans()),
    st.builds(lambda t, a: _encode({"text": t}, a), nasty_text, st.booleans()),
    st.builds(_encode, json_values, st.booleans()),
    st.binary(max_size=40),
    nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
).map(lambda line: line.replace(b"\n", b" "))


@pytest.fixture(scope="module")
def clf(tiny_model):
    return Classifier.from_pretrained(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("io_properties")


def _rows_of(path):
    if str(path).endswith(".csv"):
        return list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _check_output(out_rows, n_input_rows):
    assert len(out_rows) == n_input_rows
    for r in out_rows:
        assert r["status"] in STATUSES
        assert (r["status"] == "ok") == (r["label"] not in (None, ""))
        if r["status"] != "ok":
            assert r["error"].startswith("row ")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(jsonl_lines, max_size=8), trailing_newline=st.booleans(),
       out_ext=st.sampled_from(["jsonl", "csv"]))
def test_any_jsonl_lines_give_one_output_row_each(clf, work, lines, trailing_newline, out_ext):
    src, out = work / "in.jsonl", work / f"out.{out_ext}"
    content = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    src.write_bytes(content)
    n_lines = content.count(b"\n") + (0 if content.endswith(b"\n") or not content else 1)
    try:
        rows = list(read_rows(src))
    except InputError as err:  # only when the first JSON object lacks the text field
        assert "no text column 'text'" in str(err)
        return
    assert [r.row for r in rows] == list(range(1, n_lines + 1))
    score_file(clf, src, out, chunk_size=3, progress=False)
    _check_output(_rows_of(out), n_lines)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.lists(st.text(max_size=20), max_size=4), max_size=8))
def test_any_csv_records_give_one_output_row_each(clf, work, records):
    src, out = work / "in.csv", work / "out.jsonl"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["id", "text"], *records])
    score_file(clf, src, out, chunk_size=3, progress=False)
    got = _rows_of(out)
    _check_output(got, len(records))
    for record, row in zip(records, got):
        if len(record) != 2:
            assert row["status"] == ("empty_line" if not record else "bad_csv_row")
        else:
            assert row["id"] == record[0]
            assert row["status"] in ("ok", "empty_text")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8))
def test_any_csv_bytes_never_raise(clf, work, lines):
    src, out = work / "raw.csv", work / "raw_out.jsonl"
    src.write_bytes(b"id,text\n" + b"".join(line + b"\n" for line in lines))
    rows = list(read_rows(src))
    assert [r.row for r in rows] == list(range(1, len(rows) + 1))
    if not any(b'"' in line or b"\r" in line for line in lines):
        assert len(rows) == len(lines)  # without quotes or CRs, every line is one record
    score_file(clf, src, out, progress=False)
    _check_output(_rows_of(out), len(rows))


def test_byte_order_marks_are_ignored(clf, tmp_path):
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "hello there"}\n')
    assert [r.text for r in read_rows(jsonl)] == ["hello there"]
    table = tmp_path / "bom.csv"
    table.write_bytes(b"\xef\xbb\xbfid,text\nx1,hello there\n")
    assert [(r.id, r.text) for r in read_rows(table)] == [("x1", "hello there")]


def test_control_characters_and_deep_nesting(clf, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": "raw", "text": "tab\there, bell\x07 and NUL\x00 inside"}\n'
                    + b"[" * 100_000 + b"\n"
                    + b'{"id": "ctl", "text": "\\u0000\\u0007\\u001b"}\n')
    out = tmp_path / "out.jsonl"
    score_file(clf, src, out, progress=False)
    assert [(r["id"], r["status"]) for r in _rows_of(out)] == [("raw", "ok"), (2, "malformed_json"),
                                                               ("ctl", "empty_text")]


def test_a_headerless_csv_is_a_whole_input_error_that_does_not_repeat_the_text(tmp_path):
    # Other whole-input errors (a missing file, a directory, a missing column ...): test_reliability.py.
    headerless = tmp_path / "nohead.csv"
    message = "Dear Anna, let us keep this between us and continue on Signal tomorrow"
    headerless.write_text(f'1,"{message}"\n')
    with pytest.raises(InputError, match="does the file start with a header row") as err:
        read_rows(headerless)
    assert message not in str(err.value) and f"{len(message)}-character name" in str(err.value)
