"""Precision modes and the fast scoring path: same answers as the plain fp32 model, few shapes."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import build_classifier_folder, make_rows, write_jsonl
from infer import Classifier
from infer.batching import length_sorted_batches, padded_length, power_of_two_parts
from infer.agreement import check_agreement
from infer.fastpath.layers import (FusedSelfAttention, PrepackedIntermediate, PrepackedLinear, PrepackedResidualOutput,
                          fuse_self_attention, masked_softmax_attention, onednn_linear_supported,
                          prepack_linear_layers)
from infer.fastpath import FirstTokenLayer, compute_last_layer_for_first_token, optimize_for_inference
from infer.text import TextSettings


@pytest.fixture(scope="module")
def fp32(tiny_model):
    return Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def texts():
    return [r["text"] for r in make_rows(40, seed=11)]


def _plain_model_probs(folder, texts, settings):
    """Reference: the unmodified transformers model, one text at a time, no padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from infer.text import normalize_text

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.inference_mode():
        for t in texts:
            enc = tokenizer(normalize_text(t, settings), truncation=True, max_length=settings.max_length,
                            return_tensors="pt")
            out.append(torch.softmax(model(**enc).logits, -1)[0].numpy())
    return np.array(out)


def test_fast_path_matches_the_plain_model(fp32, tiny_model, texts):
    # Length-sorted, padded to multiples of 8, last layer for the first token only, blocks
    # tokenised ahead on a thread: none of it may change a probability.
    assert fp32.first_token_last_layer
    assert isinstance(fp32.model.bert.encoder.layer[-1], FirstTokenLayer)
    expected = _plain_model_probs(tiny_model, texts, fp32.manifest.text)
    np.testing.assert_allclose(fp32.predict_proba(texts), expected, atol=1e-5)


def test_fused_attention_matches_the_plain_model_in_both_attention_cores(tiny_model, texts):
    # fp32 keeps PyTorch's attention kernel behind the fused QKV projection; bf16/fp16 on CPU
    # use plain matmul + softmax attention. Both must give the plain model's probabilities.
    clf = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32", prepack_weights=False)
    layers = clf.model.bert.encoder.layer
    assert clf.fused_attention_layers == len(layers) - 1 and clf.attention == "sdpa"
    assert isinstance(layers[0].attention.self, FusedSelfAttention)
    expected = _plain_model_probs(tiny_model, texts, clf.manifest.text)
    np.testing.assert_allclose(clf.predict_proba(texts), expected, atol=1e-5)
    assert fuse_self_attention(clf.model, manual_attention=True) == len(layers) - 1  # switches, no re-wrapping
    assert layers[0].attention.self.manual_attention
    np.testing.assert_allclose(clf.predict_proba(texts), expected, atol=1e-5)


def test_bf16_on_cpu_uses_matmul_softmax_attention(tiny_model):
    bf16 = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16")
    assert bf16.attention == "matmul+softmax"
    plain = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16", fast_path=False)
    _, compiled = optimize_for_inference(plain.model, plain.device, "bf16", compile_model=True)
    assert compiled.attention == "sdpa"  # torch.compile gets the fused kernel it knows
    assert compiled.prepacked_linear_layers == 0  # and plain nn.Linear layers
    forced = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16", attention="sdpa")
    matmul = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16", attention="matmul")
    assert forced.attention == "sdpa" and matmul.attention == "matmul+softmax"
    texts = ["a short note", "a longer message " * 9, "hi"]
    np.testing.assert_allclose(forced.predict_proba(texts), matmul.predict_proba(texts), atol=0.02)
    with pytest.raises(ValueError, match="attention must be one of"):
        Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16", attention="flash")


