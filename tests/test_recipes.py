"""Training: the ``train()`` API and its model folder, seeding, class weights, label sets,
decoders, bad data and checkpoints; the ``python -m train`` command line."""

import json

import numpy as np
import pytest
import yaml

from conftest import make_rows, tiny_recipe, write_jsonl
from infer import Classifier, ModelManifest
from train.recipes import recipe_from_dict, train
from train.recipes.cli import main
from train.recipes.data import DataError
from train.recipes.full import last_checkpoint


def test_training_writes_a_complete_model_folder(trained_run, tiny_data_files):
    folder = trained_run.model_dir
    assert folder.name == "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "outreach_guard.json", "metrics.json",
                 "training_config.yaml", "README.md"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin"))
    manifest = ModelManifest.load(folder)
    assert manifest == trained_run.manifest
    assert manifest.labels == ["benign", "grooming"] and manifest.positive_label == "grooming"
    assert 0.0 <= manifest.threshold <= 1.0 and manifest.text.max_length == 64
    assert manifest.provenance["method"] == "full" and manifest.provenance["training_rows"] == 48
    assert manifest.provenance["recipe"]["text"]["max_length"] == 64
    metrics = ModelManifest.load_metrics(folder)
    assert metrics == trained_run.metrics
    assert metrics["validation"]["n"] == 16 and metrics["test"]["n"] == 16
    assert metrics["validation"]["threshold"] == manifest.threshold
    # The synthetic classes use different wording: even a tiny model learns them.
    assert metrics["test"]["auroc"] > 0.9
    assert "python -m train --config" in (folder / "README.md").read_text()
    assert not list(folder.parent.glob(".model.*"))  # no staging leftovers

    # Reload and score: the saved threshold decides, metrics are reproducible from the folder
    # (training scores validation and test in fp32; `auto` may pick bf16 on this CPU).
    clf = Classifier.from_pretrained(folder, device="cpu", precision="fp32")
    test_rows = [json.loads(line) for line in open(tiny_data_files["test"])]
    probs = clf.predict_proba([r["text"] for r in test_rows])
    y = np.array([r["label"] == "grooming" for r in test_rows])
    assert ((probs[:, 1] >= manifest.threshold) == y).mean() == pytest.approx(metrics["test"]["accuracy"])


def test_training_is_seeded_and_reproducible(trained_run, tiny_base, tiny_data_files, tmp_path):
    again = train(recipe_from_dict(tiny_recipe(tiny_base, tiny_data_files)), tmp_path)
    assert again.metrics["test"]["auroc"] == trained_run.metrics["test"]["auroc"]
    assert again.metrics["train"]["loss"] == trained_run.metrics["train"]["loss"]
    assert again.manifest.threshold == trained_run.manifest.threshold


def test_class_weights_apply_when_imbalanced(tiny_base, tmp_path):
    rows = make_rows(60, seed=4)
    train_rows = [r for r in rows if r["label"] == "benign"] + [r for r in rows if r["label"] == "grooming"][:8]
    data = {"train": write_jsonl(tmp_path / "t.jsonl", train_rows),
            "validation": write_jsonl(tmp_path / "v.jsonl", make_rows(10, seed=5)),
            "test": write_jsonl(tmp_path / "te.jsonl", make_rows(10, seed=6))}
    run = train(recipe_from_dict(tiny_recipe(tiny_base, data, num_train_epochs=1)), tmp_path / "w")
    weights = run.metrics["train"]["class_weights"]
    assert weights is not None and weights[1] > weights[0]
    assert weights[0] * 30 == pytest.approx(weights[1] * 8)  # inverse class frequency


def test_cli_any_label_names_and_single_file_with_split_column(tiny_base, tmp_path, capsys):
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
    assert main(["--config", str(cfg), "--output-dir", str(tmp_path / "o")]) == 0
    assert f"model written to {tmp_path / 'o' / 'model'}" in capsys.readouterr().out
    clf = Classifier.from_pretrained(tmp_path / "o" / "model", device="cpu")
    assert clf.labels == ["bad", "ok"] and clf.manifest.positive_label == "bad"
    assert {p.label for p in clf.predict(["x", "y"])} <= {"bad", "ok"}
    assert "python -m train --config" in clf.manifest.provenance["command"]


