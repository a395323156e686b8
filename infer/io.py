"""Streaming readers and chunked writers for JSONL, CSV and Parquet.

Readers yield one :class:`InputRow` per data row, including rows that cannot be parsed, so
that every input row gets exactly one output row. Problems with the whole input (missing
file, unknown format, missing text column) raise :class:`InputError` before anything is read.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}


class InputError(ValueError):
    """The input as a whole cannot be read; raised before any row is scored."""


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


def _missing_column(path, column, role, existing, hint="") -> InputError:
    # Long names are elided: a header-less CSV would otherwise put its first message here.
    names = sorted(n if len(n) <= 40 else f"<{len(n)}-character name>" for n in map(str, existing))
    return InputError(f"{path}: no {role} column {column!r}; columns present: {names}{hint}")


def read_rows(path: str | Path, text_column: str = "text", id_column: str | None = "id",
              fmt: str | None = None) -> Iterator[InputRow]:
    """Stream rows. Ids come from ``id_column`` when present, else the 1-based row number."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise InputError(f"{path}: {'a directory, not a file' if path.is_dir() else 'no such file'}")
    try:
        open(path, "rb").close()
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]
    return reader(path, text_column, id_column)


def _parse_json_line(raw: bytes, number: int):
    """A JSON value, or an :class:`InputRow` describing why the line is not one."""
    if not raw.strip():
        return InputRow(number, number, None, "empty_line", "blank line")
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as err:
        return InputRow(number, number, None, "invalid_utf8", f"invalid UTF-8 at byte {err.start}")
    try:
        # strict=False accepts raw control characters inside strings; normalisation removes them.
        return json.loads(line, strict=False)
    except json.JSONDecodeError as err:
        return InputRow(number, number, None, "malformed_json", f"malformed JSON: {err.msg} at column {err.colno}")
    except RecursionError:
        return InputRow(number, number, None, "malformed_json", "malformed JSON: nested too deeply")


def _read_jsonl(path, text_column, id_column):
    # Validate the first object before yielding anything: a missing text column is a
    # whole-input error, not thousands of per-row ones.
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            obj = _parse_json_line(raw, number)
            if isinstance(obj, dict):
                if text_column not in obj:
                    raise _missing_column(path, text_column, "text", obj)
                break

    def rows():
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                obj = _parse_json_line(raw, number)
                if isinstance(obj, InputRow):
                    yield obj
                    continue
                if not isinstance(obj, dict):
                    yield InputRow(number, number, None, "malformed_json", f"expected a JSON object, got {type(obj).__name__}")
                    continue
                row_id = obj.get(id_column, number) if id_column else number
                if text_column not in obj:
                    yield InputRow(number, row_id, None, "missing_text", f"no {text_column!r} field")
                    continue
                yield InputRow(number, row_id, obj[text_column])

    return rows()


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


def _read_csv(path, text_column, id_column):
    csv.field_size_limit(sys.maxsize)
    # utf-8-sig: spreadsheet exports start with a byte-order mark that would stick to the first name.
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        header = next(_csv_records(fh), None)
    if header is None:
        raise InputError(f"{path}: empty CSV file (no header row)")
    if isinstance(header, csv.Error):
        raise InputError(f"{path}: unreadable CSV header: {header}")
    if text_column not in header:
        raise _missing_column(path, text_column, "text", header, hint=" (does the file start with a header row?)")

    def rows():
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            records = _csv_records(fh)
            next(records)
            text_at = header.index(text_column)
            id_at = header.index(id_column) if id_column and id_column in header else None
            for number, record in enumerate(records, 1):
                if isinstance(record, csv.Error):
                    yield InputRow(number, number, None, "bad_csv_row", f"unreadable CSV record: {record}")
                    continue
                if not record:
                    yield InputRow(number, number, None, "empty_line", "blank line")
                    continue
                row_id = record[id_at] if id_at is not None and id_at < len(record) else number
                if _has_surrogates(row_id):
                    row_id = number
                if len(record) != len(header):
                    yield InputRow(number, row_id, None, "bad_csv_row",
                                   f"{len(record)} fields, header has {len(header)}")
                    continue
                text = record[text_at]
                if _has_surrogates(text):
                    yield InputRow(number, row_id, None, "invalid_utf8", "invalid UTF-8 in text field")
                    continue
                yield InputRow(number, row_id, text)

    return rows()


