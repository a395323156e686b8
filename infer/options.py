"""What the command lines share: one definition of each common option, and one way to report bad
input (one ``error:`` line on stderr, exit status 2).

Every command is a thin ``main(argv) -> int`` over a function that returns a result object;
the option groups here keep ``--model``, ``--device``, ``--precision``, the column options and
``--config``/``--output-dir`` spelt, defaulted and documented the same way in all of them.
"""

from __future__ import annotations

import argparse
import sys

#: ``--precision`` values (``infer.device.resolve_precision``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def add_model_options(parser: argparse.ArgumentParser, precision: bool = True) -> argparse._ArgumentGroup:
    """``--model`` (a folder written by ``python -m train``), ``--device`` and ``--precision``."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, help="model folder written by `python -m train`")
    group.add_argument("--device", default=None, help="cuda, mps, cpu, cuda:1 ... (default: auto)")
    if precision:
        group.add_argument("--precision", default="auto", choices=PRECISIONS,
                           help="auto: bf16 where the CPU or GPU runs it natively, else fp32 (see the README)")
    return group


def add_column_options(parser: argparse.ArgumentParser, label: bool = False, split: bool = False,
                       id_column: bool = True) -> argparse._ArgumentGroup:
    """The input's column names: ``--text-column``, ``--id-column`` and, for labelled data,
    ``--label-column`` and ``--split-column``."""
    group = parser.add_argument_group("columns")
    group.add_argument("--text-column", default="text")
    if id_column:
        group.add_argument("--id-column", default="id", help="passed through; the 1-based row number when absent")
    if label:
        group.add_argument("--label-column", default="label")
    if split:
        group.add_argument("--split-column", default="split")
    return group


def add_config_options(parser: argparse.ArgumentParser, what: str, output: str) -> argparse._ArgumentGroup:
    """``--config`` (a YAML file in ``configs/``) and ``--output-dir``."""
    group = parser.add_argument_group("config")
    group.add_argument("--config", required=True, help=f"{what} YAML (see configs/)")
    group.add_argument("--output-dir", help=output)
    return group


def input_error(err: BaseException) -> int:
    """Report a whole-input problem as one ``error:`` line on stderr; returns exit status 2."""
    message = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 2
