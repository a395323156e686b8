"""LoRA fine-tuning: low-rank adapters on a frozen backbone, a classification head trained in full.

For any ``AutoModelForSequenceClassification`` model, decoder LLMs above all (Llama, Qwen2/3,
Gemma3, Mistral, GPT-2 families): ``peft.LoraConfig(task_type="SEQ_CLS")`` with the rank,
alpha, dropout and target modules of the recipe's ``lora`` group (default: every linear layer
of the backbone). Only peft's own API is used (``get_peft_model``, ``PeftModel``,
``merge_and_unload``), not transformers' ``model.add_adapter``, which needs a newer peft.

After training the adapters are merged into the backbone, so the saved model folder is an
ordinary safetensors checkpoint: scoring needs neither peft nor the base model. With
``lora.save_adapter`` the adapter alone (and the head) also goes to ``<model>/adapter/``.

Padding, deliberately: decoders read the classification head at the last real token, so
``pad_token_id`` is always set on the model config (:func:`set_pad_token`: the tokenizer's
own pad token, else a dedicated pad token it has, else eos), training and scoring pad on the
right, and transformers' head picks the rightmost non-pad token, which is the last real token
whatever the padding side. The tests check left- and right-padded batches against each other
and against each row scored alone.

Same interface as :mod:`train.recipes.full`: ``load_model(recipe, labels)`` and ``fit(...)``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from .config import Recipe
from .full import FitResult

logger = logging.getLogger("train")

#: Pad tokens a tokenizer may have without naming one: special tokens that never come out of
#: tokenising text (Gemma ``<pad>``, BERT ``[PAD]``, Llama 3's fine-tuning pad, others).
DEDICATED_PAD_TOKENS = ("<pad>", "[PAD]", "<|pad|>", "<|finetune_right_pad_id|>", "<|PAD_TOKEN|>", "<|padding|>")


@dataclasses.dataclass
class LoraFitResult(FitResult):
    adapter_dir: Path | None = None  # the adapter alone, saved before merging (run.py moves it into the model folder)


def set_pad_token(tokenizer) -> str:
    """Give ``tokenizer`` a pad token if it has none; returns where it came from: ``tokenizer``
    (its own), ``dedicated`` (a special pad token from :data:`DEDICATED_PAD_TOKENS` that it
    defines but did not name) or ``eos``.

    With eos as the pad, a text whose tokens end in eos is read one token earlier (its eos looks
    like padding); it is read the same way alone and in a batch, so scores stay consistent.
    """
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return "tokenizer"
    specials = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    for token in DEDICATED_PAD_TOKENS:
        if token in specials:
            tokenizer.pad_token = token
            return "dedicated"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad token nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return "eos"


def lora_config(recipe: Recipe):
    from peft import LoraConfig, TaskType

    target = recipe.lora.target_modules
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=int(recipe.lora.r), lora_alpha=float(recipe.lora.alpha),
                      lora_dropout=float(recipe.lora.dropout),
                      target_modules=target if target == "all-linear" else list(target))


def load_model(recipe: Recipe, labels: list[str]):
    """The tokenizer and a peft model: LoRA adapters on the frozen backbone, a fresh
    classification head for ``labels`` trained in full."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = recipe.model.resolve()
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=recipe.model.trust_remote_code)
    source = set_pad_token(tokenizer)
    tokenizer.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(
        name, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)}, trust_remote_code=recipe.model.trust_remote_code,
        use_safetensors=True, dtype=torch.float32,
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # no KV cache: a classifier reads one forward pass
    logger.info("pad token %r (id %d, from %s), padding on the right", tokenizer.pad_token, tokenizer.pad_token_id,
                source)
    peft_model = get_peft_model(model, lora_config(recipe))
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA r=%s alpha=%s on %s: %d of %d parameters trainable (%.2f%%)", recipe.lora.r, recipe.lora.alpha,
                recipe.lora.target_modules, trainable, total, 100.0 * trainable / total)
    return tokenizer, peft_model


def fit(recipe: Recipe, model, tokenizer, train_ds, eval_ds, task, run_dir: Path,
        resume: bool = False) -> LoraFitResult:
    """Train the adapters and the head with the full recipe's Trainer loop, then merge: the
    returned model is a plain transformers model (no peft modules)."""
    from peft import PeftModel

    from . import full

    training = dict(recipe.training)
    if training.get("activation_checkpointing") or training.get("gradient_checkpointing"):
        # Non-reentrant checkpointing passes gradients through frozen embeddings (peft's advice).
        key = "activation_checkpointing_kwargs" if "activation_checkpointing" in training else "gradient_checkpointing_kwargs"
        training.setdefault(key, {"use_reentrant": False})
    fitted = full.fit(dataclasses.replace(recipe, training=training), model, tokenizer, train_ds, eval_ds, task,
                      run_dir, resume)
    peft_model = fitted.model
    if not isinstance(peft_model, PeftModel):
        raise TypeError(f"expected the trained model to be a peft model, got {type(peft_model).__name__}")
    adapter_dir = None
    if recipe.lora.save_adapter:
        adapter_dir = Path(run_dir) / ".adapter.tmp"
        shutil.rmtree(adapter_dir, ignore_errors=True)
        peft_model.save_pretrained(str(adapter_dir))  # adapter_model.safetensors + adapter_config.json
    merged = peft_model.merge_and_unload()
    if hasattr(merged.config, "use_cache"):
        merged.config.use_cache = False
    values = {f.name: getattr(fitted, f.name) for f in dataclasses.fields(FitResult)}
    values["model"] = merged
    return LoraFitResult(**values, adapter_dir=adapter_dir)
