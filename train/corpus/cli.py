"""``python -m train.corpus validate PATH [--targets]``, ``python -m train.corpus audit [--data PATH]`` and
``python -m train.corpus add BATCH.jsonl ...``."""

from __future__ import annotations

import sys

COMMANDS = {"validate": "check a corpus file and print its counts", "audit": "the TF-IDF shortcut audit",
            "add": "add authored batches (one file per author) with splits and ids"}


def main(argv=None, prog: str = "python -m train.corpus") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        lines = [f"usage: {prog} {{{','.join(COMMANDS)}}} ..."] + [f"  {k:<10} {v}" for k, v in COMMANDS.items()]
        print("\n".join(lines), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    import importlib

    run = importlib.import_module(f"{__package__}.{argv[0]}").main
    return run(argv[1:], prog=f"{prog} {argv[0]}")
