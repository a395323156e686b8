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
import csv
import dataclasses
import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

from .io import OUTPUT_FIELDS, InputError, InputRow, ResultWriter, detect_format, read_rows
from .model import Classifier
from .text import normalize_text

logger = logging.getLogger(__name__)


def _error_row(row_id, status: str, error: str) -> dict:
    return {"id": row_id, "label": None, "score": None, "probs": None, "status": status, "error": error}


def _json_id(value):
    """An id as it is written: JSON scalars pass, anything else becomes its string form."""
    if value is None or isinstance(value, (int, float, bool)):
        return value
    text = value if isinstance(value, str) else str(value)
    # Unpaired surrogates (a JSON "\ud800" escape) cannot be written as UTF-8: escape them.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _id_key(value) -> str:
    """How an id compares across formats (a CSV output holds every id as text)."""
    return "" if value is None else str(value)


def score_rows(classifier: Classifier, rows: Iterable[InputRow]) -> list[dict]:
    """Score one chunk; every input row yields exactly one output dict, in order."""
    out: list[dict] = []
    todo: list[tuple[int, InputRow]] = []
    settings = classifier.config.text
    for row in rows:
        row_id = _json_id(row.id)
        if row.error:
            out.append(_error_row(row_id, row.error, f"row {row.row}: {row.detail}"))
        elif row.text is None:
            out.append(_error_row(row_id, "null_text", f"row {row.row}: text is null"))
        elif not isinstance(row.text, str):
            out.append(_error_row(row_id, "not_a_string", f"row {row.row}: text is {type(row.text).__name__}, expected a string"))
        elif _is_blank(row.text, settings):
            out.append(_error_row(row_id, "empty_text", f"row {row.row}: text is empty after normalisation"))
        else:
            todo.append((len(out), row))
            out.append({"id": row_id})
    for (i, row), pred in zip(todo, _predict_each(classifier, [row for _, row in todo])):
        if isinstance(pred, Exception):
            failure = f"row {row.row}: scoring failed ({type(pred).__name__})"
            out[i].update(_error_row(out[i]["id"], "model_error", failure))
        else:
            out[i].update(label=pred.label, score=pred.score, probs=pred.probs, status="ok", error=None)
    return out


def _is_blank(text: str, settings) -> bool:
    """Nothing left after normalisation. Normalising a prefix never loses a visible character,
    so a huge message is checked on its first few thousand characters."""
    return not normalize_text(text[:4096], settings) and not normalize_text(text, settings)


def _predict_each(classifier: Classifier, rows: list[InputRow]) -> list:
    """Predictions for ``rows``; if the batch fails, each row is retried alone so one bad row
    costs only itself. Rows that still fail come back as their exception. When every row of a
    batch fails on its own too, the model itself is broken and the error is raised."""
    texts = [row.text for row in rows]
    try:
        return classifier.predict(texts) if texts else []
    except Exception as batch_error:  # noqa: BLE001 - isolate whatever the model raised
        results = []
        for row in rows:
            try:
                results.append(classifier.predict([row.text])[0])
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


# -- resume ---------------------------------------------------------------------------------


@dataclasses.dataclass
class WrittenOutput:
    """What an interrupted run left in its output.

    ``rows``: complete rows (a cut-off last line is not one); ``last_id``: the id of the last
    of them; ``kept``, ``kept_bytes``, ``kept_counts``: the whole chunks among them (rows,
    file length and counts by status), which resuming keeps.
    """

    rows: int = 0
    last_id: object = None
    kept: int = 0
    kept_bytes: int = 0
    kept_counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def read_written_output(path: Path, fmt: str, chunk_size: int) -> WrittenOutput:
    """Scan an earlier run's output without changing it."""
    if fmt == "parquet":
        raise InputError(f"{path}: --resume needs a JSONL or CSV output (Parquet cannot be appended to)")
    written = WrittenOutput()
    pending: collections.Counter = collections.Counter()  # statuses since the last chunk boundary
    records = _jsonl_records(path) if fmt == "jsonl" else _csv_records(path)
    for end, row_id, status in records:
        if row_id is _HEADER:
            written.kept_bytes = end
            continue
        written.rows += 1
        written.last_id = row_id
        pending[status] += 1
        if written.rows % chunk_size == 0:
            written.kept, written.kept_bytes = written.rows, end
            written.kept_counts.update(pending)
            pending.clear()
    return written


