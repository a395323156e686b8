"""Data-parallel training: which process this is, and the one trap that makes it silently serial.

``torchrun --nproc_per_node N -m train ...`` and ``accelerate launch --multi_gpu --num_processes N
-m train ...`` start N copies of the same command; the Trainer (through accelerate) shards each
batch across them, NCCL on GPUs, gloo on CPUs. Everything else a run does (tokenising first,
scoring validation and test, picking the threshold, writing the model folder) is the main
process's job; :func:`train.recipes.train` asks :func:`process_state` who that is.

The trap (transformers 5 / accelerate 1.x): on a machine without CUDA, accelerate only sets up
CPU data-parallelism when the CPU is asked for (``use_cpu=True`` or ``ACCELERATE_USE_CPU=1``).
Without it every launched process quietly trains on all the data as a world of one and writes
its own model. :func:`cpu_data_parallel` turns the CPU on for such launches, and
:func:`check_data_parallel` refuses any launch the Trainer does not run as one world.
"""

from __future__ import annotations

import dataclasses
import os


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def cpu_requested(training: dict) -> bool:
    """The recipe or the environment asks for the CPU (``use_cpu``, ``ACCELERATE_USE_CPU``)."""
    env = os.environ.get("ACCELERATE_USE_CPU", "false").strip().lower() in ("1", "true", "yes", "on")
    return bool(training.get("use_cpu")) or env


def cpu_data_parallel() -> bool:
    """Several processes launched on a machine without CUDA: they can only be CPU (gloo)
    data-parallel, and accelerate needs to be told so (see the module docstring)."""
    import torch

    return launched_processes() > 1 and not torch.cuda.is_available()


def process_state(training: dict):
    """accelerate's ``PartialState`` for this run: rank, world size, ``main_process_first``,
    ``wait_for_everyone``; set up the way the Trainer's arguments will set it up."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_requested(training) or cpu_data_parallel())


def check_data_parallel(running: int, launched: int | None = None) -> None:
    """Refuse a launch of several processes that the Trainer runs as a world of one: each would
    train on all the data and write its own model folder."""
    launched = launched_processes() if launched is None else launched
    if launched > 1 and running != launched:
        raise RuntimeError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but the Trainer runs a world of "
            f"{running}: each process would train on all the data and write its own model. On CPUs pass "
            "training.use_cpu=true or set ACCELERATE_USE_CPU=1; on GPUs check that each process sees a GPU "
            "(see the README's 'Scaling out')."
        )


def effective_batch_size(training: dict, world_size: int) -> int:
    """Rows per optimizer step: per-device batch x gradient accumulation x processes."""
    from transformers import TrainingArguments

    defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    per_device = int(training.get("per_device_train_batch_size", defaults["per_device_train_batch_size"]))
    accumulation = int(training.get("gradient_accumulation_steps", defaults["gradient_accumulation_steps"]))
    return per_device * accumulation * world_size
