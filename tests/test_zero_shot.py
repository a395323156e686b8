"""The zero-shot instruct-LLM benchmark system, on a tiny random Llama built here (the packaged
MiniLM tokenizer, no chat template): answer-word probabilities per row, in input order, and the
system through the quality benchmark with its threshold picked on validation."""

import csv
import json

import numpy as np
import pytest

from conftest import make_corpus, make_rows, write_jsonl
from test_lora import build_decoder_base
from test_quality_bench import _config
from train.benchmarks.quality import main


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    return build_decoder_base(tmp_path_factory.mktemp("tiny_llm"), "llama")


def test_zero_shot_probabilities_per_row_in_input_order(tiny_llm):
    from train.benchmarks.zero_shot import ZeroShotLLM

    llm = ZeroShotLLM(str(tiny_llm), ["benign", "grooming"], "grooming", max_length=48, max_tokens=512,
                      max_batch_size=4)
    texts = [r["text"] for r in make_rows(9, seed=3)]
    probs = llm.predict_proba(texts)
    assert probs.shape == (9, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.std(probs[:, 1]) > 0  # texts are told apart
    solo = np.concatenate([llm.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(probs, solo, atol=1e-5)  # padding and batching change nothing
    order = np.random.default_rng(1).permutation(9)
    np.testing.assert_allclose(llm.predict_proba([texts[i] for i in order]), probs[order], atol=1e-5)
    with pytest.raises(ValueError, match="binary"):
        ZeroShotLLM(str(tiny_llm), ["a", "b", "c"], "a")


def test_zero_shot_system_in_the_quality_benchmark(tiny_llm, tmp_path):
    data = write_jsonl(tmp_path / "corpus.jsonl",
                       make_corpus({"train": 8, "validation": 12, "test": 10, "test_authors": 6}, seed=2))
    cfg = _config(tmp_path, data, [{"name": "llm_zero_shot", "kind": "zero_shot_llm", "model": str(tiny_llm),
                                    "max_length": 48}], datasets=1)
    out = tmp_path / "out"
    assert main(["--config", str(cfg), "--output-dir", str(out)]) == 0
    (row,) = list(csv.DictReader(open(out / "benchmark.csv", newline="")))
    assert row["system"] == "llm_zero_shot" and int(row["n"]) == 10 and row["training_rows"] == "0"
    result = json.loads((out / "synthetic" / "llm_zero_shot" / "metrics.json").read_text())
    assert result["threshold_source"] == "best F1 on the validation split"
    assert 0.0 <= float(row["threshold"]) <= 1.0
