"""Labelled evaluation rows from a JSONL, CSV or Parquet file, flat or conversation-format.

Read with ``infer.io.read_table``, the one reader scoring and training use. Unlike the
training data (``train.recipes.data``), this keeps every other column so that metrics can be
sliced by it, maps raw label values onto a model's label names, and flattens conversations
into one text per row.

Conversation rows hold a list of messages, each with a speaker role and a text. The documented
flattening rule: keep the messages whose role is in ``roles`` (by default the initiator's, the
side that does the approaching), in their ``idx`` order when messages carry one, else in list
order, and join their texts with a newline. A classifier trained on single outreach messages
then reads what the approacher wrote, as one long message.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from infer.io import Columns, InputError, read_table

from ..recipes.data import DataError

FORMATS = ("flat", "conversation")


@dataclasses.dataclass
class DataSpec:
    """Where labelled rows are and how to read them.

    ``label_map`` maps raw label values to label names (``{true: grooming, false: benign}``);
    booleans are matched as ``true``/``false``. Rows whose ``split_column`` equals a split name
    form that split (see :meth:`LabelledRows.split`). For ``format: conversation`` the text is
    built from ``messages_column`` by the rule in this module's docstring.
    """

    path: str
    format: str = "flat"
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = "id"
    split_column: str = "split"
    label_map: dict | None = None
    messages_column: str = "messages"
    roles: list[str] = dataclasses.field(default_factory=lambda: ["initiator"])
    role_field: str = "role"
    message_text_field: str = "text"
    joiner: str = "\n"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.label_map is not None:
            self.label_map = {label_key(k): str(v) for k, v in self.label_map.items()}

    @property
    def columns(self) -> Columns:
        """The one column spec; a conversation's text comes from ``messages_column``."""
        text = self.text_column if self.format == "flat" else self.messages_column
        return Columns(text=text, id=self.id_column, label=self.label_column, split=self.split_column)

    def describe(self) -> str:
        if self.format == "flat":
            return f"`{self.path}` (text `{self.text_column}`)"
        return (f"`{self.path}` (conversations: the {'/'.join(self.roles)} turns of `{self.messages_column}`, "
                "in order, joined with newlines)")


@dataclasses.dataclass
class LabelledRows:
    ids: list[str]
    texts: list[str]
    labels: list[str]
    columns: dict[str, list]  # every other column, for slicing
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: list[int]) -> "LabelledRows":
        return LabelledRows([self.ids[i] for i in keep], [self.texts[i] for i in keep],
                            [self.labels[i] for i in keep],
                            {name: [values[i] for i in keep] for name, values in self.columns.items()}, self.source)

    def split(self, name: str | None, column: str = "split") -> "LabelledRows":
        """The rows whose ``column`` is ``name`` (all rows when ``name`` is None)."""
        if name is None:
            return self
        if column not in self.columns:
            raise DataError(f"{self.source}: no split column {column!r}; columns: {sorted(self.columns)}")
        return self.subset([i for i, v in enumerate(self.columns[column]) if v == name])

    def has_split(self, name: str, column: str = "split") -> bool:
        return column in self.columns and name in self.columns[column]


def label_key(value) -> str:
    """Raw label value as a string; YAML and JSON booleans become ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_records(path: str | Path, columns: Columns, require=("text", "label")) -> list[dict]:
    """All rows of a JSONL, CSV or Parquet file as dicts (evaluation sets fit in memory)."""
    try:
        return read_table(path, columns=columns, require=require)
    except InputError as err:
        raise DataError(str(err)) from None


def flatten_conversation(messages, roles, role_field: str = "role", text_field: str = "text",
                         joiner: str = "\n") -> str:
    """The texts of the messages whose role is in ``roles``, in ``idx`` order, joined."""
    if isinstance(messages, str):  # a CSV cell holding JSON
        messages = json.loads(messages)
    keep = [m for m in messages if m.get(role_field) in roles]
    if all("idx" in m for m in keep):
        keep.sort(key=lambda m: m["idx"])
    return joiner.join(str(m.get(text_field) or "").strip() for m in keep).strip()


def load_labelled(spec: DataSpec) -> LabelledRows:
    """Read ``spec.path``; every row must have a non-empty text and a (mapped) label."""
    records = read_records(spec.path, spec.columns)
    ids, texts, labels, bad_text, bad_label = [], [], [], [], []
    for number, rec in enumerate(records, 1):
        row_id = label_key(rec[spec.id_column]) if spec.id_column and rec.get(spec.id_column) is not None else str(number)
        if spec.format == "flat":
            text = rec.get(spec.text_column)
        else:
            text = flatten_conversation(rec.get(spec.messages_column) or [], spec.roles, spec.role_field,
                                        spec.message_text_field, spec.joiner)
        raw = rec.get(spec.label_column)
        label = None if raw is None else label_key(raw)
        if spec.label_map is not None:
            label = spec.label_map.get(label)
        if not isinstance(text, str) or not text.strip():
            bad_text.append(row_id)
        if label is None:
            bad_label.append(row_id)
        ids.append(row_id)
        texts.append(text)
        labels.append(label)
    if bad_text:
        raise DataError(f"{spec.path}: {len(bad_text)} rows have no text, ids: {bad_text[:10]}")
    if bad_label:
        what = f"a label outside label_map {sorted(spec.label_map)}" if spec.label_map is not None else "no label"
        raise DataError(f"{spec.path}: {len(bad_label)} rows have {what}, ids: {bad_label[:10]}")
    used = {spec.text_column, spec.label_column, spec.id_column}
    if spec.format == "conversation":
        used.add(spec.messages_column)
    names = [n for n in dict.fromkeys(k for rec in records for k in rec) if n not in used]
    columns = {name: [rec.get(name) for rec in records] for name in names}
    return LabelledRows(ids, texts, labels, columns, source=str(spec.path))
