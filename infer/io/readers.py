"""The one reader of JSONL, CSV and Parquet files, for scoring, training, evaluation and the corpus.

:func:`iter_records` streams a file as :class:`Record` objects (one per data row, including
rows that cannot be parsed) after checking the file as a whole: it exists, its format is
known, and it has the columns the caller needs (:class:`InputError` otherwise, before any row
is read). Encoding handling is the same for every format and every caller: UTF-8, with a
leading byte-order mark ignored (spreadsheet exports), and undecodable bytes reported per row.

On top of it:

* :func:`read_rows` (scoring): one :class:`InputRow` per data row, with a per-row error code
  for rows that cannot be scored, so every input row gets exactly one output row;
* :func:`read_table` (training, evaluation, validation, audit, benchmarks): every row as a
  dict, strictly: any unreadable row is an :class:`InputError` naming its row number.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}


class InputError(ValueError):
    """The input as a whole cannot be read (or, for :func:`read_table`, one of its rows)."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which column holds what: the one column spec that scoring (``text``, ``id``), training
    and evaluation (also ``label``, ``split``) read files with. ``None``: no such column."""

    text: str = "text"
    id: str | None = "id"
    label: str | None = None
    split: str | None = None

    def roles(self, *names: str) -> dict[str, str]:
        """``{column: role}`` for the named roles that have a column (for errors that say
        "no label column 'grade'")."""
        return {getattr(self, n): n for n in names if getattr(self, n)}


@dataclasses.dataclass
class Record:
    """One data row: its 1-based number (JSONL line, CSV record, Parquet row), its values, and
    an error code when it could not be parsed (``values`` then holds what could be read)."""

    row: int
    values: dict
    error: str | None = None  # empty_line, invalid_utf8, malformed_json, bad_csv_row
    detail: str | None = None


@dataclasses.dataclass
class InputRow:
    row: int  # 1-based data row number (JSONL line, CSV record, Parquet row)
    id: Any
    text: Any
    error: str | None = None  # an error code when the row itself could not be parsed
    detail: str | None = None


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in set(FORMATS.values()):
            raise InputError(f"unknown format {fmt!r}; use one of jsonl, csv, parquet")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown format {suffix or '(no extension)'!r}; use .jsonl, .csv or .parquet")
    return FORMATS[suffix]


def missing_column_error(path, column, role, existing, hint="") -> InputError:
    # Long names are elided: a header-less CSV would otherwise put its first message here.
    names = sorted(n if len(n) <= 40 else f"<{len(n)}-character name>" for n in map(str, existing))
    return InputError(f"{path}: no {role} column {column!r}; columns present: {names}{hint}")


def iter_records(path: str | Path, fmt: str | None = None, required: Iterable[str] = (),
                 columns: Iterable[str] | None = None, roles: dict[str, str] | None = None) -> Iterator[Record]:
    """Check ``path`` as a whole, then stream its rows as :class:`Record` objects.

    ``required``: columns the data must have (checked on the CSV header, the Parquet schema or
    the first JSON object); ``roles`` names what each is for in the error (``{"text": "text"}``).
    ``columns``: for Parquet, read only these columns (those present).
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise InputError(f"{path}: {'a directory, not a file' if path.is_dir() else 'no such file'}")
    try:
        open(path, "rb").close()
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    required = [c for c in required if c]
    reader = {"jsonl": _jsonl_records, "csv": _csv_file_records, "parquet": _parquet_records}[fmt]
    return reader(path, required, roles or {}, columns)


def _check_columns(path, present, required, roles, hint=""):
    for column in required:
        if column not in present:
            raise missing_column_error(path, column, roles.get(column, "required"), present, hint)


# -- JSONL ----------------------------------------------------------------------------------

def _parse_json_line(raw: bytes, number: int):
    """A JSON value, or a :class:`Record` describing why the line is not one."""
    if not raw.strip():
        return Record(number, {}, "empty_line", "blank line")
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as err:
        return Record(number, {}, "invalid_utf8", f"invalid UTF-8 at byte {err.start}")
    try:
        # strict=False accepts raw control characters inside strings; normalisation removes them.
        return json.loads(line, strict=False)
    except json.JSONDecodeError as err:
        return Record(number, {}, "malformed_json", f"malformed JSON: {err.msg} at column {err.colno}")
    except RecursionError:
        return Record(number, {}, "malformed_json", "malformed JSON: nested too deeply")


def _jsonl_records(path, required, roles, columns):
    # Check the first object before yielding anything: a missing text column is a
    # whole-input error, not thousands of per-row ones.
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            obj = _parse_json_line(raw, number)
            if isinstance(obj, dict):
                _check_columns(path, obj, required, roles)
                break

    def records():
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                obj = _parse_json_line(raw, number)
                if isinstance(obj, Record):
                    yield obj
                elif not isinstance(obj, dict):
                    yield Record(number, {}, "malformed_json", f"expected a JSON object, got {type(obj).__name__}")
                else:
                    yield Record(number, obj)

    return records()


# -- CSV ------------------------------------------------------------------------------------