def test_prepacked_linear_layers_match_the_plain_model(tiny_model, texts):
    # The default CPU path: every encoder linear layer on oneDNN prepacked weights, bias and
    # residual added in the kernel, GELU in place. Same probabilities as the plain model in
    # fp32, and a bf16 model agrees with its unpacked self.
    assert onednn_linear_supported(torch.float32)
    clf = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")
    layers = clf.model.bert.encoder.layer
    # per full layer: QKV, attention output, feed-forward in and out; the first-token layer has
    # separate query, key and value projections
    assert clf.prepacked_linear_layers == 4 * (len(layers) - 1) + 6
    assert isinstance(layers[0].attention.self.qkv, PrepackedLinear)
    assert isinstance(layers[0].attention.output, PrepackedResidualOutput)
    assert isinstance(layers[0].intermediate, PrepackedIntermediate) and layers[0].intermediate.exact_gelu
    assert isinstance(layers[-1].layer.attention.self.key, PrepackedLinear)
    assert not any(isinstance(m, torch.nn.Linear) for m in clf.model.bert.encoder.modules())
    expected = _plain_model_probs(tiny_model, texts, clf.manifest.text)
    np.testing.assert_allclose(clf.predict_proba(texts), expected, atol=1e-5)
    assert prepack_linear_layers(clf.model) == clf.prepacked_linear_layers  # idempotent
    np.testing.assert_allclose(clf.predict_proba(texts), expected, atol=1e-5)

    if onednn_linear_supported(torch.bfloat16):
        packed = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16")
        plain = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16", prepack_weights=False)
        assert packed.prepacked_linear_layers and not plain.prepacked_linear_layers
        np.testing.assert_allclose(packed.predict_proba(texts), plain.predict_proba(texts), atol=0.02)


def test_prepacked_linear_adds_bias_and_residual(tiny_base):
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 24)
    x, residual = torch.randn(3, 5, 16), torch.randn(3, 5, 24)
    packed = PrepackedLinear(linear)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), linear(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(packed(x, residual), linear(x) + residual, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(packed(x[:, :1]), linear(x[:, :1]), atol=1e-5, rtol=1e-5)  # a strided view
    # Models it does not know are left alone.
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=2)
    model.config.is_decoder = True
    assert prepack_linear_layers(model) == 0
    assert all(isinstance(layer.intermediate.dense, torch.nn.Linear) for layer in model.bert.encoder.layer)


@pytest.mark.parametrize("padding", ["right", "left", "none"])
def test_masked_softmax_attention_equals_sdpa(padding):
    torch.manual_seed(0)
    batch, heads, length, size = 5, 3, 13, 8
    q, k, v = (torch.randn(batch, heads, length, size) for _ in range(3))
    lengths = torch.tensor([13, 12, 9, 4, 1])
    positions = torch.arange(length)[None, :]
    keep = {"right": positions < lengths[:, None], "left": positions >= length - lengths[:, None],
            "none": torch.ones(batch, length, dtype=torch.bool)}[padding][:, None, None, :]
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=0.3)
    torch.testing.assert_close(masked_softmax_attention(q, k, v, keep, 0.3), expected, atol=1e-5, rtol=1e-5)
    additive = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
    torch.testing.assert_close(masked_softmax_attention(q, k, v, additive, 0.3), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked_softmax_attention(q, k, v, None, 0.3),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3),
                               atol=1e-5, rtol=1e-5)
    # bf16 takes the exp(log_softmax) route: bf16 rounding only.
    q16, k16, v16 = (t.bfloat16() for t in (q, k, v))
    expected16 = torch.nn.functional.scaled_dot_product_attention(q16.float(), k16.float(), v16.float(),
                                                                  attn_mask=keep, scale=0.3)
    torch.testing.assert_close(masked_softmax_attention(q16, k16, v16, keep, 0.3).float(), expected16,
                               atol=0.03, rtol=0.03)


def test_cpu_allocator_tuning_can_be_turned_off(monkeypatch):
    import platform
    import sys

    from infer import device as device_module

    # The tuning is process-wide and remembered: start each check afresh, as a new process would.
    monkeypatch.setattr(device_module, "_allocator_tuned", None)
    monkeypatch.setenv("OUTREACH_GUARD_MALLOC", "default")
    assert (device_module.tune_cpu_allocator(), device_module.tune_cpu_allocator()) == (False, False)
    monkeypatch.setattr(device_module, "_allocator_tuned", None)
    monkeypatch.delenv("OUTREACH_GUARD_MALLOC")
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    # (The scoring command tunes this process too, so tuning it here changes nothing new.)
    assert (device_module.tune_cpu_allocator(), device_module.tune_cpu_allocator()) == (glibc, glibc)


def test_blocks_tokenised_ahead_keep_order_and_windows(tiny_base, tmp_path, texts):
    folder = build_classifier_folder(tmp_path / "m", tiny_base,
                                     text=TextSettings(max_length=16, long_text="sliding_window", window_stride=4))
    one_block = Classifier.from_pretrained(folder, device="cpu", precision="fp32")
    many_blocks = Classifier.from_pretrained(folder, device="cpu", precision="fp32", encode_block_size=3)
    mixed = texts[:7] + [" ".join(f"word{i}" for i in range(120))] + texts[7:12]
    np.testing.assert_allclose(many_blocks.predict_proba(mixed), one_block.predict_proba(mixed), atol=1e-6)


