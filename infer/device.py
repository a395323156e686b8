"""Device, precision and thread selection for scoring."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

import torch

logger = logging.getLogger(__name__)

#: Modes a user can ask for. int8 is not offered: dynamic int8 quantisation of all-MiniLM-L6-v2
#: kept only 96.5-98.1% label agreement with fp32 on the test split (99.5% is the bar), see the
#: README's scoring-speed section and ``python -m infer.bench --modes ...,int8-dynamic``.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, then Apple MPS, then CPU."""
    if device is not None and str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions: AVX512-BF16 or AMX on x86, BF16 on Arm.

    oneDNN's own check (``_is_mkldnn_bf16_supported``) is true on any AVX-512 CPU, where bf16
    is emulated and no faster than fp32, so x86 asks for the instructions themselves.
    """
    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def auto_precision(device: torch.device) -> tuple[str, str]:
    """The mode ``auto`` picks on ``device``, and why."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU supports bf16"
        return "fp16", "the GPU has no bf16; fp16 instead"
    if device.type == "cpu" and cpu_has_native_bf16():
        # Validated with `python -m infer.bench`: 100% label agreement with fp32 on the test split.
        return "bf16", "the CPU has native bf16 matrix instructions"
    return "fp32", f"no native bf16 on {device.type}"


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into a concrete mode for ``device`` (logging the choice); validate the others."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        chosen, reason = auto_precision(device)
        logger.info("precision auto -> %s (%s)", chosen, reason)
        return chosen
    if device.type == "cpu" and precision == "fp16":
        logger.warning("fp16 on CPU has no native matrix support here and is very slow; use bf16 or fp32")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_native_bf16():
        logger.warning("this CPU has no native bf16 matrix instructions; bf16 is emulated and may be slower than fp32")
    return precision


def torch_dtype(precision: str) -> torch.dtype:
    return _DTYPES[precision]


def usable_cpu_count() -> int:
    """CPUs this process may run on (respects affinity masks, e.g. ``taskset`` or cgroups)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``OMP_NUM_THREADS``, else every usable CPU.

    torch defaults to the physical-core count of the whole machine, which oversubscribes a
    container limited to fewer CPUs and under-uses hyperthreads elsewhere.
    """
    if threads is None:
        from_env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(from_env) if from_env.isdigit() and int(from_env) > 0 else usable_cpu_count()
    if threads < 1:
        raise ValueError(f"threads must be positive, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Let glibc keep freed tensor memory for reuse instead of handing it back to the OS.

    By default glibc serves each allocation above a (dynamic) threshold with its own ``mmap``
    and unmaps it on free, so every batch's activations arrive as fresh pages that the kernel
    must fault in and zero. Measured on the 2-core benchmark machine (bf16, 2,000 messages):
    9 s of system time per 62 s of user time, and about 15% more throughput once allocations
    of up to 32 MiB come from the heap and up to 1 GiB of free heap is kept (peak RSS +4%).
    Process-wide and idempotent; glibc on Linux only. ``OUTREACH_GUARD_MALLOC=default`` turns
    it off. Returns whether the settings are in effect.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("OUTREACH_GUARD_MALLOC", "").strip().lower() in ("default", "0", "off", "false"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt does nothing)
        _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
    logger.debug("glibc malloc tuned for scoring: %s", _allocator_tuned)
    return _allocator_tuned
