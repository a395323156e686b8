"""The benchmark's smoke run (CI): the table's structure and computed agreement, never speed."""

import json

import numpy as np
import pytest
from transformers import BertConfig

from conftest import make_rows, write_jsonl
from infer.agreement import label_agreement
from infer.manifest import TaskSpec
from train.benchmarks.throughput import encoder_flops, main, parse_mode


@pytest.fixture
def corpus(tmp_path):
    rows = make_rows(30, seed=7)
    for i, row in enumerate(rows):
        row["split"] = "test" if i % 3 == 0 else "train"
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def test_smoke_run_prints_the_table_with_agreement(tiny_model, corpus, tmp_path, capsys):
    report_file = tmp_path / "bench.json"
    # On CPU: the bf16 attention core, oneDNN prepacking and the profile's operators are CPU paths.
    assert main(["--model", str(tiny_model), "--data", str(corpus), "--device", "cpu", "--rows", "24",
                 "--rounds", "3", "--modes", "fp32,bf16", "--warmup-rows", "4", "--memory-rows", "10,40", "--peak-size", "256",
                 "--profile", "bf16", "--json", str(report_file)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| scorer |"))
    table = lines[header + 2:header + 5]
    assert [row.split(" | ")[0] for row in table] == [
        "| transformers pipeline, batch_size=32", "| outreach-guard fp32", "| outreach-guard bf16"]
    assert all(row.count(" | ") == lines[header].count(" | ") for row in table)
    assert "matmul peak: " in out and "3 interleaved rounds" in out and "test split (10 rows)" in out
    assert "CPU time in the timed rounds, user + system" in out and "real tokens" in out

    report = json.loads(report_file.read_text())
    results = {r["mode"]: r for r in report["results"]}
    for r in results.values():
        assert r["msgs_per_s_min"] <= r["msgs_per_s"] <= r["msgs_per_s_max"]
        assert r["peak_rss_bytes"] > 0 and r["gflops"] > 0 and r["peak_fraction"] > 0
        assert 0.0 <= r["label_agreement"] <= 1.0
        assert r["user_cpu_s"] > 0 and r["system_cpu_s"] >= 0
    assert 0.5 < report["real_token_fraction"] <= 1.0 and report["tokenize_msgs_per_s"] > 0
    assert results["bf16"]["facts"]["attention"] == "matmul+softmax" and results["fp32"]["facts"]["attention"] == "sdpa"
    assert results["pipeline"]["vs_pipeline"] == pytest.approx(1.0)
    # The project's fp32 scorer gives the pipeline's probabilities on the same (normalised) text.
    assert results["pipeline"]["max_prob_diff"] < 1e-4 and results["pipeline"]["label_agreement"] == 1.0
    assert results["fp32"]["max_prob_diff"] == 0.0
    assert 0.0 < results["bf16"]["max_prob_diff"] < 0.05
    assert list(report["profiles"]) == ["bf16"]
    top = report["profiles"]["bf16"]["top"]
    assert top and all(t["op"].startswith("aten::") or "::" in t["op"] for t in top)
    assert "mkldnn::_linear_pointwise" in {t["op"] for t in top} and sum(t["share"] for t in top) <= 1.0 + 1e-9
    assert results["bf16"]["facts"]["prepacked_linear_layers"] > 0
    assert "Where `bf16` spends its time" in out
    assert [m["rows"] for m in report["memory"]] == [10, 40]
    assert all(m["peak_rss_bytes"] > 0 for m in report["memory"])


def test_flops_of_the_first_token_layer():
    config = BertConfig(hidden_size=8, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2)
    full, first = encoder_flops(config, [1, 1]), encoder_flops(config, [1, 1], first_token_last_layer=True)
    assert full == first  # one token: the first token is all there is
    full, first = encoder_flops(config, [40]), encoder_flops(config, [40], first_token_last_layer=True)
    assert full / 3 * 2 < first < full
    assert encoder_flops(object(), [5]) is None  # not a BERT-style config: no figure rather than a wrong one


def test_label_agreement_uses_the_saved_threshold():
    config = TaskSpec(("benign", "grooming"), "grooming", 0.3)
    reference = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    probs = np.array([[0.65, 0.35], [0.6, 0.4], [0.1, 0.9]])
    agreement, max_diff = label_agreement(config, reference, probs)
    assert agreement == pytest.approx(2 / 3) and max_diff == pytest.approx(0.15)


def test_profile_modes_must_be_benchmarked(tiny_model, corpus):
    with pytest.raises(ValueError, match="--profile int8-dynamic"):
        main(["--model", str(tiny_model), "--data", str(corpus), "--device", "cpu", "--rows", "4",
              "--rounds", "1", "--modes", "fp32", "--profile", "int8-dynamic"])


def test_modes_are_validated():
    assert parse_mode("bf16+compile") == ("bf16", True, "auto", None)
    assert parse_mode("bf16+sdpa") == ("bf16", False, "sdpa", None)
    assert parse_mode("fp32+matmul+compile") == ("fp32", True, "matmul", None)
    assert parse_mode("auto+noprepack").prepack is False
    for bad in ("bf16+sdpa+matmul", "bf16+compile+compile", "bf16+fast", "bf16+noprepack+noprepack"):
        with pytest.raises(ValueError, match="unknown mode"):
            parse_mode(bad)
    with pytest.raises(ValueError, match="unknown mode"):
        parse_mode("int4")


def test_a_blended_mean_pooling_folder_has_no_pipeline_row(tiny_model, corpus, tmp_path, capsys):
    """transformers.pipeline would put a fresh head on a mean-pooling encoder: no such row."""
    import shutil

    from infer.manifest import ModelManifest

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    manifest = ModelManifest.load(folder)
    manifest.replace(temperature=2.0).save(folder)  # any non-plain folder
    report_file = tmp_path / "bench.json"
    assert main(["--model", str(folder), "--data", str(corpus), "--device", "cpu", "--rows", "8", "--rounds", "1",
                 "--modes", "fp32", "--warmup-rows", "2", "--peak-size", "64", "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert [r["mode"] for r in report["results"]] == ["fp32"]
    assert report["results"][0]["vs_pipeline"] is None
    assert "| outreach-guard fp32 |" in capsys.readouterr().out


def test_decoder_flops_count_every_projection_of_a_llama_layer():
    import torch
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=50)
    linear = sum(m.weight.numel() for m in LlamaModel(config).layers.modules() if isinstance(m, torch.nn.Linear))
    # 2 FLOPs per weight per token, plus Q.K and the weighted sum over the sequence in each layer.
    assert encoder_flops(config, [3, 7]) == 2 * linear * 10 + 2 * 4 * 16 * (9 + 49)
