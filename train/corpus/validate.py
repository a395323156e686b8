"""Corpus validation: ``python -m train.corpus validate PATH [--targets]``.

Checks the schema (``train.corpus.schema``), labels and tactic tags, exact and near-duplicate
texts (any shared run of 12 words, or word-shingle Jaccard >= 0.6) within and across splits,
family leakage across splits, author leakage into the author-disjoint ``test_authors`` split,
and that generated rows stay in ``train``. Prints counts per label, split, family,
stage, source and tag. ``--targets`` also checks the shipped corpus's composition targets
(size, balance, hard negatives, subtle and follow-up grooming, breadth, test split).
Exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

from infer.io import InputError, iter_records
from infer.options import input_error

from .schema import FIELDS, LABELS, SOURCES, SPLITS, STAGES, TACTIC_TAGS as TAGS

RUN = 12  # words in a shared run that counts as near-duplicate
SHINGLE, JACCARD = 4, 0.6

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def load_rows(path: Path, problems: list[str]) -> list[dict]:
    """Every row of a corpus file (JSONL, CSV or Parquet, through the one reader); unreadable
    rows are reported as problems rather than raised, so one run lists them all."""
    rows = []
    for rec in iter_records(path):
        if rec.error:
            problems.append(f"line {rec.row}: {rec.detail}")
            continue
        row = dict(rec.values)
        row["_line"] = rec.row
        rows.append(row)
    return rows


def check_schema(rows, labels, problems):
    seen_ids = collections.Counter(r.get("id") for r in rows)
    for r in rows:
        where = f"line {r['_line']} (id {r.get('id')!r})"
        for field, kind in FIELDS.items():
            if field not in r:
                problems.append(f"{where}: missing field {field!r}")
            elif not isinstance(r[field], kind):
                problems.append(f"{where}: {field!r} must be {kind.__name__}")
        extra = set(r) - set(FIELDS) - {"_line"}
        if extra:
            problems.append(f"{where}: unknown fields {sorted(extra)}")
        if r.get("label") not in labels:
            problems.append(f"{where}: label {r.get('label')!r} not in {list(labels)}")
        bad_tags = [t for t in r.get("tactics") or [] if t not in TAGS]
        if bad_tags or len(set(r.get("tactics") or [])) != len(r.get("tactics") or []):
            problems.append(f"{where}: unknown or repeated tactics {bad_tags or r.get('tactics')}")
        for field, allowed in (("stage", STAGES), ("source", SOURCES), ("split", SPLITS)):
            if r.get(field) not in allowed:
                problems.append(f"{where}: {field} {r.get(field)!r} not in {list(allowed)}")
        if isinstance(r.get("author"), str) and not r["author"].strip():
            problems.append(f"{where}: author must be a non-empty id")
        if isinstance(r.get("text"), str) and len(words(r["text"])) < 3:
            problems.append(f"{where}: text has fewer than 3 words")
        if seen_ids[r.get("id")] > 1:
            problems.append(f"{where}: duplicate id")
        if r.get("source") == "generated" and r.get("split") != "train":
            problems.append(f"{where}: generated rows belong in train only")


def check_families(rows, problems):
    splits = collections.defaultdict(set)
    labels = collections.defaultdict(set)
    for r in rows:
        splits[r.get("family")].add(r.get("split"))
        labels[r.get("family")].add(r.get("label"))
    for family, s in sorted(splits.items()):
        if len(s) > 1:
            problems.append(f"family {family!r} appears in several splits: {sorted(s)}")
    for family, found in sorted(labels.items()):
        if len(found) > 1:
            problems.append(f"family {family!r} holds both labels: {sorted(found)}")


def check_authors(rows, problems):
    """The ``test_authors`` split is author-disjoint: its authors write nothing in other splits."""
    held_out = {r["author"] for r in rows if r["split"] == "test_authors"}
    leaked = collections.Counter(r["author"] for r in rows if r["split"] != "test_authors" and r["author"] in held_out)
    for author, n in sorted(leaked.items()):
        problems.append(f"author {author!r} of the test_authors split also has {n} rows in other splits")


def check_duplicates(rows, problems):
    """Exact duplicates, shared 12-word runs, and high shingle overlap, among all rows."""
    tokens = [words(r.get("text") or "") for r in rows]
    ref = [f"{r.get('id')} ({r.get('split')})" for r in rows]
    exact = collections.defaultdict(list)
    for i, t in enumerate(tokens):
        exact[" ".join(t)].append(i)
    for group in exact.values():
        if len(group) > 1:
            problems.append(f"duplicate texts: {', '.join(ref[i] for i in group)}")
    runs = collections.defaultdict(set)
    for i, t in enumerate(tokens):
        for j in range(len(t) - RUN + 1):
            runs[" ".join(t[j:j + RUN])].add(i)
    pairs = set()
    for members in runs.values():
        if 1 < len(members):
            m = sorted(members)
            pairs.update((a, b) for k, a in enumerate(m) for b in m[k + 1:])
    exact_pairs = {tuple(sorted((a, b))) for g in exact.values() for a in g for b in g if a < b}
    for a, b in sorted(pairs - exact_pairs):
        problems.append(f"near-duplicate (shared {RUN}-word run): {ref[a]} and {ref[b]}")
    # Rewordings keep most 4-word shingles even when no 12-word run survives.
    shingles = [{" ".join(t[j:j + SHINGLE]) for j in range(len(t) - SHINGLE + 1)} for t in tokens]
    index = collections.defaultdict(list)
    for i, sh in enumerate(shingles):
        for s in sh:
            index[s].append(i)
    shared = collections.Counter()
    for members in index.values():
        if 1 < len(members) <= 50:
            for k, a in enumerate(members):
                for b in members[k + 1:]:
                    shared[(a, b)] += 1
    for (a, b), n in sorted(shared.items()):
        if (a, b) in pairs or (a, b) in exact_pairs or n < 3:
            continue
        jac = n / len(shingles[a] | shingles[b])
        if jac >= JACCARD:
            problems.append(f"near-duplicate (4-word shingle Jaccard {jac:.2f}): {ref[a]} and {ref[b]}")


def composition(rows) -> dict:
    by_label = collections.Counter(r["label"] for r in rows)
    grooming = [r for r in rows if r["label"] == "grooming"]
    benign = [r for r in rows if r["label"] == "benign"]
    test = [r for r in rows if r["split"] == "test"]
    # Corpus v2: breadth from many writers. "v1" marks the original messages, whose writers
    # were not recorded one by one.
    new = [r for r in rows if r["author"] != "v1"]
    family_sizes = collections.Counter(r["family"] for r in new)
    held_out = [r for r in rows if r["split"] == "test_authors"]
    return {
        "rows": len(rows),
        "authored": sum(r["source"] == "authored" for r in rows),
        "grooming_share": by_label["grooming"] / max(len(rows), 1),
        "benign_hard_share": sum(r["hard"] for r in benign) / max(len(benign), 1),
        "grooming_subtle_share": sum(r["hard"] for r in grooming) / max(len(grooming), 1),
        "grooming_follow_up_share": sum(r["stage"] == "follow_up" for r in grooming) / max(len(grooming), 1),
        "grooming_families": len({r["family"] for r in grooming}),
        "benign_families": len({r["family"] for r in benign}),
        "test_rows": len(test),
        "test_all_authored": all(r["source"] == "authored" for r in test),
        "v2_rows": len(new),
        "v2_families": len(family_sizes),
        "v2_largest_family": max(family_sizes.values(), default=0),
        "v2_authors": len({r["author"] for r in new}),
        "v2_grooming_share": sum(r["label"] == "grooming" for r in new) / max(len(new), 1),
        "test_authors_authors": len({r["author"] for r in held_out}),
        "test_authors_rows": len(held_out),
    }


TARGETS = [
    ("rows", lambda v: v >= 2400, ">= 2400"),
    ("authored", lambda v: v >= 1200, ">= 1200"),
    ("grooming_share", lambda v: 0.4 <= v <= 0.6, "between 0.40 and 0.60"),
    ("benign_hard_share", lambda v: v >= 0.4, ">= 0.40"),
    ("grooming_subtle_share", lambda v: v >= 0.2, ">= 0.20"),
    ("grooming_follow_up_share", lambda v: v >= 0.2, ">= 0.20"),
    ("grooming_families", lambda v: v >= 30, ">= 30"),
    ("benign_families", lambda v: v >= 30, ">= 30"),
    ("test_rows", lambda v: v >= 400, ">= 400"),
    ("test_all_authored", lambda v: v is True, "true"),
    ("v2_rows", lambda v: v >= 2400, ">= 2400"),
    ("v2_families", lambda v: v >= 200, ">= 200"),
    ("v2_largest_family", lambda v: v <= 16, "<= 16"),
    ("v2_authors", lambda v: v >= 10, ">= 10"),
    ("v2_grooming_share", lambda v: 0.4 <= v <= 0.6, "between 0.40 and 0.60"),
    ("test_authors_authors", lambda v: v >= 2, ">= 2"),
    ("test_authors_rows", lambda v: v >= 400, ">= 400"),
]


def _table(title: str, counter: collections.Counter, out) -> None:
    print(f"\n{title}", file=out)
    for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))):
        print(f"  {str(key):<48} {n:>6}", file=out)


def report(rows, out=None) -> None:
    _table("by label", collections.Counter(r["label"] for r in rows), out)
    _table("by split x label", collections.Counter(f"{r['split']} / {r['label']}" for r in rows), out)
    _table("by stage x label", collections.Counter(f"{r['stage']} / {r['label']}" for r in rows), out)
    _table("by hard x label", collections.Counter(f"hard={r['hard']} / {r['label']}" for r in rows), out)
    _table("by source", collections.Counter(r["source"] for r in rows), out)
    _table("by author x split", collections.Counter(f"{r['author']} / {r['split']}" for r in rows), out)
    families = collections.defaultdict(set)
    for r in rows:
        families[r["author"]].add(r["family"])
    _table("families per author", collections.Counter({a: len(f) for a, f in families.items()}), out)
    _table("by tag x label", collections.Counter(f"{t} / {r['label']}" for r in rows for t in r["tactics"]), out)
    _table("by family (split, label)", collections.Counter(f"{r['family']} ({r['split']}, {r['label']})" for r in rows), out)
    lengths = sorted(len(words(r["text"])) for r in rows)
    if lengths:
        q = lambda p: lengths[min(int(p * len(lengths)), len(lengths) - 1)]  # noqa: E731
        print(f"\nlength in words: min {lengths[0]}, p10 {q(0.1)}, median {q(0.5)}, p90 {q(0.9)}, max {lengths[-1]}",
              file=out)


def validate(path: Path, labels=LABELS, targets: bool = False, out=None) -> list[str]:
    problems: list[str] = []
    rows = load_rows(path, problems)
    check_schema(rows, labels, problems)
    typed = [r for r in rows if all(isinstance(r.get(f), k) for f, k in FIELDS.items())]
    check_families(typed, problems)
    check_authors(typed, problems)
    check_duplicates(typed, problems)
    print(f"{path}: {len(rows)} rows", file=out)
    report(typed, out)
    comp = composition(typed)
    print("\ncomposition", file=out)
    for key, check, wanted in TARGETS:
        value = comp[key]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        ok = check(value)
        print(f"  {key:<28} {shown:>8}   target {wanted}{'' if ok else '   MISSED'}", file=out)
        if targets and not ok:
            problems.append(f"composition target missed: {key} = {shown}, wanted {wanted}")
    return problems


def build_parser(prog: str = "python -m train.corpus validate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path, help="corpus file (JSONL, CSV or Parquet)")
    p.add_argument("--labels", nargs="+", default=list(LABELS))
    p.add_argument("--targets", action="store_true", help="also enforce the shipped corpus's composition targets")
    return p


def main(argv=None, prog: str = "python -m train.corpus validate") -> int:
    """Exit status 0: valid; 1: problems found (listed); 2: the file cannot be read at all."""
    args = build_parser(prog).parse_args(argv)
    try:
        problems = validate(args.path, tuple(args.labels), args.targets)
    except InputError as err:
        return input_error(err)
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("\nOK: no problems found")
    return 0
