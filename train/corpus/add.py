"""Add authored batches to the corpus: ``python -m train.corpus add --corpus data/corpus.jsonl A01.jsonl ...``.

Each batch file holds one author's messages (``text``, ``label``, ``tactics``, ``family``,
``hard``, ``stage``), the author id being the file's stem (``a01.jsonl`` -> ``a01``) unless
``--author`` names them in order. Families are prefixed with the author id, so two writers'
scenes never merge. Splits:

* the authors named by ``--held-out-authors`` go entirely to ``test_authors`` (the
  author-disjoint test: writers the model never saw);
* of every other author, ``--validation-families`` families per label (seeded choice) go to
  ``validation``, the rest to ``train``.

New rows are shuffled (seeded) and get ids after the corpus's last one, so an id carries no
label, author or family information; existing rows are kept as they are. Run
``python -m train.corpus validate`` afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

from infer.io import InputError, read_table
from infer.options import input_error

from .schema import FIELDS, LABELS

BATCH_FIELDS = ("text", "label", "tactics", "family", "hard", "stage")


def assign_splits(batches: dict[str, list[dict]], held_out: set[str], validation_families: int,
                  seed: int) -> dict[str, list[dict]]:
    """Rows with ``family`` prefixed, ``source``, ``author`` and ``split`` set, per author."""
    rng = random.Random(seed)
    out = {}
    for author, rows in sorted(batches.items()):
        validation: set[str] = set()
        if author not in held_out:
            for label in LABELS:
                families = sorted({r["family"] for r in rows if r["label"] == label})
                validation.update(rng.sample(families, min(validation_families, len(families))))
        out[author] = [{**{k: r[k] for k in BATCH_FIELDS}, "family": f"{author}_{r['family']}", "source": "authored",
                        "author": author,
                        "split": "test_authors" if author in held_out else
                        "validation" if r["family"] in validation else "train"} for r in rows]
    return out


def next_ids(existing: list[dict], n: int) -> list[str]:
    numbers = [int(m.group(1)) for r in existing if (m := re.fullmatch(r"og-(\d+)", str(r.get("id"))))]
    start = max(numbers, default=0) + 1
    return [f"og-{i:05d}" for i in range(start, start + n)]


def add_batches(corpus: list[dict], batches: dict[str, list[dict]], held_out: set[str], validation_families: int = 1,
                seed: int = 16) -> list[dict]:
    """The corpus followed by the new rows (shuffled, with ids), fields in the schema's order."""
    unknown = held_out - set(batches)
    if unknown:
        raise ValueError(f"held-out authors {sorted(unknown)} have no batch")
    taken = {r["author"] for r in corpus}
    clash = sorted(taken & set(batches))
    if clash:
        raise ValueError(f"authors {clash} already have rows in the corpus")
    new = [r for rows in assign_splits(batches, held_out, validation_families, seed).values() for r in rows]
    random.Random(seed).shuffle(new)
    for row, row_id in zip(new, next_ids(corpus, len(new))):
        row["id"] = row_id
    return corpus + [{k: r[k] for k in FIELDS} for r in new]


def build_parser(prog: str = "python -m train.corpus add") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("batches", nargs="+", type=Path, help="one JSONL file per author")
    p.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    p.add_argument("--author", nargs="*", help="author ids in the order of the batch files (default: file stems)")
    p.add_argument("--held-out-authors", nargs="*", default=[], help="authors whose rows form `test_authors`")
    p.add_argument("--validation-families", type=int, default=1, help="families per label and author for validation")
    p.add_argument("--seed", type=int, default=16)
    return p


def main(argv=None, prog: str = "python -m train.corpus add") -> int:
    args = build_parser(prog).parse_args(argv)
    names = args.author or [p.stem for p in args.batches]
    if len(names) != len(args.batches):
        print("error: --author needs one id per batch file", file=sys.stderr)
        return 2
    try:
        corpus = read_table(args.corpus)
        batches = {name: read_table(path, required=BATCH_FIELDS) for name, path in zip(names, args.batches)}
        rows = add_batches(corpus, batches, set(args.held_out_authors), args.validation_families, args.seed)
    except (InputError, ValueError) as err:
        return input_error(err)
    with open(args.corpus, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"{args.corpus}: {len(corpus)} rows kept, {len(rows) - len(corpus)} added from {len(batches)} authors "
          f"({', '.join(sorted(args.held_out_authors)) or 'none'} held out as test_authors)")
    return 0