def test_decoder_model_without_pad_token_trains(tmp_path, tiny_data_files):
    """Decoder-only models ship without a pad token; training and scoring must set one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, GPT2Config, GPT2Model, PreTrainedTokenizerFast

    base = tmp_path / "gpt"
    words = sorted({w for r in make_rows(200) for w in r["text"].split()})
    vocab = {w: i for i, w in enumerate(["[UNK]", "<eos>"] + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="[UNK]")
    tok.save_pretrained(base)
    assert AutoTokenizer.from_pretrained(base).pad_token is None
    GPT2Model(GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=128)).save_pretrained(base)
    run = train(recipe_from_dict(tiny_recipe(base, tiny_data_files, num_train_epochs=1)), tmp_path / "g")
    clf = Classifier.from_pretrained(run.model_dir, device="cpu")
    texts = [r["text"] for r in make_rows(10, seed=9)]
    batched = clf.predict_proba(texts)
    single = np.vstack([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)  # right padding is ignored


def test_bad_data_and_bad_recipes_are_clear_errors(tiny_base, tmp_path, capsys):
    rows = make_rows(10) + [{"id": "x1", "text": "hello", "label": "spam"}]
    data = {"train": write_jsonl(tmp_path / "t.jsonl", rows), "validation": write_jsonl(tmp_path / "v.jsonl", make_rows(4)),
            "test": write_jsonl(tmp_path / "te.jsonl", make_rows(4))}
    recipe = tiny_recipe(tiny_base, data)
    with pytest.raises(DataError, match=r"label outside \['benign', 'grooming'\], ids: \['x1'\]"):
        train(recipe_from_dict(recipe), tmp_path / "o")
    # The command line: exit status 2 and one line, for bad data and for a bad recipe.
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    assert main(["--config", str(cfg), "--output-dir", str(tmp_path / "o")]) == 2
    assert main(["--config", str(cfg), "training.no_such_field=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("error: ") and "label outside" in err[-2]
    assert err[-1].startswith("error: ") and "no_such_field" in err[-1]


def test_csv_with_a_byte_order_mark_trains_like_any_other(tiny_base, tmp_path):
    import csv

    paths = {}
    for split, n, seed in (("train", 24, 1), ("validation", 8, 2), ("test", 8, 3)):
        paths[split] = tmp_path / f"{split}.csv"
        with open(paths[split], "w", newline="", encoding="utf-8-sig") as fh:  # starts with a BOM
            writer = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
            writer.writeheader()
            writer.writerows(make_rows(n, seed=seed))
    recipe = recipe_from_dict(tiny_recipe(tiny_base, paths, num_train_epochs=1))
    assert train(recipe, tmp_path / "o").metrics["test"]["n"] == 8


def test_resume_skips_a_half_written_checkpoint(tmp_path):
    for step, state in ((3, '{"global_step": 3}'), (6, None), (12, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert last_checkpoint(tmp_path / "none") is None


def test_a_recipe_pinned_to_the_cpu_scores_on_the_cpu_too(tiny_base, tiny_data_files, tmp_path, monkeypatch):
    """``training.use_cpu``: validation and test are scored on the CPU as well, even where CUDA
    is available (where `auto` would pick the GPU)."""
    import torch

    import train.recipes.run as run_module
    from infer.device import select_device

    load = run_module.Classifier.from_pretrained
    devices = []

    def spy(path, device=None, *args, **kwargs):
        with monkeypatch.context() as patched:
            patched.setattr(torch.cuda, "is_available", lambda: True)
            devices.append(select_device(device).type)  # what this machine would pick if it had a GPU
        return load(path, device, *args, **kwargs)

    monkeypatch.setattr(run_module.Classifier, "from_pretrained", spy)
    train(recipe_from_dict(tiny_recipe(tiny_base, tiny_data_files, num_train_epochs=1)), tmp_path)
    assert devices == ["cpu"]
