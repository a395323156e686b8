"""Batch scoring of a file: stream rows in chunks, score, write in input order, resume."""

from __future__ import annotations

import collections
import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

from .io import InputError, InputRow, ResultWriter, detect_format, read_rows
from .model import Classifier
from .text import normalize_text

logger = logging.getLogger(__name__)


def _error_row(row_id, status: str, error: str) -> dict:
    return {"id": row_id, "label": None, "score": None, "probs": None, "status": status, "error": error}


def _json_id(value):
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def score_rows(classifier: Classifier, rows: Iterable[InputRow]) -> list[dict]:
    """Score one chunk; every input row yields exactly one output dict, in order."""
    out: list[dict | None] = []
    todo_index, todo_text = [], []
    settings = classifier.config.text
    for row in rows:
        row_id = _json_id(row.id)
        if row.error:
            out.append(_error_row(row_id, row.error, f"row {row.row}: {row.detail}"))
        elif row.text is None:
            out.append(_error_row(row_id, "null_text", f"row {row.row}: text is null"))
        elif not isinstance(row.text, str):
            out.append(_error_row(row_id, "not_a_string", f"row {row.row}: text is {type(row.text).__name__}, expected a string"))
        elif not normalize_text(row.text, settings):
            out.append(_error_row(row_id, "empty_text", f"row {row.row}: text is empty after normalisation"))
        else:
            todo_index.append(len(out))
            todo_text.append(row.text)
            out.append({"id": row_id})
    if todo_text:
        for i, pred in zip(todo_index, classifier.predict(todo_text)):
            out[i].update(label=pred.label, score=pred.score, probs=pred.probs, status="ok", error=None)
    return out


def _chunks(rows: Iterator[InputRow], size: int) -> Iterator[list[InputRow]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def completed_rows(output: Path, fmt: str) -> tuple[int, object]:
    """For ``--resume``: drop a torn last line, return (rows already written, last id written)."""
    if not output.exists():
        return 0, None
    if fmt == "parquet":
        raise InputError(f"{output}: --resume needs a JSONL or CSV output (Parquet cannot be appended to)")
    with open(output, "rb+") as fh:
        data = fh.read()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):  # a kill mid-write left a partial last row: drop it
            fh.truncate(cut)
            data = data[:cut]
    text = data.decode("utf-8")
    if fmt == "jsonl":
        lines = text.splitlines()
        return len(lines), (json.loads(lines[-1])["id"] if lines else None)
    records = list(csv.reader(text.splitlines(keepends=True)))[1:]
    return len(records), (records[-1][0] if records else None)


def score_file(classifier: Classifier, input_path: str | Path, output_path: str | Path, *,
               text_column: str = "text", id_column: str | None = "id", input_format: str | None = None,
               output_format: str | None = None, chunk_size: int = 2048, resume: bool = False,
               progress: bool = True) -> collections.Counter:
    """Score ``input_path`` into ``output_path``; returns counts of rows by status.

    Memory is bounded by ``chunk_size`` rows whatever the file size. Each chunk is written and
    flushed before the next is read, so after a crash ``resume=True`` skips what was written.
    """
    rows = read_rows(input_path, text_column, id_column, input_format)  # whole-input errors raise here
    output_path = Path(output_path)
    out_fmt = detect_format(output_path, output_format)
    skip, last_id = completed_rows(output_path, out_fmt) if resume else (0, None)
    counts: collections.Counter = collections.Counter()
    if skip:
        logger.info("resuming: %d rows already in %s", skip, output_path)
        for n, row in enumerate(rows, 1):
            if n == skip:
                if str(_json_id(row.id)) != str(last_id):
                    raise InputError(f"{output_path}: last written id {last_id!r} is not input row {skip}'s id "
                                     f"{row.id!r}; is this the output of a different input?")
                break
        counts["resumed"] = skip
    bar = _progress(progress, skip)
    with ResultWriter(output_path, out_fmt, append=bool(skip)) as writer:
        for chunk in _chunks(rows, chunk_size):
            results = score_rows(classifier, chunk)
            writer.write(results)
            counts.update(r["status"] for r in results)
            if bar is not None:
                bar.update(len(results))
    if bar is not None:
        bar.close()
    return counts


def _progress(enabled: bool, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=None, initial=initial, unit="rows", desc="scoring", file=sys.stderr,
                disable=os.environ.get("OUTREACH_GUARD_NO_PROGRESS") == "1")