def _csv_records(fh) -> Iterator[list[str] | csv.Error]:
    """Records of an open CSV file; a record the csv module rejects comes as the error."""
    reader = csv.reader(fh)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # the reader starts afresh at the next line
            yield err


_ESCAPED_BYTE_RE = re.compile("[\udc80-\udcff]")  # how surrogateescape carries undecodable bytes


def has_undecodable_bytes(value) -> bool:
    """True for a CSV value that held bytes that are not UTF-8 (read with ``surrogateescape``)."""
    return isinstance(value, str) and _ESCAPED_BYTE_RE.search(value) is not None


def _open_csv(path):
    csv.field_size_limit(sys.maxsize)
    # utf-8-sig: spreadsheet exports start with a byte-order mark that would stick to the first name.
    return open(path, newline="", encoding="utf-8-sig", errors="surrogateescape")


def _csv_file_records(path, required, roles, columns):
    with _open_csv(path) as fh:
        header = next(_csv_records(fh), None)
    if header is None:
        raise InputError(f"{path}: empty CSV file (no header row)")
    if isinstance(header, csv.Error):
        raise InputError(f"{path}: unreadable CSV header: {header}")
    _check_columns(path, header, required, roles, hint=" (does the file start with a header row?)")

    def records():
        with _open_csv(path) as fh:
            rows = _csv_records(fh)
            next(rows)
            for number, record in enumerate(rows, 1):
                if isinstance(record, csv.Error):
                    yield Record(number, {}, "bad_csv_row", f"unreadable CSV record: {record}")
                elif not record:
                    yield Record(number, {}, "empty_line", "blank line")
                elif len(record) != len(header):
                    yield Record(number, dict(zip(header, record)), "bad_csv_row",
                                 f"{len(record)} fields, header has {len(header)}")
                else:
                    yield Record(number, dict(zip(header, record)))

    return records()


# -- Parquet --------------------------------------------------------------------------------

def _parquet_records(path, required, roles, columns):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types
        raise InputError(f"{path}: not a readable Parquet file: {err}") from None
    names = pf.schema_arrow.names
    _check_columns(path, names, required, roles)
    wanted = [c for c in dict.fromkeys(columns) if c in names] if columns is not None else None

    def records():
        number = 0
        batches = pf.iter_batches(batch_size=4096, columns=wanted)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - a corrupt page: the rest of the file is lost
                raise InputError(f"{path}: corrupt data after row {number} ({type(err).__name__})") from None
            for values in batch.to_pylist():
                number += 1
                yield Record(number, values)

    return records()


# -- scoring: one InputRow per data row -----------------------------------------------------

def read_rows(path: str | Path, text_column: str = "text", id_column: str | None = "id",
              fmt: str | None = None) -> Iterator[InputRow]:
    """Stream rows for scoring. Ids come from ``id_column`` when present, else the 1-based row number."""
    spec = Columns(text=text_column, id=id_column)
    records = iter_records(path, fmt, required=[spec.text], roles=spec.roles("text"),
                           columns=[c for c in (spec.text, spec.id) if c])

    def rows():
        for rec in records:
            row_id = rec.values[id_column] if id_column and id_column in rec.values else rec.row
            if has_undecodable_bytes(row_id):
                row_id = rec.row
            if rec.error:
                yield InputRow(rec.row, row_id, None, rec.error, rec.detail)
            elif text_column not in rec.values:
                yield InputRow(rec.row, row_id, None, "missing_text", f"no {text_column!r} field")
            elif has_undecodable_bytes(rec.values[text_column]):
                yield InputRow(rec.row, row_id, None, "invalid_utf8", "invalid UTF-8 in text field")
            else:
                yield InputRow(rec.row, row_id, rec.values[text_column])

    return rows()


# -- tables: every row as a dict, strictly --------------------------------------------------

def read_table(path: str | Path, fmt: str | None = None, required: Iterable[str] = (),
               roles: dict[str, str] | None = None, columns: Columns | None = None,
               require: Iterable[str] = ()) -> list[dict]:
    """Every data row of ``path`` as a dict (blank lines skipped). Labelled data sets fit in
    memory; a row that cannot be read is an :class:`InputError` naming the file and the row.

    Required columns: ``required`` by name, and/or ``require`` by role in ``columns``
    (``require=("text", "label")`` with ``Columns(text="body", label="grade")``).
    """
    if columns is not None and require:
        by_role = columns.roles(*require)
        required, roles = [*required, *by_role], {**(roles or {}), **by_role}
    out = []
    for rec in iter_records(path, fmt, required=required, roles=roles):
        if rec.error == "empty_line":
            continue
        if rec.error:
            raise InputError(f"{path}: row {rec.row}: {rec.detail}")
        bad = [k for k, v in rec.values.items() if has_undecodable_bytes(v) or has_undecodable_bytes(k)]
        if bad:
            raise InputError(f"{path}: row {rec.row}: invalid UTF-8 in column(s) {sorted(map(str, bad))}")
        out.append(rec.values)
    if not out:
        raise InputError(f"{path}: no rows")
    return out
