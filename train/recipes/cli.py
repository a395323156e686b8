"""Fine-tune a classifier from a recipe: ``python -m train --config FILE`` (or ``outreach-guard train``)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from infer.options import add_config_options, input_error  # noqa: E402


def build_parser(prog: str = "python -m train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Fine-tune a classifier from a recipe.")
    add_config_options(p, "recipe", "run folder (default: training.output_dir); the model goes to <dir>/model")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in <dir>/checkpoints")
    p.add_argument("overrides", nargs="*", help="group.field=value, e.g. training.num_train_epochs=1")
    return p


def main(argv=None, prog: str = "python -m train") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from infer.io import InputError

    from .config import load_recipe
    from .run import train

    command = "python -m train " + " ".join(shlex.quote(a) for a in argv)
    try:
        recipe = load_recipe(args.config, args.overrides)
    except (ValueError, OSError) as err:  # a bad recipe: before anything is loaded
        return input_error(err)
    try:
        run = train(recipe, args.output_dir, resume=args.resume, command=command)
    except InputError as err:  # bad data (DataError): found before training starts
        return input_error(err)
    if os.environ.get("RANK", "0") != "0":  # data-parallel: the main process reports the run it wrote
        return 0
    summary = {k: run.f1(k) for k in run.metrics
               if isinstance(run.metrics[k], dict) and k not in ("train", "components")}
    print(f"model written to {run.model_dir} in {run.metrics['train']['runtime_s']:.0f}s of training; F1: {summary}")
    return 0

