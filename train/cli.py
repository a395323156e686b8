"""The ``outreach-guard`` command: one entry point, one sub-command per job.

    outreach-guard train --config configs/default.yaml      # python -m train
    outreach-guard score --model DIR --input F --output F  # python -m infer
    outreach-guard evaluate --model DIR --data F           # python -m train.evaluation
    outreach-guard bench --config configs/bench.yaml       # python -m train.benchmarks
    outreach-guard throughput --model DIR                  # python -m train.benchmarks.throughput
    outreach-guard robustness --model DIR --data F         # python -m train.evaluation.robustness
    outreach-guard faithfulness --model DIR --data F       # python -m train.evaluation.faithfulness
    outreach-guard validate data/corpus.jsonl              # python -m train.corpus validate
    outreach-guard audit --data data/corpus.jsonl          # python -m train.corpus audit

Each sub-command is the ``main(argv) -> int`` of its module, imported only when called (so
``score`` loads the runtime alone). Exit status: 0 on success, 2 on bad input (a missing file or
column, a malformed recipe or model folder), 1 when a check fails (``validate``, ``robustness``).
"""

from __future__ import annotations

import importlib
import os
import sys

#: sub-command -> (module, one-line help)
COMMANDS = {
    "train": ("train.recipes.cli", "fine-tune a model from a recipe"),
    "score": ("infer.cli", "score a JSONL/CSV/Parquet file with a model folder"),
    "evaluate": ("train.evaluation.evaluate", "metrics, report and plots on labelled data"),
    "bench": ("train.benchmarks.quality", "compare systems on datasets in one table"),
    "throughput": ("train.benchmarks.throughput", "scoring speed against the transformers pipeline"),
    "robustness": ("train.evaluation.robustness", "F1 under obfuscation"),
    "faithfulness": ("train.evaluation.faithfulness", "are --explain's sentences faithful, and what they cost"),
    "validate": ("train.corpus.validate", "check a corpus file and print its counts"),
    "audit": ("train.corpus.audit", "TF-IDF shortcut audit of a corpus"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: outreach-guard <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "outreach-guard <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"outreach-guard: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:], prog=f"outreach-guard {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
