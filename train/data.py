"""Loading labelled data for training and evaluation (JSONL, CSV or Parquet via ``datasets``).

Also the corpus command line: ``python -m train.data validate PATH`` (see ``train.validate``).
"""

from __future__ import annotations

import collections
from pathlib import Path

from .config import DataConfig

_BUILDERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """Labelled data is unusable: a missing column, an unknown label, an empty split..."""


def _builder(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _BUILDERS:
        raise DataError(f"{path}: unknown format {suffix!r}; use .jsonl, .csv or .parquet")
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    return _BUILDERS[suffix]


def load_file(path: str):
    """One file as a ``datasets.Dataset``."""
    from datasets import load_dataset

    return load_dataset(_builder(path), data_files=str(path), split="train")


def load_splits(cfg: DataConfig) -> dict:
    """Return ``{"train": Dataset, "validation": Dataset | None, "test": Dataset | None}``.

    Columns are renamed to ``id``, ``text``, ``label`` (ids are generated when absent); every
    split is checked for missing columns, non-string or empty texts and unknown labels.
    """
    if cfg.path:
        full = load_file(cfg.path)
        if cfg.split_column not in full.column_names:
            raise DataError(f"{cfg.path}: no split column {cfg.split_column!r}; columns: {full.column_names}")
        split_values = full[cfg.split_column]
        splits = {}
        for name in ("train", "validation", "test"):
            idx = [i for i, s in enumerate(split_values) if s == name]
            splits[name] = full.select(idx) if idx else None
        source = {name: f"{cfg.path} [{cfg.split_column}={name}]" for name in splits}
    else:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        splits = {name: (load_file(f) if f else None) for name, f in files.items()}
        source = files
    if splits["train"] is None or len(splits["train"]) == 0:
        raise DataError(f"no training rows in {source['train']}")
    if cfg.max_train_samples:
        splits["train"] = splits["train"].shuffle(seed=0).select(range(min(cfg.max_train_samples, len(splits["train"]))))
    for name, ds in splits.items():
        if ds is not None:
            splits[name] = _standardise(ds, cfg, source[name])
    return splits


def _standardise(ds, cfg: DataConfig, where: str):
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; columns present: {ds.column_names}")
    if cfg.id_column in ds.column_names:
        ids = [str(x) for x in ds[cfg.id_column]]
    else:
        ids = [str(i) for i in range(1, len(ds) + 1)]
    texts, labels = ds[cfg.text_column], [str(x) if x is not None else None for x in ds[cfg.label_column]]
    bad_text = [ids[i] for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad_text:
        raise DataError(f"{where}: {len(bad_text)} rows have an empty or non-string text, ids: {bad_text[:10]}")
    if cfg.labels is not None:
        unknown = [ids[i] for i, lab in enumerate(labels) if lab not in cfg.labels]
        if unknown:
            raise DataError(f"{where}: {len(unknown)} rows have a label outside {cfg.labels}, ids: {unknown[:10]}")
    from datasets import Dataset

    extra = {c: ds[c] for c in ds.column_names if c not in (cfg.text_column, cfg.label_column, cfg.id_column, "id", "text", "label")}
    return Dataset.from_dict({"id": ids, "text": texts, "label": labels, **extra})


def resolve_labels(cfg: DataConfig, train) -> list[str]:
    labels = list(cfg.labels) if cfg.labels is not None else sorted(set(train["label"]))
    if len(labels) < 2:
        raise DataError(f"need at least two labels, training data has {labels}")
    if cfg.positive_label is not None and cfg.positive_label not in labels:
        raise DataError(f"positive_label {cfg.positive_label!r} is not among the labels {labels}")
    return labels


def label_counts(ds) -> dict:
    return dict(sorted(collections.Counter(ds["label"]).items()))


if __name__ == "__main__":
    import sys

    from .validate import main

    sys.exit(main())