def test_first_token_layer_only_where_the_head_reads_the_first_token(tiny_model):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    model.config.is_decoder = True  # a causal model: its first token sees nothing else
    assert compute_last_layer_for_first_token(model) is False
    assert fuse_self_attention(model) == 0
    model.config.is_decoder = False
    assert compute_last_layer_for_first_token(model) is True
    assert compute_last_layer_for_first_token(model) is True  # idempotent: no double wrapping
    assert not isinstance(model.bert.encoder.layer[-1].layer, FirstTokenLayer)


def test_bf16_mode_runs_in_bf16_and_agrees_with_fp32(tiny_model, fp32, texts):
    bf16 = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16")
    assert bf16.precision == "bf16"
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    probs = bf16.predict_proba(texts)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, fp32.predict_proba(texts), atol=0.05)
    agreement, max_diff = check_agreement(bf16, texts, path=tiny_model)
    assert 0.0 < max_diff < 0.05
    labels_equal = np.mean(np.array(bf16.decide(probs)) == np.array(fp32.decide(fp32.predict_proba(texts))))
    assert agreement == pytest.approx(labels_equal)


def test_check_agreement_option_reports_on_the_first_rows(tiny_model, tmp_path, capsys):
    from infer.cli import main

    source = write_jsonl(tmp_path / "in.jsonl", make_rows(12, seed=4))
    code = main(["--model", str(tiny_model), "--input", str(source), "--output", str(tmp_path / "out.jsonl"),
                 "--device", "cpu", "--precision", "bf16", "--check-agreement", "5", "--no-progress"])
    assert code == 0
    err = capsys.readouterr().err
    assert "agreement check, bf16 vs fp32 on 5 rows" in err
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 12


def test_gpu_settings_take_bigger_batches(tiny_model):
    # Constructed only (no GPU here): the budgets a CUDA device gets.
    cpu = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")
    gpu = Classifier(cpu.model, cpu.tokenizer, cpu.manifest, torch.device("cuda"), "bf16")
    assert gpu.max_tokens > cpu.max_tokens and gpu.max_batch_size > cpu.max_batch_size


def test_padded_width_is_a_multiple_within_max_length(fp32):
    for longest in (1, 7, 8, 9, 60, 63, 64):
        ids, mask = fp32._padded_batch([[101] * longest, [101, 102]])
        width = ids.shape[1]
        assert width >= longest and mask[0].sum() == longest and mask[1].sum() == 2
        assert width % 8 == 0 or width == fp32.manifest.text.max_length
        assert width <= max(longest, fp32.manifest.text.max_length)


def test_power_of_two_parts():
    assert [len(p) for p in power_of_two_parts(list(range(13)))] == [8, 4, 1]
    assert [len(p) for p in power_of_two_parts(list(range(16)))] == [16]
    assert list(power_of_two_parts([])) == []


@given(st.lists(st.integers(min_value=1, max_value=256), min_size=1, max_size=400),
       st.sampled_from([512, 2048, 8192]), st.sampled_from([16, 64]))
def test_batch_shapes_come_from_a_small_fixed_set(lengths, max_tokens, max_batch):
    # Memory stays flat only if the model sees few distinct shapes whatever the input: widths
    # are multiples of 8, and a batch is either full for its width or a power of two.
    for batch in length_sorted_batches(lengths, max_tokens, max_batch, pad_multiple=8):
        width = padded_length(max(lengths[i] for i in batch), 8)
        capacity = max(1, min(max_batch, max_tokens // width))
        assert len(batch) == capacity or (len(batch) & (len(batch) - 1)) == 0
        assert len(batch) * width <= max(max_tokens, width)


def test_memory_shapes_bounded_over_many_inputs(fp32):
    seen = set()
    original = fp32._padded_batch

    def record(batch):
        ids, mask = original(batch)
        seen.add(tuple(ids.shape))
        return ids, mask

    fp32._padded_batch = record
    try:
        rng = np.random.default_rng(0)
        for _ in range(6):
            fp32.predict_proba(["word " * int(n) for n in rng.integers(1, 70, size=int(rng.integers(5, 90)))])
    finally:
        del fp32._padded_batch
    widths = {w for _, w in seen}
    sizes = {b for b, _ in seen}
    assert all(w % 8 == 0 or w == fp32.manifest.text.max_length for w in widths)
    assert len(sizes) <= len(widths) + 7  # full batches per width, plus 1, 2, 4 ... 64
