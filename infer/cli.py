"""Score a file: ``python -m infer --model DIR --input FILE --output FILE`` (or ``outreach-guard score``)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .options import add_column_options, add_model_options, input_error  # noqa: E402


def build_parser(prog: str = "python -m infer") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_model_options(p)
    p.add_argument("--input", required=True, help="JSONL, CSV or Parquet file (format from the extension)")
    p.add_argument("--output", required=True, help="JSONL, CSV or Parquet file (format from the extension)")
    add_column_options(p)
    p.add_argument("--input-format", choices=["jsonl", "csv", "parquet"])
    p.add_argument("--output-format", choices=["jsonl", "csv", "parquet"])
    p.add_argument("--check-agreement", type=int, default=0, metavar="N",
                   help="first score N input rows in fp32 and in the chosen precision; report label agreement")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on large inputs)")
    p.add_argument("--max-tokens", type=int, default=None, help="token budget per batch (padded)")
    p.add_argument("--max-batch-size", type=int, default=None, help="default: 64 on CPU, 1024 on GPU")
    p.add_argument("--chunk-size", type=int, default=2048, help="rows read, scored and flushed at a time")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into the same output "
                   "(use the same --chunk-size)")
    p.add_argument("--long-text", choices=["truncate", "sliding_window"],
                   help="override the model's policy for texts over its max_length (default: as trained)")
    p.add_argument("--explain", action="store_true",
                   help="add `evidence` to every row: the sentences that most raise the score, with character "
                        "offsets into the input text, the sentence and the score drop without it (leave-one-"
                        "sentence-out occlusion: extra passes, several times slower; off by default). Evidence "
                        "holds message text: the output file then contains excerpts of the input")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading .bin (pickle) weights")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads on CPU (default: every CPU this process may use, or OMP_NUM_THREADS)")
    return p


def report_agreement(clf, args) -> None:
    """``--check-agreement N``: the chosen precision against fp32 on the first N scorable rows."""
    from .agreement import AGREEMENT_BAR, check_agreement
    from .io import read_rows

    texts = []
    for row in read_rows(args.input, args.text_column, args.id_column, args.input_format):
        if len(texts) >= args.check_agreement:
            break
        if isinstance(row.text, str) and row.text.strip():
            texts.append(row.text)
    if clf.precision == "fp32" or not texts:
        print(f"agreement check: nothing to compare ({clf.precision}, {len(texts)} rows)", file=sys.stderr)
        return
    agreement, max_diff = check_agreement(clf, texts, path=args.model, allow_pickle=args.allow_pickle,
                                          trust_remote_code=args.trust_remote_code)
    verdict = "ok" if agreement >= AGREEMENT_BAR else f"BELOW the {AGREEMENT_BAR:.1%} bar: consider --precision fp32"
    print(f"agreement check, {clf.precision} vs fp32 on {len(texts)} rows: {agreement:.2%} of labels agree, "
          f"max probability difference {max_diff:.2e} ({verdict})", file=sys.stderr)


def tune_process(device, threads: int | None) -> str:
    """What the command line (not the library) does to the process before scoring on CPU:
    torch's thread count and glibc malloc's settings (see ``infer.device``). Returns a summary."""
    from .device import configure_threads, tune_cpu_allocator

    if device.type != "cpu":
        return "GPU: process settings left alone"
    used = configure_threads(threads)
    malloc = "glibc malloc tuned" if tune_cpu_allocator() else "malloc left as is"
    return f"{used} torch threads, {malloc} (OUTREACH_GUARD_MALLOC=default leaves it alone)"


def main(argv=None, prog: str = "python -m infer") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .classifier import Classifier
    from .device import select_device
    from .io import InputError, detect_format, read_rows
    from .manifest import ModelFolderError
    from .score import score_file

    try:
        # Check the input and output before the (slower) model load.
        detect_format(args.output, args.output_format)
        read_rows(args.input, args.text_column, args.id_column, args.input_format)
        print(f"process: {tune_process(select_device(args.device), args.threads)}", file=sys.stderr)
        clf = Classifier.from_pretrained(args.model, device=args.device, precision=args.precision,
                                         allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                                         max_tokens=args.max_tokens, max_batch_size=args.max_batch_size,
                                         compile_model=args.compile)
        if args.long_text:
            clf.manifest = dataclasses.replace(clf.manifest, text=clf.manifest.text.with_long_text(args.long_text))
        chosen = ", chosen by --precision auto" if args.precision == "auto" else ""
        print(f"model {args.model} on {clf.device} ({clf.precision}{chosen})", file=sys.stderr)
        if args.check_agreement:
            report_agreement(clf, args)
        counts = score_file(clf, args.input, args.output, text_column=args.text_column, id_column=args.id_column,
                            input_format=args.input_format, output_format=args.output_format,
                            chunk_size=args.chunk_size, resume=args.resume, progress=not args.no_progress,
                            explain=args.explain)
    except (InputError, ModelFolderError, OSError) as err:
        return input_error(err)  # one line, whatever the cause
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"wrote {args.output}: {summary}", file=sys.stderr)
    return 0
