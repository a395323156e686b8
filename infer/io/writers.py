"""Chunked result writers for JSONL, CSV and Parquet (see :class:`ResultWriter`)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .readers import detect_format

OUTPUT_FIELDS = ("id", "label", "score", "probs", "status", "error")
#: Columns after ``probs`` for models with a tag head (``tactics``, ``tags``) and with ``--explain`` (``evidence``).
TAG_FIELDS = ("tactics", "tags")
EVIDENCE_FIELDS = ("evidence",)
#: Fields written as JSON text in CSV.
_JSON_FIELDS = {"probs", "tactics", "tags", "evidence"}


def output_fields(tags: bool = False, evidence: bool = False) -> tuple[str, ...]:
    """The output columns, in order: the base fields, then tag and evidence fields when present."""
    head, tail = OUTPUT_FIELDS[:4], OUTPUT_FIELDS[4:]
    return head + (TAG_FIELDS if tags else ()) + (EVIDENCE_FIELDS if evidence else ()) + tail


class ResultWriter:
    """Appends result rows chunk by chunk and flushes each chunk to disk.

    JSONL and CSV are written in place, one complete line per row, flushed and fsynced per
    chunk, so a killed job leaves only complete rows. Parquet has no appendable layout: it is
    written to ``<output>.partial`` and renamed when complete.
    """

    def __init__(self, path: str | Path, fmt: str | None = None, append: bool = False,
                 fields: tuple[str, ...] = OUTPUT_FIELDS):
        self.path = Path(path)
        self.fmt = detect_format(self.path, fmt)
        self.fields = tuple(fields)
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
                    self._csv.writerow(self.fields)

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.fmt == "jsonl":
            self._fh.write("".join(json.dumps({k: r.get(k) for k in self.fields}, ensure_ascii=False) + "\n"
                                   for r in rows))
        elif self.fmt == "csv":
            for r in rows:
                self._csv.writerow([json.dumps(r.get(k), ensure_ascii=False) if k in _JSON_FIELDS and r.get(k) is not None
                                    else r.get(k) for k in self.fields])
        else:
            self._write_parquet(rows)
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _write_parquet(self, rows):
        self._open_parquet().write_table(results_table(rows, self.fields))

    def _open_parquet(self):
        if self._parquet is None:
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self._partial, _parquet_schema(self.fields))
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


def results_table(rows: list[dict], fields: tuple[str, ...] = OUTPUT_FIELDS):
    """Result rows as the Arrow table a Parquet output holds (``id`` as text, ``probs`` and
    ``tactics`` as maps), with the columns ``fields`` names."""
    import pyarrow as pa

    columns = {
        "id": lambda: [None if r["id"] is None else str(r["id"]) for r in rows],
        "label": lambda: [r["label"] for r in rows],
        "score": lambda: [r["score"] for r in rows],
        "probs": lambda: [None if r["probs"] is None else list(r["probs"].items()) for r in rows],
        "tactics": lambda: [None if r.get("tactics") is None else list(r["tactics"].items()) for r in rows],
        "tags": lambda: [r.get("tags") for r in rows],
        "evidence": lambda: [r.get("evidence") for r in rows],
        "status": lambda: [r["status"] for r in rows],
        "error": lambda: [r["error"] for r in rows],
    }
    return pa.table({k: columns[k]() for k in fields}, schema=_parquet_schema(fields))


def _parquet_schema(fields: tuple[str, ...] = OUTPUT_FIELDS):
    import pyarrow as pa

    types = {"id": pa.string(), "label": pa.string(), "score": pa.float64(),
             "probs": pa.map_(pa.string(), pa.float64()), "tactics": pa.map_(pa.string(), pa.float64()),
             "tags": pa.list_(pa.string()),
             "evidence": pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64()), ("text", pa.string()),
                                             ("drop", pa.float64())])),
             "status": pa.string(), "error": pa.string()}
    return pa.schema([(name, types[name]) for name in fields])
