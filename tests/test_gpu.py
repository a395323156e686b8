"""Scoring and training on CUDA GPUs. Marked ``gpu``/``multigpu``: skipped, with the reason,
where there is no GPU or only one (tests/conftest.py)."""

import json

import numpy as np
import pytest
import torch

from conftest import make_rows, tiny_recipe, write_jsonl
from infer import Classifier


@pytest.fixture(scope="module")
def texts():
    return [r["text"] for r in make_rows(40, seed=11)]


@pytest.fixture(scope="module")
def cpu_probs(tiny_model, texts):
    return Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32").predict_proba(texts)


@pytest.mark.gpu
def test_fp32_on_the_gpu_gives_the_cpu_probabilities(tiny_model, texts, cpu_probs):
    gpu = Classifier.from_pretrained(tiny_model, device="cuda", precision="fp32")
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).is_cuda
    # oneDNN prepacking and the matmul attention core are CPU paths; a GPU keeps PyTorch's kernel.
    assert gpu.prepacked_linear_layers == 0 and gpu.attention == "sdpa"
    assert gpu.max_tokens > 2048 and gpu.max_batch_size > 64  # bigger batches than on CPU
    np.testing.assert_allclose(gpu.predict_proba(texts), cpu_probs, atol=1e-4)


@pytest.mark.gpu
def test_auto_precision_on_the_gpu(tiny_model, texts, cpu_probs):
    auto = Classifier.from_pretrained(tiny_model, device="cuda")
    assert auto.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert auto.attention == "sdpa"
    probs = auto.predict_proba(texts)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, cpu_probs, atol=0.05)


@pytest.mark.gpu
def test_the_command_line_scores_on_the_gpu(tiny_model, tmp_path, capsys):
    from infer.cli import main

    src = write_jsonl(tmp_path / "in.jsonl", make_rows(30, seed=2))
    out = tmp_path / "out.jsonl"
    assert main(["--model", str(tiny_model), "--input", str(src), "--output", str(out), "--device", "cuda",
                 "--precision", "fp32", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "GPU: process settings left alone" in err and "on cuda" in err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in got] == ["ok"] * 30


@pytest.mark.gpu
def test_training_on_the_gpu(tiny_base, tiny_data_files, tmp_path):
    from train.recipes import recipe_from_dict, train

    run = train(recipe_from_dict(tiny_recipe(tiny_base, tiny_data_files, num_train_epochs=1, use_cpu=False)),
                tmp_path)
    assert run.metrics["test"]["n"] == 16 and run.metrics["validation"]["n"] == 16
    clf = Classifier.from_pretrained(run.model_dir, device="cuda", precision="fp32")
    assert clf.predict_proba(["hello there"]).shape == (1, 2)


@pytest.mark.multigpu
def test_a_second_gpu_can_be_chosen(tiny_model, texts):
    first = Classifier.from_pretrained(tiny_model, device="cuda:0", precision="fp32")
    second = Classifier.from_pretrained(tiny_model, device="cuda:1", precision="fp32")
    assert next(second.model.parameters()).device == torch.device("cuda:1")
    np.testing.assert_allclose(second.predict_proba(texts), first.predict_proba(texts), atol=1e-5)
