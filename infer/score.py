"""Batch scoring of a file: stream rows in chunks, score, write in input order, resume.

Guarantees (see the README's "Reliability" section):

* every input row gets exactly one output row, in input order; a row that cannot be scored
  gets a ``status`` error code and an ``error`` message that names its row number, never its text;
* a job killed at any moment leaves complete rows followed by at most one cut-off line (no
  line terminator), and ``resume=True`` continues it into an output identical to an
  uninterrupted run: it drops the cut-off line, keeps whole chunks only and scores the rest
  with the same chunk boundaries, so every batch holds exactly the rows it held before.

Status codes: ``ok``; from reading the row: ``empty_line``, ``invalid_utf8``,
``malformed_json``, ``missing_text``, ``bad_csv_row`` (wrong field count or an unparseable
record); from its text: ``null_text``, ``not_a_string``, ``empty_text`` (nothing left after
normalisation); from the model: ``model_error`` (the row failed even when scored alone).
"""

from __future__ import annotations

import collections
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

from .classifier import Classifier
from .io import (InputRow, ResultWriter, detect_format, json_id, output_fields, read_rows, read_written_output,
                 skip_written)
from .text import normalize_text

logger = logging.getLogger(__name__)


def _error_row(row_id, status: str, error: str) -> dict:
    return {"id": row_id, "label": None, "score": None, "probs": None, "status": status, "error": error}


def score_rows(classifier: Classifier, rows: Iterable[InputRow], explain: bool = False) -> list[dict]:
    """Score one chunk; every input row yields exactly one output dict, in order. Models with a
    tag head add ``tactics`` and ``tags``; ``explain`` adds ``evidence`` (see ``infer.explain``)."""
    out: list[dict] = []
    todo: list[tuple[int, InputRow]] = []
    settings = classifier.manifest.text
    for row in rows:
        row_id = json_id(row.id)
        if row.error:
            out.append(_error_row(row_id, row.error, f"row {row.row}: {row.detail}"))
        elif row.text is None:
            out.append(_error_row(row_id, "null_text", f"row {row.row}: text is null"))
        elif not isinstance(row.text, str):
            out.append(_error_row(row_id, "not_a_string", f"row {row.row}: {not_a_string(row.text)}"))
        elif _is_blank(row.text, settings):
            out.append(_error_row(row_id, "empty_text", f"row {row.row}: text is empty after normalisation"))
        else:
            todo.append((len(out), row))
            out.append({"id": row_id})
    for (i, row), pred in zip(todo, _predict_each(classifier, [row for _, row in todo], explain)):
        if isinstance(pred, Exception):
            failure = f"row {row.row}: scoring failed ({type(pred).__name__})"
            out[i].update(_error_row(out[i]["id"], "model_error", failure))
        else:
            out[i].update(label=pred.label, score=pred.score, probs=pred.probs)
            out[i].update({k: v for k, v in (("tactics", pred.tactics), ("tags", pred.tags),
                                             ("evidence", pred.evidence)) if v is not None})
            out[i].update(status="ok", error=None)
    return out


def not_a_string(text) -> str:
    """The error detail of a text that is not a string (its type, never its value)."""
    return f"text is {type(text).__name__}, expected a string"


def _is_blank(text: str, settings) -> bool:
    """Nothing left after normalisation. Normalising a prefix never loses a visible character,
    so a huge message is checked on its first few thousand characters."""
    return not normalize_text(text[:4096], settings) and not normalize_text(text, settings)


def _predict_each(classifier: Classifier, rows: list[InputRow], explain: bool = False) -> list:
    """Predictions for ``rows``; if the batch fails, each row is retried alone so one bad row
    costs only itself. Rows that still fail come back as their exception. When every row of a
    batch fails on its own too, the model itself is broken and the error is raised."""
    if explain:
        from .explain import predict_with_evidence

        predict = lambda texts: predict_with_evidence(classifier, texts)  # noqa: E731
    else:
        predict = classifier.predict
    texts = [row.text for row in rows]
    try:
        return predict(texts) if texts else []
    except Exception as batch_error:  # noqa: BLE001 - isolate whatever the model raised
        results = []
        for row in rows:
            try:
                results.append(predict([row.text])[0])
            except Exception as err:  # noqa: BLE001
                logger.warning("row %d: scoring failed (%s)", row.row, type(err).__name__)
                results.append(err)
        if len(rows) > 1 and all(isinstance(r, Exception) for r in results):
            raise batch_error
        return results


def _chunks(rows: Iterator[InputRow], size: int) -> Iterator[list[InputRow]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_file(classifier: Classifier, input_path: str | Path, output_path: str | Path, *,
               text_column: str = "text", id_column: str | None = "id", input_format: str | None = None,
               output_format: str | None = None, chunk_size: int = 2048, resume: bool = False,
               progress: bool = True, explain: bool = False) -> collections.Counter:
    """Score ``input_path`` into ``output_path``; returns counts of output rows by status.

    Memory is bounded by ``chunk_size`` rows whatever the file size. Each chunk is written and
    flushed before the next is read. With ``resume=True`` (same input, same ``chunk_size``) an
    interrupted run continues after its last whole chunk; the counts then cover the whole output
    and ``counts["resumed"]`` says how many rows were kept from before. ``explain``: add
    ``evidence`` to every scored row (extra passes, see ``infer.explain``).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    rows = read_rows(input_path, text_column, id_column, input_format)  # whole-input errors raise here
    output_path = Path(output_path)
    out_fmt = detect_format(output_path, output_format)
    counts: collections.Counter = collections.Counter()
    fields = output_fields(tags=classifier.manifest.tags is not None, evidence=explain)
    append = False
    if resume and output_path.exists():
        written = read_written_output(output_path, out_fmt, chunk_size, fields)
        if written.rows:
            rows = skip_written(rows, written, output_path)
        # Drop the cut-off line and any rows past the last whole chunk, then append.
        os.truncate(output_path, written.kept_bytes)
        append = True
        counts.update(written.kept_counts)
        if written.kept:
            counts["resumed"] = written.kept
            logger.info("resuming: keeping %d rows already in %s", written.kept, output_path)
    bar = _progress(progress, counts["resumed"])
    with ResultWriter(output_path, out_fmt, append=append, fields=fields) as writer:
        for chunk in _chunks(rows, chunk_size):
            results = score_rows(classifier, chunk, explain)
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
