"""Chunked result writers for JSONL, CSV and Parquet (see :class:`ResultWriter`)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .readers import detect_format

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
        self._open_parquet().write_table(results_table(rows))

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


def results_table(rows: list[dict]):
    """Result rows as the Arrow table a Parquet output holds (``id`` as text, ``probs`` as a map)."""
    import pyarrow as pa

    return pa.table({
        "id": [None if r["id"] is None else str(r["id"]) for r in rows],
        "label": [r["label"] for r in rows],
        "score": [r["score"] for r in rows],
        "probs": [None if r["probs"] is None else list(r["probs"].items()) for r in rows],
        "status": [r["status"] for r in rows],
        "error": [r["error"] for r in rows],
    }, schema=_parquet_schema())


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                      ("probs", pa.map_(pa.string(), pa.float64())), ("status", pa.string()),
                      ("error", pa.string())])
