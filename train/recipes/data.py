"""Labelled data for training: the recipe's files, read with ``infer.io.read_table``, as ``datasets``.

The files go through the one reader that scoring and evaluation use (same formats, same
encoding handling, byte-order marks included), then become ``datasets.Dataset`` objects for the
Trainer. Columns are renamed to ``id``, ``text`` and ``label``; every other column is kept.
"""

from __future__ import annotations

import collections

from infer.io import InputError, read_table

from .config import DataConfig


class DataError(InputError):
    """Labelled data is unusable: a missing column, an unknown label, an empty split..."""


def read_labelled_rows(path: str, cfg: DataConfig, needs_split: bool = False) -> list[dict]:
    try:
        return read_table(path, columns=cfg.columns, require=("text", "label", *(["split"] if needs_split else [])))
    except InputError as err:
        raise DataError(str(err)) from None


def split_names(cfg: DataConfig) -> tuple[str, ...]:
    """``train``, ``validation`` and the test splits, in that order."""
    return ("train", "validation", *(cfg.test_splits if cfg.path else ["test"]))


def load_split_rows(cfg: DataConfig) -> dict[str, list[dict] | None]:
    """``{"train": rows, "validation": rows | None, "test": rows | None, ...}`` (one entry per
    name in :func:`split_names`), standardised and checked."""
    if cfg.path:
        rows = read_labelled_rows(cfg.path, cfg, needs_split=True)
        splits = {name: [r for r in rows if r.get(cfg.split_column) == name] or None for name in split_names(cfg)}
        source = {name: f"{cfg.path} [{cfg.split_column}={name}]" for name in splits}
    else:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        splits = {name: (read_labelled_rows(f, cfg) if f else None) for name, f in files.items()}
        source = files
    if not splits["train"]:
        raise DataError(f"no training rows in {source['train']}")
    if cfg.max_train_samples:
        import random

        rng = random.Random(0)
        keep = sorted(rng.sample(range(len(splits["train"])), min(cfg.max_train_samples, len(splits["train"]))))
        splits["train"] = [splits["train"][i] for i in keep]
    return {name: (standardise(rows, cfg, source[name]) if rows else None) for name, rows in splits.items()}


def standardise(rows: list[dict], cfg: DataConfig, where: str) -> list[dict]:
    """Rows with ``id``, ``text`` and ``label`` (ids numbered from 1 when the file has none),
    after checking texts and labels."""
    out, bad_text, unknown = [], [], []
    renamed = {cfg.text_column, cfg.label_column, cfg.id_column, "id", "text", "label"}
    for number, r in enumerate(rows, 1):
        row_id = str(r[cfg.id_column]) if r.get(cfg.id_column) is not None else str(number)
        text, label = r.get(cfg.text_column), r.get(cfg.label_column)
        label = None if label is None else str(label)
        if not isinstance(text, str) or not text.strip():
            bad_text.append(row_id)
        if cfg.labels is not None and label not in cfg.labels:
            unknown.append(row_id)
        out.append({"id": row_id, "text": text, "label": label, **{k: v for k, v in r.items() if k not in renamed}})
    if bad_text:
        raise DataError(f"{where}: {len(bad_text)} rows have an empty or non-string text, ids: {bad_text[:10]}")
    if unknown:
        raise DataError(f"{where}: {len(unknown)} rows have a label outside {cfg.labels}, ids: {unknown[:10]}")
    return out


def load_splits(cfg: DataConfig, rows: dict[str, list[dict] | None] | None = None) -> dict:
    """As :func:`load_split_rows`, each split a ``datasets.Dataset`` (or None). ``rows``: splits
    already in memory (dicts with ``id``, ``text`` and ``label``), used instead of the files."""
    import dataclasses

    from datasets import Dataset

    if rows is None:
        splits = load_split_rows(cfg)
    else:
        own = dataclasses.replace(cfg, text_column="text", label_column="label", id_column="id")
        splits = {name: (standardise(rows[name], own, f"{name} rows") if rows.get(name) else None)
                  for name in ("train", "validation", "test")}
        if not splits["train"]:
            raise DataError("no training rows given")
    return {name: (Dataset.from_list(_uniform(rows)) if rows else None) for name, rows in splits.items()}


def _uniform(rows: list[dict]) -> list[dict]:
    """Every row with every column (``datasets`` needs one schema), missing values as None."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in columns} for r in rows]


def resolve_labels(cfg: DataConfig, train_labels) -> list[str]:
    labels = list(cfg.labels) if cfg.labels is not None else sorted(set(train_labels))
    if len(labels) < 2:
        raise DataError(f"need at least two labels, training data has {labels}")
    if cfg.positive_label is not None and cfg.positive_label not in labels:
        raise DataError(f"positive_label {cfg.positive_label!r} is not among the labels {labels}")
    return labels


def label_counts(labels) -> dict:
    return dict(sorted(collections.Counter(labels).items()))
