"""Resuming an interrupted scoring run: what its output already holds, and where to go on.

A killed job leaves complete rows followed by at most one cut-off line. :func:`read_written_output`
finds the whole chunks among the complete rows (resuming keeps those and scores the rest with
the same chunk boundaries, so every batch holds exactly the rows it held before), and
:func:`skip_written` checks that the output came from this input before skipping what it holds.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Iterator

from .readers import InputError, InputRow
from .writers import OUTPUT_FIELDS


def json_id(value):
    """An id as it is written: JSON scalars pass, anything else becomes its string form."""
    if value is None or isinstance(value, (int, float, bool)):
        return value
    text = value if isinstance(value, str) else str(value)
    # Unpaired surrogates (a JSON "\ud800" escape) cannot be written as UTF-8: escape them.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _id_key(value) -> str:
    """How an id compares across formats (a CSV output holds every id as text)."""
    return "" if value is None else str(value)


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


def read_written_output(path: Path, fmt: str, chunk_size: int,
                        fields: tuple[str, ...] = OUTPUT_FIELDS) -> WrittenOutput:
    """Scan an earlier run's output (written with columns ``fields``) without changing it."""
    if fmt == "parquet":
        raise InputError(f"{path}: --resume needs a JSONL or CSV output (Parquet cannot be appended to)")
    written = WrittenOutput()
    pending: collections.Counter = collections.Counter()  # statuses since the last chunk boundary
    records = _jsonl_records(path) if fmt == "jsonl" else _csv_records(path, tuple(fields))
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


def _csv_records(path: Path, fields: tuple[str, ...] = OUTPUT_FIELDS):
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
        complete = record is not None and last_line.endswith(b"\n") and len(record) == len(fields)
        if not complete and consumed == size:
            return  # the record a kill cut off (no terminator, or cut inside the quoted id)
        if number == 0 and tuple(record or ()) != fields:
            raise InputError(f"{path}: the header is not {','.join(fields)}; not an output of this scorer "
                             "(with the same model and --explain setting)?")
        if not complete:
            raise InputError(f"{path}: record {number} is not a result row; not an output of this scorer?")
        yield consumed, (_HEADER if number == 0 else record[0]), record[fields.index("status")]


def skip_written(rows: Iterator[InputRow], written: WrittenOutput, output: Path) -> Iterator[InputRow]:
    """Consume the input rows the output keeps, after checking the output came from this input."""
    pending = []
    for number, row in enumerate(rows, 1):
        if number > written.kept:
            pending.append(row)
        if number == written.rows:
            if _id_key(json_id(row.id)) != _id_key(written.last_id):
                raise InputError(f"{output}: last written id {written.last_id!r} is not input row {number}'s id "
                                 f"{json_id(row.id)!r}; is this the output of a different input?")
            return itertools.chain(pending, rows)
    raise InputError(f"{output} holds {written.rows} rows but the input has fewer; is this the output of a "
                     "different input?")
