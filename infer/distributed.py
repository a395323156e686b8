"""Score on a Ray cluster: ``python -m infer.distributed --model DIR --input GLOB --output DIR --workers N``.

Needs the optional extra: ``pip install 'outreach-guard[ray]'`` (Ray Data). Ray is imported
here on first use only, so ``import infer`` (and ``python -m infer``) never loads it.

The pipeline is plain Ray Data: read -> ``map_batches`` with :class:`ScoreBatch`, a callable
class that loads the :class:`~infer.classifier.Classifier` once per actor (a pool of
``workers`` actors, each with ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs) ->
``write_parquet``. :func:`score_dataset` takes and returns a ``ray.data.Dataset``, so it fits
after ``ray.data.read_json`` / ``read_parquet`` / ``read_csv`` and before any sink.

Each result row has the columns ``python -m infer`` writes (``id``, ``label``, ``score``,
``probs``, ``status``, ``error``) with the same statuses and per-row error records, because
the actors call the same :func:`infer.score.score_rows`. Rows come back in no particular order;
the command carries ``path`` and ``row`` (the 1-based row number in its file) so that sorting
on them restores input order (:func:`load_results`). A row that cannot be scored becomes an
error record: it never fails its block.

Ray's own file readers reject a whole file on one malformed line, so the command reads files
with this project's reader instead (:func:`read_files`: one Ray task per file, streamed in
chunks), which turns malformed lines, bad CSV records and undecodable bytes into error records,
exactly as ``python -m infer`` does. The same code runs on a local cluster (``ray.init()``,
started by the command when no cluster is given) and, unchanged, on an existing one
(``--address`` or ``RAY_ADDRESS``); there, the model folder, inputs and output must be paths
every node can read (a shared file system), and every node needs ``outreach-guard[ray]``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

logger = logging.getLogger(__name__)

#: Columns the command carries next to the results, so that input order can be restored.
SOURCE_COLUMNS = ("path", "row")
_READ_ERROR, _READ_DETAIL = "read_error", "read_detail"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("infer.distributed needs Ray Data: pip install 'outreach-guard[ray]'") from None
    return ray


# -- reading files ----------------------------------------------------------------------------

def expand_inputs(inputs: str | Sequence[str]) -> list[str]:
    """Paths and glob patterns -> the sorted, de-duplicated files they name (InputError if none)."""
    from .io import InputError

    patterns = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    files: list[str] = []
    for pattern in map(str, patterns):
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputError(f"{pattern}: no file matches")
        files += [m for m in matches if not (glob.has_magic(pattern) and Path(m).is_dir())]
    return list(dict.fromkeys(files))


def check_inputs(files: Iterable[str], text_column: str = "text", id_column: str | None = "id",
                 input_format: str | None = None) -> None:
    """Whole-input errors (a missing file, an unknown format, no text column) before any work."""
    from .io import read_rows

    for path in files:
        read_rows(path, text_column, id_column, input_format)  # checks the file; reads no row yet


def _read_file_rows(batch, text_column: str, id_column: str | None, input_format: str | None,
                    chunk_rows: int) -> Iterator:
    """map_batches function: one file's rows, through the project's reader, in Arrow chunks."""
    import pyarrow as pa

    from .io import json_id, read_rows
    from .score import not_a_string

    schema = pa.schema([("path", pa.string()), ("row", pa.int64()), ("id", pa.string()), ("text", pa.string()),
                        (_READ_ERROR, pa.string()), (_READ_DETAIL, pa.string())])
    for path in batch.column("path").to_pylist():
        chunk: list[dict] = []
        for r in read_rows(path, text_column, id_column, input_format):
            row_id = json_id(r.id)
            error, detail, text = r.error, r.detail, r.text
            if error is None and text is not None and not isinstance(text, str):
                error, detail, text = "not_a_string", not_a_string(text), None
            chunk.append({"path": path, "row": r.row, "id": None if row_id is None else str(row_id), "text": text,
                          _READ_ERROR: error, _READ_DETAIL: detail})
            if len(chunk) >= chunk_rows:
                yield pa.Table.from_pylist(chunk, schema=schema)
                chunk = []
        if chunk:
            yield pa.Table.from_pylist(chunk, schema=schema)


def read_files(inputs: str | Sequence[str], *, text_column: str = "text", id_column: str | None = "id",
               input_format: str | None = None, chunk_rows: int = 2048):
    """A ``ray.data.Dataset`` of the rows of ``inputs`` (paths or globs), read by this project's
    reader, one Ray task per file: columns ``path``, ``row``, ``id``, ``text`` and the reader's
    per-row error (``read_error``, ``read_detail``), which :class:`ScoreBatch` turns into records."""
    ray = _ray()
    files = expand_inputs(inputs)
    check_inputs(files, text_column, id_column, input_format)
    # Reading takes no CPU reservation: on a small cluster the scoring actors hold every CPU.
    return ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files)).map_batches(
        _read_file_rows, batch_size=1, batch_format="pyarrow", num_cpus=0,
        fn_kwargs={"text_column": text_column, "id_column": id_column, "input_format": input_format,
                   "chunk_rows": chunk_rows})


# -- scoring ----------------------------------------------------------------------------------

class ScoreBatch:
    """``Dataset.map_batches`` callable class: loads the classifier once per actor, then scores
    Arrow batches into result rows (the columns of ``python -m infer``, plus ``carry``).

    ``threads``: torch threads in this actor's process (the process is the worker's own, so
    setting them is this class's business; Ray reserves ``cpus_per_worker`` CPUs for it).
    """

    def __init__(self, model: str, text_column: str = "text", id_column: str | None = "id",
                 carry: Sequence[str] = (), device: str | None = None, precision: str = "auto",
                 threads: int | None = None, **classifier_kwargs):
        from .classifier import Classifier

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.classifier = Classifier.from_pretrained(model, device=device, precision=precision, **classifier_kwargs)
        self.text_column, self.id_column, self.carry = text_column, id_column, tuple(carry)

    def input_rows(self, batch) -> list:
        from .io import InputRow

        names = batch.column_names
        if self.text_column not in names:
            raise ValueError(f"no text column {self.text_column!r}; columns present: {sorted(names)}")
        columns = {name: batch.column(name).to_pylist() for name in
                   {self.text_column, *(c for c in (self.id_column, "row", _READ_ERROR, _READ_DETAIL) if c in names)}}
        n = batch.num_rows
        ids = columns.get(self.id_column) or [None] * n
        # Errors name a row by its number in its file; rows of a dataset without one by their id.
        numbers = columns.get("row") or [i if i is not None else "without an id" for i in ids]
        errors = columns.get(_READ_ERROR) or [None] * n
        details = columns.get(_READ_DETAIL) or [None] * n
        return [InputRow(numbers[i], ids[i], columns[self.text_column][i], errors[i], details[i]) for i in range(n)]

    def __call__(self, batch):
        from .io import results_table
        from .score import score_rows

        table = results_table(score_rows(self.classifier, self.input_rows(batch)))
        for name in self.carry:
            table = table.append_column(name, batch.column(name))
        return table


def score_dataset(ds, model: str | Path, *, text_column: str = "text", id_column: str | None = "id",
                  carry: Sequence[str] = (), workers: int = 1, gpus_per_worker: float = 0, cpus_per_worker: float = 1,
                  batch_size: int = 512, precision: str = "auto", **classifier_kwargs):
    """Score a ``ray.data.Dataset`` with the model folder ``model``; returns the Dataset of
    result rows (lazy, like any Ray Dataset: write it, iterate it or ``take_all()`` it).

    ``ds``: any Dataset with ``text_column`` (``ray.data.read_json/read_parquet/read_csv``, or
    :func:`read_files`); ``id_column`` and the ``carry`` columns are passed through. ``workers``
    actors each load the model once; with ``gpus_per_worker`` > 0 they score on their GPU, else
    on ``cpus_per_worker`` CPUs (as many torch threads).
    """
    ray = _ray()
    on_gpu = gpus_per_worker > 0
    return ds.map_batches(
        ScoreBatch, batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker, num_gpus=gpus_per_worker if on_gpu else None,
        fn_constructor_kwargs={"model": str(Path(model).resolve()), "text_column": text_column, "id_column": id_column,
                               "carry": tuple(carry), "device": "cuda" if on_gpu else "cpu", "precision": precision,
                               "threads": None if on_gpu else max(1, int(cpus_per_worker)), **classifier_kwargs})


def score_files(inputs: str | Sequence[str], model: str | Path, output: str | Path, *, text_column: str = "text",
                id_column: str | None = "id", input_format: str | None = None, **kwargs) -> collections.Counter:
    """Score files (paths or globs) into Parquet files under the folder ``output``; returns the
    counts of result rows by status. ``kwargs`` go to :func:`score_dataset`."""
    from .io import InputError

    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output}: exists and is not an empty folder (the output is a folder of Parquet files)")
    rows = read_files(inputs, text_column=text_column, id_column=id_column, input_format=input_format)
    scored = score_dataset(rows, model, carry=SOURCE_COLUMNS, **kwargs)
    scored.write_parquet(str(output.resolve()))
    if not any(output.glob("*.parquet")):  # inputs without a single row: Ray writes no file
        output.mkdir(parents=True, exist_ok=True)
        return collections.Counter()
    return collections.Counter(load_results(output, columns=["status"]).column("status").to_pylist())


def load_results(output: str | Path, columns: Sequence[str] | None = None):
    """The results under ``output`` as one Arrow table in input order (files, then row numbers)."""
    import pyarrow.dataset as pads

    table = pads.dataset(str(output), format="parquet").to_table()
    table = table.sort_by([("path", "ascending"), ("row", "ascending")])
    return table.select(list(columns)) if columns else table


# -- command line -----------------------------------------------------------------------------

def build_parser(prog: str = "python -m infer.distributed") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Score files on a Ray cluster (local or existing).")
    p.add_argument("--model", required=True, help="model folder written by `python -m train` (readable by every node)")
    p.add_argument("--input", required=True, nargs="+", help="JSONL, CSV or Parquet files or glob patterns")
    p.add_argument("--output", required=True, help="folder for the Parquet result files (new or empty)")
    p.add_argument("--workers", type=int, default=1, help="scoring actors, each loading the model once")
    p.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per actor (0: score on CPUs)")
    p.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per actor (its torch threads)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per map_batches call")
    p.add_argument("--address", default=None, help="an existing cluster, HOST:PORT (default: RAY_ADDRESS, else "
                   "the cluster `ray start` last started on this machine, else a new local one)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--id-column", default="id", help="passed through; the 1-based row number when absent")
    p.add_argument("--input-format", choices=["jsonl", "csv", "parquet"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None, prog: str = "python -m infer.distributed") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .io import InputError
    from .manifest import ModelFolderError, ModelManifest

    try:
        ModelManifest.load(args.model)  # a wrong folder fails here, not in every actor
        files = expand_inputs(args.input)
        check_inputs(files, args.text_column, args.id_column, args.input_format)
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=args.address, logging_level=logging.WARNING)  # None: see --address
        ray.data.DataContext.get_current().enable_progress_bars = not args.no_progress
        print(f"ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs, {ray.cluster_resources().get('GPU', 0):.0f} "
              f"GPUs; {args.workers} workers; {len(files)} input files", file=sys.stderr)
        counts = score_files(files, args.model, args.output, text_column=args.text_column, id_column=args.id_column,
                             input_format=args.input_format, workers=args.workers,
                             gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                             batch_size=args.batch_size, precision=args.precision)
    except (InputError, ModelFolderError, OSError, ImportError) as err:
        message = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
        print("error: " + " ".join(message.split("\n")), file=sys.stderr)
        return 2
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"wrote {args.output}: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Ray pickles ScoreBatch by reference: run it from the importable module, not from __main__.
    from infer.distributed import main as _main

    sys.exit(_main())