_ESCAPED_BYTE_RE = re.compile("[\udc80-\udcff]")  # how surrogateescape carries undecodable bytes


def _has_surrogates(value) -> bool:
    return isinstance(value, str) and _ESCAPED_BYTE_RE.search(value) is not None


def _read_parquet(path, text_column, id_column):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types
        raise InputError(f"{path}: not a readable Parquet file: {err}") from None
    names = pf.schema_arrow.names
    if text_column not in names:
        raise _missing_column(path, text_column, "text", names)
    columns = [text_column] + ([id_column] if id_column and id_column in names else [])

    def rows():
        number = 0
        batches = pf.iter_batches(batch_size=4096, columns=columns)
        while True:
            try:
                data = next(batches).to_pydict()
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - a corrupt page: the rest of the file is lost
                raise InputError(f"{path}: corrupt data after row {number} ({type(err).__name__})") from None
            ids = data.get(id_column) if id_column in columns[1:] else None
            for i, text in enumerate(data[text_column]):
                number += 1
                yield InputRow(number, ids[i] if ids is not None else number, text)

    return rows()


# -- writers --------------------------------------------------------------------------------

OUTPUT_FIELDS = ("id", "label", "score", "probs", "status", "error")


class ResultWriter:
    """Appends result rows chunk by chunk and flushes each chunk to disk.

    JSONL and CSV are written in place, one complete line per row, flushed and fsynced per
    chunk, so a killed job leaves only complete rows. Parquet has no appendable layout: it is
    written to ``<output>.partial`` and renamed when complete.
    """

    def __init__(self, path: str | Path, fmt: str | None = None, append: bool = False):
        self.path = Path(path)
        self.fmt = detect_format(self.path, fmt)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet = None
        if self.fmt == "parquet":
            self._partial = self.path.with_name(self.path.name + ".partial")
            self._fh = None
        else:
            exists = append and self.path.exists() and self.path.stat().st_size > 0
            self._fh = open(self.path, "a" if append else "w", encoding="utf-8", newline="")
            if self.fmt == "csv":
                self._csv = csv.writer(self._fh)
                if not exists:
                    self._csv.writerow(OUTPUT_FIELDS)

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.fmt == "jsonl":
            self._fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        elif self.fmt == "csv":
            for r in rows:
                self._csv.writerow([json.dumps(r[k]) if k == "probs" and r[k] is not None else r[k]
                                    for k in OUTPUT_FIELDS])
        else:
            self._write_parquet(rows)
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _write_parquet(self, rows):
        import pyarrow as pa

        schema = _parquet_schema()
        table = pa.table({
            "id": [None if r["id"] is None else str(r["id"]) for r in rows],
            "label": [r["label"] for r in rows],
            "score": [r["score"] for r in rows],
            "probs": [None if r["probs"] is None else list(r["probs"].items()) for r in rows],
            "status": [r["status"] for r in rows],
            "error": [r["error"] for r in rows],
        }, schema=schema)
        self._open_parquet().write_table(table)

    def _open_parquet(self):
        if self._parquet is None:
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self._partial, _parquet_schema())
        return self._parquet

    def close(self, complete: bool = True) -> None:
        """Close; an incomplete Parquet output stays at ``<output>.partial``."""
        if self._fh is not None:
            self._fh.close()
        if self.fmt == "parquet":
            self._open_parquet().close()  # no rows at all still gives a valid, empty file
            if complete:
                os.replace(self._partial, self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(complete=exc_type is None)


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                      ("probs", pa.map_(pa.string(), pa.float64())), ("status", pa.string()),
                      ("error", pa.string())])
