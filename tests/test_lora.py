"""Decoder LLMs with LoRA: tiny random Llama, Qwen2 and Gemma3 models built here, with the
packaged MiniLM tokenizer. A few LoRA steps through ``train.recipes.train``, the merged model
saved and reloaded with ``Classifier``; padding on either side and mixed lengths give each row
the logits it gets alone; rows come back in input order; bf16 agrees with fp32."""

import json

import numpy as np
import pytest
import torch

from conftest import MINILM_DIR, make_rows, tiny_recipe

ARCHS = ("llama", "qwen2", "gemma3")


def tiny_decoder_config(arch: str, vocab_size: int):
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common)
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(**common, head_dim=8, sliding_window=16)


def build_decoder_base(folder, arch: str, pad: bool = True):
    """A 2-layer, 32-wide random decoder (causal LM) and the MiniLM tokenizer, saved to ``folder``.
    ``pad=False``: the tokenizer has no pad token and ``[SEP]`` is its eos (as in GPT-2 style tokenizers)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MINILM_DIR)
    if not pad:
        tokenizer.eos_token = "[SEP]"
        tokenizer.pad_token = None
    AutoModelForCausalLM.from_config(tiny_decoder_config(arch, len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=ARCHS)
def lora_run(request, tiny_data_files, tmp_path_factory):
    """One LoRA run per architecture (read-only for tests): base, recipe, the TrainingRun."""
    from train.recipes import recipe_from_dict, train

    base = build_decoder_base(tmp_path_factory.mktemp(f"{request.param}_base"), request.param)
    raw = tiny_recipe(base, tiny_data_files, num_train_epochs=1, learning_rate=5e-3)
    raw.update(method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    recipe = recipe_from_dict(raw)
    run = train(recipe, tmp_path_factory.mktemp(f"{request.param}_lora"), command="lora test")
    return request.param, base, recipe, run


def load_model(folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return (AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(folder))


def test_lora_saves_merged_safetensors_and_the_adapter(lora_run):
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    arch, base, recipe, run = lora_run
    folder = run.model_dir
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    with safe_open(folder / "model.safetensors", "pt") as fh:
        keys = list(fh.keys())
    assert keys and not [k for k in keys if "lora_" in k or "base_layer" in k or "modules_to_save" in k]
    config = json.loads((folder / "config.json").read_text())
    assert config["pad_token_id"] is not None and config["use_cache"] is False
    assert json.loads((folder / "outreach_guard.json").read_text())["provenance"]["method"] == "lora"
    assert run.metrics["train"]["rows"] == 48 and "f1" in run.metrics["test"]

    # The adapter alone, put on the base, gives the merged model's logits.
    adapter = folder / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    merged, tokenizer = load_model(folder)
    base_model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, dtype=torch.float32)
    base_model.config.pad_token_id = tokenizer.pad_token_id
    unmerged = PeftModel.from_pretrained(base_model, adapter).eval()
    batch = tokenizer([r["text"] for r in make_rows(6, seed=9)], padding=True, truncation=True, max_length=128,
                      return_tensors="pt")
    with torch.inference_mode():
        a = merged(**batch).logits
        b = unmerged(**batch).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

    # Training moved weights: the adapted projections differ from the base, the embeddings do not.
    from safetensors.torch import load_file

    before = load_file(base / "model.safetensors")
    after = load_file(folder / "model.safetensors")
    q = next(k for k in after if k.endswith("layers.0.self_attn.q_proj.weight"))
    emb = next(k for k in after if k.endswith("embed_tokens.weight"))
    assert not torch.allclose(after[q], before[q])
    torch.testing.assert_close(after[emb], before[emb])


def test_lora_trains_only_adapters_and_the_head(tiny_data_files, tmp_path):
    from train.recipes import recipe_from_dict
    from train.recipes.lora import load_model as lora_load

    base = build_decoder_base(tmp_path / "base", "llama")
    raw = tiny_recipe(base, tiny_data_files)
    raw.update(method="lora", lora={"r": 2, "target_modules": ["q_proj", "v_proj"]})
    tokenizer, model = lora_load(recipe_from_dict(raw), ["benign", "grooming"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".score." in n for n in trainable)
    assert any(".score." in n for n in trainable)  # the head in full
    assert not [n for n in trainable if "k_proj" in n or "mlp" in n]  # only the named targets
    assert model.config.pad_token_id == tokenizer.pad_token_id and tokenizer.padding_side == "right"


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_side_and_mixed_lengths_give_each_row_its_solo_logits(lora_run, side):
    _, _, _, run = lora_run
    model, tokenizer = load_model(run.model_dir)
    texts = [r["text"] for r in make_rows(8, seed=4)]
    lengths = [len(tokenizer(t, truncation=True, max_length=128).input_ids) for t in texts]
    assert len(set(lengths)) > 3  # the batch really mixes lengths
    tokenizer.padding_side = side
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        batched = model(**batch).logits
        solo = torch.cat([model(**tokenizer([t], truncation=True, max_length=128, return_tensors="pt")).logits
                          for t in texts])
    torch.testing.assert_close(batched, solo, atol=1e-4, rtol=1e-4)


def test_classifier_scores_decoders_in_input_order(lora_run):
    from infer.classifier import Classifier

    _, _, _, run = lora_run
    clf = Classifier.from_pretrained(run.model_dir, device="cpu", precision="fp32", max_tokens=256, max_batch_size=4)
    assert clf.fast_path.describe() == "no layer rewrites"  # the encoder-only fast paths leave decoders alone
    texts = [r["text"] for r in make_rows(13, seed=5)]
    probs = clf.predict_proba(texts)
    solo = np.concatenate([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(probs, solo, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    order = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(clf.predict_proba([texts[i] for i in order]), probs[order], atol=1e-5)
    assert [p.label for p in clf.predict(texts)] == clf.decide(probs)


def test_bf16_scoring_agrees_with_fp32(lora_run):
    from infer.classifier import Classifier

    _, _, _, run = lora_run
    texts = [r["text"] for r in make_rows(16, seed=6)]
    fp32 = Classifier.from_pretrained(run.model_dir, device="cpu", precision="fp32").predict_proba(texts)
    bf16 = Classifier.from_pretrained(run.model_dir, device="cpu", precision="bf16").predict_proba(texts)
    np.testing.assert_allclose(bf16, fp32, atol=0.03)


def eos_only_tokenizer():
    """A word-level tokenizer with no pad token at all, appending its eos ``</s>`` to every text
    (as some decoder tokenizers do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for r in make_rows(40, seed=8) for w in r["text"].split()} | {"a", "short", "one"})
    vocab = {"<unk>": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")


def test_eos_as_pad_reads_the_token_before_a_trailing_eos_alike_alone_and_batched():
    from transformers import AutoModelForSequenceClassification

    from train.recipes.lora import set_pad_token

    tokenizer = eos_only_tokenizer()
    assert tokenizer.pad_token is None
    assert set_pad_token(tokenizer) == "eos" and tokenizer.pad_token_id == tokenizer.eos_token_id
    torch.manual_seed(0)
    config = tiny_decoder_config("qwen2", len(tokenizer))
    config.num_labels = 2
    model = AutoModelForSequenceClassification.from_config(config).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    # Every text ends with eos, here also the pad: the head reads the token before it, the same
    # with or without the trailing eos, alone or padded in a batch of mixed lengths.
    texts = ["a short one"] + [r["text"] for r in make_rows(3, seed=8)]
    ids = tokenizer(texts).input_ids
    assert all(row[-1] == tokenizer.eos_token_id for row in ids) and len({len(r) for r in ids}) > 1
    with torch.inference_mode():
        alone = torch.cat([model(input_ids=torch.tensor([row])).logits for row in ids])
        trimmed = torch.cat([model(input_ids=torch.tensor([row[:-1]])).logits for row in ids])
        batched = model(**tokenizer.pad({"input_ids": ids}, return_tensors="pt")).logits
    torch.testing.assert_close(alone, trimmed, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def test_set_pad_token_prefers_a_dedicated_pad_token(tmp_path):
    from transformers import AutoTokenizer

    from train.recipes.lora import set_pad_token

    tokenizer = AutoTokenizer.from_pretrained(MINILM_DIR)
    assert set_pad_token(tokenizer) == "tokenizer" and tokenizer.pad_token == "[PAD]"
    tokenizer.eos_token = "[SEP]"
    tokenizer.pad_token = "[SEP]"  # pad named as eos, while the vocabulary has a real pad token
    assert set_pad_token(tokenizer) == "dedicated" and tokenizer.pad_token == "[PAD]"


def test_lora_recipe_fields_are_checked():
    from train.recipes import recipe_from_dict

    raw = {"model": {"name_or_path": "x"}, "data": {"path": "d.jsonl"}, "training": {}}
    assert recipe_from_dict(dict(raw)).to_dict().get("lora") is None
    with pytest.raises(ValueError, match="method: lora"):
        recipe_from_dict({**raw, "lora": {"r": 4}})
    with pytest.raises(ValueError, match="lora.r"):
        recipe_from_dict({**raw, "method": "lora", "lora": {"r": 0}})
    with pytest.raises(ValueError, match="unknown fields"):
        recipe_from_dict({**raw, "method": "lora", "lora": {"rank": 4}})
    with pytest.raises(ValueError, match="target_modules"):
        recipe_from_dict({**raw, "method": "lora", "lora": {"target_modules": "attention"}})
    recipe = recipe_from_dict({**raw, "method": "lora", "lora": {"r": 8, "target_modules": ["q_proj"]}})
    assert recipe.to_dict()["lora"] == {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj"],
                                        "save_adapter": True}


def test_activation_checkpointing_trains_the_adapters(tiny_data_files, tmp_path):
    """``training.activation_checkpointing`` (a recipe field): the frozen backbone still passes
    gradients to the adapters (non-reentrant checkpointing), and the merged model is plain."""
    from peft.tuners.lora import LoraLayer

    from infer.manifest import TaskSpec
    from train.recipes import recipe_from_dict
    from train.recipes.lora import fit, load_model as lora_load
    from train.recipes.run import tokenized
    from train.recipes.data import load_splits

    base = build_decoder_base(tmp_path / "base", "llama")
    raw = tiny_recipe(base, tiny_data_files, max_steps=2, eval_strategy="no", save_strategy="no",
                      load_best_model_at_end=False, activation_checkpointing=True, learning_rate=1e-2)
    raw.update(method="lora", lora={"r": 2, "save_adapter": False})
    recipe = recipe_from_dict(raw)
    tokenizer, model = lora_load(recipe, ["benign", "grooming"])
    train_ds = tokenized(load_splits(recipe.data)["train"], tokenizer, recipe, {"benign": 0, "grooming": 1})
    fitted = fit(recipe, model, tokenizer, train_ds, None, TaskSpec(("benign", "grooming"), "grooming"), tmp_path)
    assert fitted.model.is_activation_checkpointing
    assert not [m for m in fitted.model.modules() if isinstance(m, LoraLayer)] and fitted.adapter_dir is None
    # The adapters learned (lora_B starts at zero): the merged projections moved off the base.
    from safetensors.torch import load_file

    base_q = load_file(base / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert not torch.allclose(fitted.model.model.layers[0].self_attn.q_proj.weight, base_q)