_HEADER = object()


def _jsonl_records(path: Path):
    """(end offset, id, status) per complete line."""
    end = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                return  # the line a kill cut off
            end += len(line)
            try:
                row = json.loads(line)
                yield end, row["id"], row.get("status")
            except (ValueError, KeyError, TypeError, AttributeError):
                raise InputError(f"{path}: line {number} is not a result row; not an output of this scorer?") from None


def _csv_records(path: Path):
    """(end offset, id, status) per complete record; the header comes first, as id ``_HEADER``.

    Ids may hold quoted line breaks, so records are found by parsing, fed one physical line
    at a time so that byte offsets are known.
    """
    size = path.stat().st_size
    consumed = 0
    last_line = b""

    def lines():
        nonlocal consumed, last_line
        with open(path, "rb") as fh:
            for line in fh:
                consumed += len(line)
                last_line = line
                yield line.decode("utf-8", "surrogateescape")

    reader = csv.reader(lines())
    for number in itertools.count():
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error:
            record = None
        complete = record is not None and last_line.endswith(b"\n") and len(record) == len(OUTPUT_FIELDS)
        if not complete and consumed == size:
            return  # the record a kill cut off (no terminator, or cut inside the quoted id)
        if number == 0 and tuple(record or ()) != OUTPUT_FIELDS:
            raise InputError(f"{path}: the header is not {','.join(OUTPUT_FIELDS)}; not an output of this scorer?")
        if not complete:
            raise InputError(f"{path}: record {number} is not a result row; not an output of this scorer?")
        yield consumed, (_HEADER if number == 0 else record[0]), record[OUTPUT_FIELDS.index("status")]


def _skip_written(rows: Iterator[InputRow], written: WrittenOutput, output: Path) -> Iterator[InputRow]:
    """Consume the input rows the output keeps, after checking the output came from this input."""
    pending = []
    for number, row in enumerate(rows, 1):
        if number > written.kept:
            pending.append(row)
        if number == written.rows:
            if _id_key(_json_id(row.id)) != _id_key(written.last_id):
                raise InputError(f"{output}: last written id {written.last_id!r} is not input row {number}'s id "
                                 f"{_json_id(row.id)!r}; is this the output of a different input?")
            return itertools.chain(pending, rows)
    raise InputError(f"{output} holds {written.rows} rows but the input has fewer; is this the output of a "
                     "different input?")


def score_file(classifier: Classifier, input_path: str | Path, output_path: str | Path, *,
               text_column: str = "text", id_column: str | None = "id", input_format: str | None = None,
               output_format: str | None = None, chunk_size: int = 2048, resume: bool = False,
               progress: bool = True) -> collections.Counter:
    """Score ``input_path`` into ``output_path``; returns counts of output rows by status.

    Memory is bounded by ``chunk_size`` rows whatever the file size. Each chunk is written and
    flushed before the next is read. With ``resume=True`` (same input, same ``chunk_size``) an
    interrupted run continues after its last whole chunk; the counts then cover the whole output
    and ``counts["resumed"]`` says how many rows were kept from before.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    rows = read_rows(input_path, text_column, id_column, input_format)  # whole-input errors raise here
    output_path = Path(output_path)
    out_fmt = detect_format(output_path, output_format)
    counts: collections.Counter = collections.Counter()
    append = False
    if resume and output_path.exists():
        written = read_written_output(output_path, out_fmt, chunk_size)
        if written.rows:
            rows = _skip_written(rows, written, output_path)
        # Drop the cut-off line and any rows past the last whole chunk, then append.
        os.truncate(output_path, written.kept_bytes)
        append = True
        counts.update(written.kept_counts)
        if written.kept:
            counts["resumed"] = written.kept
            logger.info("resuming: keeping %d rows already in %s", written.kept, output_path)
    bar = _progress(progress, counts["resumed"])
    with ResultWriter(output_path, out_fmt, append=append) as writer:
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
