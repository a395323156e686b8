import json

import numpy as np
import pytest
import yaml

from conftest import make_rows, write_jsonl
from infer import Classifier
from train.finetune import main


def write_recipe(path, base, data, **extra_training):
    recipe = {
        "model": {"name_or_path": str(base)},
        "data": {"train_file": str(data["train"]), "validation_file": str(data["validation"]),
                 "test_file": str(data["test"]), "labels": ["benign", "grooming"], "positive_label": "grooming"},
        "text": {"max_length": 64},
        "training": {"num_train_epochs": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                     "eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True,
                     "metric_for_best_model": "auprc", "report_to": "none", "seed": 7, "use_cpu": True,
                     "train_sampling_strategy": "group_by_length", "disable_tqdm": True, **extra_training},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_training_writes_a_complete_model_folder(tiny_base, tiny_data, tmp_path):
    cfg = write_recipe(tmp_path / "r.yaml", tiny_base, tiny_data)
    folder = main(["--config", str(cfg), "--output-dir", str(tmp_path / "run")])
    assert folder == tmp_path / "run" / "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "outreach_guard.json", "metrics.json",
                 "training_config.yaml", "README.md"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin"))
    pipeline = json.loads((folder / "outreach_guard.json").read_text())
    assert pipeline["labels"] == ["benign", "grooming"] and pipeline["positive_label"] == "grooming"
    assert 0.0 <= pipeline["threshold"] <= 1.0
    assert pipeline["text"]["max_length"] == 64
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 16 and metrics["test"]["n"] == 16
    assert metrics["validation"]["threshold"] == pipeline["threshold"]
    # The synthetic classes use different wording: even a tiny model learns them.
    assert metrics["test"]["auroc"] > 0.9
    assert "python -m train --config" in (folder / "README.md").read_text()
    assert not list((tmp_path / "run").glob(".model.*"))  # no staging leftovers

    # Reload and score: the saved threshold decides, metrics are reproducible from the folder
    # (training scores validation and test in fp32; `auto` may pick bf16 on this CPU).
    clf = Classifier.from_pretrained(folder, precision="fp32")
    test_rows = [json.loads(line) for line in open(tiny_data["test"])]
    probs = clf.predict_proba([r["text"] for r in test_rows])
    y = np.array([r["label"] == "grooming" for r in test_rows])
    pred = probs[:, 1] >= pipeline["threshold"]
    assert (pred == y).mean() == pytest.approx(metrics["test"]["accuracy"])


def test_training_is_seeded_and_reproducible(tiny_base, tiny_data, tmp_path):
    cfg = write_recipe(tmp_path / "r.yaml", tiny_base, tiny_data, num_train_epochs=1)
    a = json.loads((main(["--config", str(cfg), "--output-dir", str(tmp_path / "a")]) / "metrics.json").read_text())
    b = json.loads((main(["--config", str(cfg), "--output-dir", str(tmp_path / "b")]) / "metrics.json").read_text())
    assert a["test"]["auroc"] == b["test"]["auroc"] and a["train"]["loss"] == b["train"]["loss"]


def test_class_weights_apply_when_imbalanced(tiny_base, tmp_path):
    rows = make_rows(60, seed=4)
    train = [r for r in rows if r["label"] == "benign"] + [r for r in rows if r["label"] == "grooming"][:8]
    data = {"train": write_jsonl(tmp_path / "t.jsonl", train),
            "validation": write_jsonl(tmp_path / "v.jsonl", make_rows(10, seed=5)),
            "test": write_jsonl(tmp_path / "te.jsonl", make_rows(10, seed=6))}
    cfg = write_recipe(tmp_path / "r.yaml", tiny_base, data, num_train_epochs=1)
    metrics = json.loads((main(["--config", str(cfg), "--output-dir", str(tmp_path / "w")]) / "metrics.json").read_text())
    weights = metrics["train"]["class_weights"]
    assert weights is not None and weights[1] > weights[0]
    assert weights[0] * 30 == pytest.approx(weights[1] * 8)  # inverse class frequency


def test_any_label_names_and_single_file_with_split_column(tiny_base, tmp_path):
    rows = []
    for split, seed in (("train", 1), ("validation", 2), ("test", 3)):
        for r in make_rows(24 if split == "train" else 8, seed=seed, prefix=split):
            rows.append({"msg": r["text"], "cls": {"benign": "ok", "grooming": "bad"}[r["label"]],
                         "part": split, "key": r["id"]})
    path = write_jsonl(tmp_path / "all.jsonl", rows)
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_base)},
        "data": {"path": str(path), "split_column": "part", "text_column": "msg", "label_column": "cls",
                 "id_column": "key", "positive_label": "bad"},
        "text": {"max_length": 32},
        "training": {"num_train_epochs": 1, "report_to": "none", "use_cpu": True, "disable_tqdm": True},
    }))
    folder = main(["--config", str(cfg), "--output-dir", str(tmp_path / "o")])
    clf = Classifier.from_pretrained(folder)
    assert clf.labels == ["bad", "ok"] and clf.config.positive_label == "bad"
    assert {p.label for p in clf.predict(["x", "y"])} <= {"bad", "ok"}


def test_decoder_model_without_pad_token_trains(tmp_path, tiny_data):
    """Decoder-only models ship without a pad token; training and scoring must set one."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    base = tmp_path / "gpt"
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for r in make_rows(200) for w in r["text"].split()})
    vocab = {w: i for i, w in enumerate(["[UNK]", "<eos>"] + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="[UNK]")
    tok.save_pretrained(base)
    assert AutoTokenizer.from_pretrained(base).pad_token is None
    GPT2Model(GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=128)).save_pretrained(base)
    recipe = write_recipe(tmp_path / "r.yaml", base, tiny_data, num_train_epochs=1)
    folder = main(["--config", str(recipe), "--output-dir", str(tmp_path / "g")])
    clf = Classifier.from_pretrained(folder)
    texts = [r["text"] for r in make_rows(10, seed=9)]
    batched = clf.predict_proba(texts)
    single = np.vstack([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)  # right padding is ignored


def test_bad_data_is_a_clear_error(tiny_base, tmp_path):
    from train.data import DataError

    rows = make_rows(10) + [{"id": "x1", "text": "hello", "label": "spam"}]
    data = {"train": write_jsonl(tmp_path / "t.jsonl", rows), "validation": write_jsonl(tmp_path / "v.jsonl", make_rows(4)),
            "test": write_jsonl(tmp_path / "te.jsonl", make_rows(4))}
    cfg = write_recipe(tmp_path / "r.yaml", tiny_base, data)
    with pytest.raises(DataError, match=r"label outside \['benign', 'grooming'\], ids: \['x1'\]"):
        main(["--config", str(cfg), "--output-dir", str(tmp_path / "o")])


def test_resume_skips_a_half_written_checkpoint(tmp_path):
    from train.finetune import _last_checkpoint

    for step, state in ((3, '{"global_step": 3}'), (6, None), (12, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert _last_checkpoint(tmp_path / "none") is None
