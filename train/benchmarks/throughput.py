"""Scoring speed against the transformers pipeline: ``python -m train.benchmarks.throughput --model DIR --rows N``.

Samples N messages from a corpus file (``--data``, default ``data/corpus.jsonl``), then times
``transformers.pipeline("text-classification", batch_size=32)`` and this project's scorer in
each precision mode on the same rows, interleaved over ``--rounds`` rounds. Every scorer lives
in its own worker process, loaded and warmed up once, with its own peak memory; the workers take
turns, so they never compete for the CPU. Throughput includes normalisation and tokenisation,
not model loading. The pipeline gets the texts already normalised (as the model was trained),
outside its timing.

Printed as markdown: msgs/s (median, min-max), ratio to the pipeline, peak RSS of the worker,
achieved GFLOP/s (useful FLOPs: real tokens, no padding) and its fraction of a matmul peak
measured in the same run, and label agreement and max probability difference against fp32 on
the corpus's test split.

``--profile auto`` also scores the rows once under the PyTorch profiler and prints the operators
that take the time. ``--memory-rows 20000,200000`` also scores files of those sizes with ``python -m infer`` and
reports each run's peak RSS: scoring streams, so memory must not grow with the input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import logging
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from infer.agreement import AGREEMENT_BAR, label_agreement  # noqa: E402
from infer.batching import batch_width, length_sorted_batches  # noqa: E402
from infer.classifier import Classifier  # noqa: E402
from infer.device import auto_precision, configure_threads, select_device, tune_cpu_allocator  # noqa: E402
from infer.fastpath import onednn_linear_supported  # noqa: E402
from infer.io import read_table  # noqa: E402
from infer.manifest import ModelManifest  # noqa: E402
from infer.text import normalize_text, tokenize  # noqa: E402

logger = logging.getLogger("train.benchmarks")

BASE_MODES = ("fp32", "bf16", "fp16", "auto", "int8-dynamic")
PIPELINE = "pipeline"


def parse_args(argv=None, prog: str = "python -m train.benchmarks.throughput") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder written by `python -m train`")
    p.add_argument("--data", default="data/corpus.jsonl", help="JSONL corpus to sample texts from")
    p.add_argument("--rows", type=int, default=4000, help="messages per timed pass (sampled with replacement)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; at least 3 for a median")
    p.add_argument("--modes", default=None,
                   help=f"comma-separated scorer modes from {', '.join(BASE_MODES)}, each optionally with "
                        "'+compile', '+sdpa' or '+matmul' (attention core), '+noprepack' (plain nn.Linear) "
                        "(default: fp32 and what auto picks); "
                        "fp32 always runs as the reference")
    p.add_argument("--device", default=None, help="cuda, cpu ... (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: every usable CPU)")
    p.add_argument("--max-tokens", type=int, default=None, help="token budget per batch for the project's scorer")
    p.add_argument("--chunk-size", type=int, default=2048, help="rows per predict call, as `python -m infer` reads")
    p.add_argument("--pipeline-batch-size", type=int, default=32)
    p.add_argument("--agreement-split", default="test",
                   help="corpus split the agreement columns are computed on ('' = the benchmark rows)")
    p.add_argument("--warmup-rows", type=int, default=256, help="rows each scorer scores before timing")
    p.add_argument("--memory-rows", default="",
                   help="comma-separated file sizes for the memory check, e.g. 20000,200000")
    p.add_argument("--memory-precision", default="auto", help="--precision for the memory check runs")
    p.add_argument("--profile", default="",
                   help="comma-separated modes (or 'pipeline') to profile after the timed rounds: where each "
                        "spends its time, by PyTorch operator")
    p.add_argument("--peak-size", type=int, default=None,
                   help="side of the square matmul that measures the peak (default 2048 on CPU, 8192 on GPU; "
                        "smaller is faster and reads lower)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.rows < 1 or args.rounds < 1 or (args.peak_size is not None and args.peak_size < 1):
        p.error("--rows, --rounds and --peak-size must be positive")
    return args


# -- rows ------------------------------------------------------------------------------------

def load_corpus(path: str | Path) -> list[dict]:
    """Rows with a string ``text`` (and ``split`` when the corpus has one)."""
    rows = [r for r in read_table(path, required=["text"]) if isinstance(r["text"], str) and r["text"].strip()]
    if not rows:
        raise ValueError(f"{path}: no rows with a text")
    return rows


def sample_texts(rows: list[dict], n: int, seed: int) -> list[str]:
    """``n`` texts drawn with replacement, so the corpus's length distribution carries over."""
    rng = random.Random(seed)
    return [row["text"] for row in rng.choices(rows, k=n)]


# -- measurements ----------------------------------------------------------------------------

def encoder_flops(model_config, lengths: list[int], first_token_last_layer: bool = False) -> float | None:
    """Forward FLOPs of a BERT-style encoder over sequences of these (unpadded) lengths: per
    layer and token, the Q/K/V/output projections and the feed-forward block (2 FLOPs per
    multiply-add), plus attention scores and the weighted sum over the sequence. With
    ``first_token_last_layer``, the last layer computes keys and values for every token and the
    rest for the first token only (see ``infer.model.FirstTokenLayer``)."""
    hidden = getattr(model_config, "hidden_size", None)
    layers = getattr(model_config, "num_hidden_layers", None)
    inner = getattr(model_config, "intermediate_size", None)
    if not (hidden and layers and inner):
        return None
    if getattr(model_config, "num_key_value_heads", None):
        return decoder_flops(model_config, lengths)
    per_token = 2 * (4 * hidden * hidden + 2 * hidden * inner)
    full_layer = sum(n * per_token + 4 * hidden * n * n for n in lengths)
    if not first_token_last_layer:
        return float(layers * full_layer)
    last_layer = sum(n * 4 * hidden * hidden + 2 * (2 * hidden * hidden + 2 * hidden * inner) + 4 * hidden * n
                     for n in lengths)
    return float((layers - 1) * full_layer + last_layer)


def decoder_flops(model_config, lengths: list[int]) -> float:
    """Forward FLOPs of a Llama-style decoder (Llama, Qwen2/3, Gemma3, Mistral): grouped-query
    Q/K/V and output projections, a gated feed-forward block (three matrices), attention over
    the whole sequence (what the kernels compute; the causal mask would halve the useful part).
    The classification head and embeddings are negligible and left out."""
    hidden, layers, inner = model_config.hidden_size, model_config.num_hidden_layers, model_config.intermediate_size
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or hidden // heads
    q_dim, kv_dim = heads * head_dim, model_config.num_key_value_heads * head_dim
    per_token = 2 * (2 * hidden * q_dim + 2 * hidden * kv_dim + 3 * hidden * inner)
    return float(layers * sum(n * per_token + 4 * q_dim * n * n for n in lengths))


def matmul_peak_gflops(dtype_name: str, device: torch.device, size: int | None = None) -> float:
    """Best GFLOP/s (GOP/s for int8) of a square matmul in ``dtype_name`` on ``device``.

    On CPU the best of aten's matmul and oneDNN's prepacked linear kernel (what the scorer
    uses): aten's fp32 matmul goes to MKL, which on AMD CPUs runs at about half the peak."""
    gpu = device.type == "cuda"
    n = size or (8192 if gpu else (512 if dtype_name == "fp16" else 2048))  # CPUs emulate fp16 slowly
    if dtype_name == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        ops = [lambda: torch._int_mm(a, b)]
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
        a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
        ops = [lambda: a @ b]
        if not gpu and onednn_linear_supported(dtype):
            packed = torch.ops.mkldnn._reorder_linear_weight(b)
            ops.append(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""))
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    best = 0.0
    for op in ops:
        op(), sync()
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(3):
                op()
            sync()
            best = max(best, 3 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def peak_rss_bytes(usage=None) -> int:
    usage = usage or resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


# -- scorers in worker processes --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScorerSpec:
    mode: str  # "pipeline", or a base mode optionally suffixed "+compile"
    model: str
    device: str | None
    threads: int | None
    max_tokens: int | None
    chunk_size: int
    pipeline_batch_size: int


#: Mode suffixes: ``+compile`` (torch.compile), ``+sdpa`` / ``+matmul`` (the attention core, see
#: ``infer.layers``; default: what ``Classifier`` picks for the device and precision),
#: ``+noprepack`` (plain ``nn.Linear`` layers instead of oneDNN prepacked weights on CPU).
MODE_SUFFIXES = ("compile", "sdpa", "matmul", "noprepack")


class Mode(NamedTuple):
    base: str  # a precision from BASE_MODES
    compiled: bool
    attention: str  # "auto", "sdpa" or "matmul"
    prepack: bool | None  # None: the Classifier's default; False: plain nn.Linear layers


def parse_mode(mode: str) -> Mode:
    """``"bf16+compile"`` -> ``Mode("bf16", True, "auto", None)``; ``"bf16+sdpa+noprepack"`` ->
    ``Mode("bf16", False, "sdpa", False)``."""
    base, *suffixes = mode.split("+")
    if base not in BASE_MODES or any(x not in MODE_SUFFIXES for x in suffixes) or len(set(suffixes)) < len(suffixes) \
            or ("sdpa" in suffixes and "matmul" in suffixes):
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(BASE_MODES)}, optionally with "
                         "'+compile', one of '+sdpa', '+matmul', and '+noprepack'")
    attention = "sdpa" if "sdpa" in suffixes else "matmul" if "matmul" in suffixes else "auto"
    return Mode(base, "compile" in suffixes, attention, False if "noprepack" in suffixes else None)


def build_scorer(spec: ScorerSpec):
    """``(prepare, score, facts)``: ``prepare`` runs once, untimed; ``score`` is timed; ``facts``
    says which precision ran and whether the last layer ran for the first token only."""
    if spec.mode == PIPELINE:
        return _pipeline_scorer(spec)
    base, compiled, attention, prepack = parse_mode(spec.mode)
    quantised = base == "int8-dynamic"
    clf = Classifier.from_pretrained(spec.model, device=spec.device, precision="fp32" if quantised else base,
                                     max_tokens=spec.max_tokens, compile_model=compiled,
                                     attention=attention, prepack_weights=False if quantised else prepack)
    if quantised:
        # Measured, not offered: int8 weights on every nn.Linear, activations quantised per batch.
        if clf.device.type != "cpu":
            raise ValueError("int8-dynamic runs on CPU only")
        with warnings.catch_warnings():  # torch deprecates the quantised tensor types this uses
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(clf.model, {torch.nn.Linear}, dtype=torch.qint8)
        clf = Classifier(model, clf.tokenizer, clf.manifest, clf.device, "int8", max_tokens=spec.max_tokens,
                         compile_model=compiled, fast_path=clf.fast_path, blend=clf.blend, tag_model=clf.tag_model)

    def score(texts: list[str]) -> np.ndarray:
        # Chunk by chunk, as `python -m infer` scores a file.
        chunks = range(0, len(texts), spec.chunk_size)
        return np.vstack([clf.predict_proba(texts[i:i + spec.chunk_size]) for i in chunks])

    facts = {"precision": clf.precision, "first_token_last_layer": clf.first_token_last_layer,
             "attention": clf.attention, "prepacked_linear_layers": clf.prepacked_linear_layers,
             "malloc_tuned": tune_cpu_allocator() if clf.device.type == "cpu" else False,
             "batching": {"block": clf.encode_block_size, "max_tokens": clf.max_tokens,
                          "max_batch_size": clf.max_batch_size, "pad_multiple": clf.pad_multiple,
                          "max_length": clf.manifest.text.max_length}}
    return (lambda texts: texts), score, facts


def _pipeline_scorer(spec: ScorerSpec):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    config = ModelManifest.load(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(spec.model)
    model = AutoModelForSequenceClassification.from_pretrained(spec.model, dtype=torch.float32, use_safetensors=True)
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=select_device(spec.device),
                        top_k=None)
    order = {label: i for i, label in enumerate(config.labels)}

    def prepare(texts: list[str]) -> list[str]:
        return [normalize_text(t, config.text) for t in texts]

    def score(texts: list[str]) -> np.ndarray:
        out = classify(texts, batch_size=spec.pipeline_batch_size, truncation=True, max_length=config.text.max_length)
        probs = np.zeros((len(texts), len(order)), dtype=np.float32)
        for row, scores in enumerate(out):
            for item in scores:
                probs[row, order[item["label"]]] = item["score"]
        return probs

    return prepare, score, {"precision": "fp32", "first_token_last_layer": False}


def _worker(conn, spec: ScorerSpec, texts: list[str], agreement_texts: list[str], warmup_rows: int) -> None:
    """Load one scorer, warm it up, then answer the parent: "time", "agreement", "stop"."""
    try:
        configure_threads(spec.threads)
        if spec.mode != PIPELINE and select_device(spec.device).type == "cpu":
            tune_cpu_allocator()  # as `python -m infer` does; the pipeline runs untouched
        prepare, score, facts = build_scorer(spec)
        timed, checked = prepare(texts), prepare(agreement_texts)
        score(timed[:warmup_rows])
        conn.send(("ok", facts))
        while True:
            command = conn.recv()
            if command == "time":
                before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                score(timed)
                wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
                conn.send(("ok", (wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)))
            elif command == "agreement":
                conn.send(("ok", score(checked)))
            elif command == "profile":
                conn.send(("ok", profile_operators(score, timed)))
            else:
                conn.send(("ok", peak_rss_bytes()))
                return
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc()))


def profile_operators(score, texts: list[str], top: int = 8) -> dict:
    """Score ``texts`` under the PyTorch profiler: wall seconds, and the operators with the most
    self CPU time (seconds, share of the summed self time). Profiling slows scoring a little."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        score(texts)
    wall = time.perf_counter() - start
    events = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    total = sum(t for _, t in events) or 1.0
    events.sort(key=lambda e: -e[1])
    return {"wall_s": wall, "self_cpu_s": total,
            "top": [{"op": name, "self_cpu_s": t, "share": t / total} for name, t in events[:top]]}


class Worker:
    def __init__(self, context, spec: ScorerSpec, texts, agreement_texts, warmup_rows: int):
        self.spec = spec
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, spec, texts, agreement_texts, warmup_rows),
                                       daemon=True, name=f"bench-{spec.mode}")
        self.process.start()
        child.close()

    def ask(self, command: str | None = None):
        if command is not None:
            self.conn.send(command)
        try:
            status, payload = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"benchmark worker {self.spec.mode!r} died (exit {self.process.exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"benchmark worker {self.spec.mode!r} failed:\n{payload}")
        return payload

    def stop(self) -> int:
        rss = self.ask("stop")
        self.process.join(timeout=30)
        return rss


# -- the run ---------------------------------------------------------------------------------

def default_modes(device: torch.device) -> list[str]:
    """fp32, and the default (auto) where it is not fp32."""
    chosen, _ = auto_precision(device)
    return ["fp32"] if chosen == "fp32" else ["fp32", "auto"]


def run_benchmark(args: argparse.Namespace) -> dict:
    device = select_device(args.device)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else default_modes(device)
    for mode in modes:
        parse_mode(mode)
    if "fp32" not in modes:
        modes.insert(0, "fp32")  # the reference for agreement
    profile_modes = [m.strip() for m in args.profile.split(",") if m.strip()]
    unknown = [m for m in profile_modes if m not in (PIPELINE, *modes)]
    if unknown:
        raise ValueError(f"--profile {', '.join(unknown)}: not among the benchmarked modes {', '.join(modes)}")
    auto_choice, auto_reason = auto_precision(device)
    threads = configure_threads(args.threads)

    from transformers import AutoConfig, AutoTokenizer

    config = ModelManifest.load(args.model)
    corpus = load_corpus(args.data)
    texts = sample_texts(corpus, args.rows, args.seed)
    agreement_rows = [r for r in corpus if args.agreement_split and r.get("split") == args.agreement_split]
    agreement_texts = [r["text"] for r in agreement_rows] or texts
    agreement_on = f"{args.agreement_split} split" if agreement_rows else "the benchmark rows"
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model_config = AutoConfig.from_pretrained(args.model)

    context = multiprocessing.get_context("spawn")
    # transformers.pipeline loads only transformers' own heads: a mean-pooling head or a blended
    # TF-IDF model would be silently replaced by a fresh head, so such folders have no pipeline row.
    baseline = [PIPELINE] if config.plain else []
    if not baseline:
        logger.warning("%s has a mean-pooling head, a temperature or a blend, which transformers.pipeline cannot "
                       "load: no pipeline row", args.model)
        if PIPELINE in profile_modes:
            raise ValueError("--profile pipeline: this model folder has no pipeline row")
    specs = [ScorerSpec(mode, str(args.model), args.device, args.threads, args.max_tokens, args.chunk_size,
                        args.pipeline_batch_size) for mode in [*baseline, *modes]]
    workers = [Worker(context, spec, texts, agreement_texts, args.warmup_rows) for spec in specs]
    try:
        facts = {w.spec.mode: w.ask() for w in workers}
        dtypes = _peak_dtypes(f["precision"] for f in facts.values())
        peaks = {name: matmul_peak_gflops(name, device, args.peak_size) for name in dtypes}
        start = time.perf_counter()
        windows, _ = tokenize(tokenizer, texts, config.text, windows=True)
        encode_seconds = time.perf_counter() - start  # the workers are idle meanwhile
        lengths = [len(w) for w in windows]
        seconds: dict[str, list[float]] = {w.spec.mode: [] for w in workers}
        cpu_times: dict[str, list[tuple[float, float]]] = {w.spec.mode: [] for w in workers}
        for round_ in range(args.rounds):
            # Rotate who goes first, so no scorer always runs on a cache warmed by the same one.
            shift = round_ % len(workers)
            for worker in workers[shift:] + workers[:shift]:
                wall, user, system = worker.ask("time")
                seconds[worker.spec.mode].append(wall)
                cpu_times[worker.spec.mode].append((user, system))
        agreement_probs = {w.spec.mode: w.ask("agreement") for w in workers}
        profiled = {w.spec.mode: w.ask("profile") for w in workers if w.spec.mode in profile_modes}
        rss = {w.spec.mode: w.stop() for w in workers}
    finally:
        for w in workers:
            if w.process.is_alive():
                w.process.kill()

    reference = agreement_probs["fp32"]
    pipeline_rate = statistics.median(args.rows / s for s in seconds[PIPELINE]) if baseline else None
    results = []
    for spec in specs:
        rates = sorted(args.rows / s for s in seconds[spec.mode])
        median_rate = statistics.median(rates)
        precision = facts[spec.mode]["precision"]
        peak = peaks[precision]
        flops = encoder_flops(model_config, lengths, facts[spec.mode]["first_token_last_layer"])
        achieved = flops / 1e9 * median_rate / args.rows if flops else None
        agreement, max_diff = label_agreement(config.task, reference, agreement_probs[spec.mode])
        results.append({
            "mode": spec.mode, "precision": precision, "msgs_per_s": median_rate, "msgs_per_s_min": rates[0],
            "msgs_per_s_max": rates[-1], "vs_pipeline": median_rate / pipeline_rate if pipeline_rate else None, "peak_rss_bytes": rss[spec.mode],
            "gflops": achieved, "peak_gflops": peak, "peak_fraction": achieved / peak if achieved else None,
            "label_agreement": agreement, "max_prob_diff": max_diff, "facts": facts[spec.mode],
            "user_cpu_s": sum(u for u, _ in cpu_times[spec.mode]), "system_cpu_s": sum(k for _, k in cpu_times[spec.mode]),
        })
    words = [len(t.split()) for t in texts]
    return {
        "command": "python -m train.benchmarks.throughput " + " ".join(shlex.quote(a) for a in getattr(args, "argv", [])),
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, {threads} torch threads, device {device}",
        "torch": torch.__version__, "model": str(args.model), "data": str(args.data), "rows": args.rows,
        "rounds": args.rounds, "pipeline_batch_size": args.pipeline_batch_size,
        "median_words": statistics.median(words), "median_tokens": statistics.median(lengths),
        "max_tokens_seen": max(lengths), "real_token_fraction": real_token_fraction(
            lengths, next(f["batching"] for f in facts.values() if "batching" in f)),
        "tokenize_msgs_per_s": args.rows / encode_seconds,
        "auto": auto_choice, "auto_reason": auto_reason, "matmul_peaks": peaks,
        "agreement_on": agreement_on, "agreement_rows": len(agreement_texts), "results": results,
        "profiles": profiled,
        "memory": memory_check(args, corpus) if args.memory_rows else [],
    }


def real_token_fraction(lengths: list[int], batching: dict) -> float:
    """Share of the positions a scorer with these batching settings (``block``, ``max_tokens``,
    ``max_batch_size``, ``pad_multiple``, ``max_length``: see ``Classifier``) computes that are
    real tokens."""
    real = computed = 0
    block = batching["block"]
    for start in range(0, len(lengths), block):
        part = lengths[start:start + block]
        for batch in length_sorted_batches(part, batching["max_tokens"], batching["max_batch_size"],
                                           batching["pad_multiple"]):
            width = batch_width(max(part[i] for i in batch), batching["pad_multiple"], batching["max_length"])
            real += sum(part[i] for i in batch)
            computed += len(batch) * width
    return real / computed


def _peak_dtypes(precisions) -> list[str]:
    return sorted(set(precisions) | {"fp32"})


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_check(args: argparse.Namespace, corpus: list[dict]) -> list[dict]:
    """Score files of each size with ``python -m infer`` in a fresh process; record its peak RSS."""
    out = []
    for n in sorted(int(x) for x in args.memory_rows.split(",") if x.strip()):
        with tempfile.TemporaryDirectory(prefix="outreach-guard-bench-") as tmp:
            source, target, log = Path(tmp, "in.jsonl"), Path(tmp, "out.jsonl"), Path(tmp, "stderr.log")
            with open(source, "w", encoding="utf-8") as fh:
                for i, text in enumerate(sample_texts(corpus, n, args.seed + n)):
                    fh.write(json.dumps({"id": i, "text": text}) + "\n")
            command = [sys.executable, "-m", "infer", "--model", str(args.model), "--input", str(source),
                       "--output", str(target), "--no-progress", "--precision", args.memory_precision,
                       "--chunk-size", str(args.chunk_size)]
            if args.device:
                command += ["--device", args.device]
            if args.max_tokens:
                command += ["--max-tokens", str(args.max_tokens)]
            start = time.perf_counter()
            with open(log, "wb") as err:
                proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
                # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would mix children).
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"memory check at {n} rows failed:\n{log.read_text()[-2000:]}")
            out.append({"rows": n, "peak_rss_bytes": peak_rss_bytes(usage), "seconds": wall, "msgs_per_s": n / wall})
    return out


# -- output ----------------------------------------------------------------------------------

TABLE_HEADER = ("| scorer | msgs/s median (min-max) | vs pipeline | peak RSS | GFLOP/s | of matmul peak "
                "| label agreement vs fp32 | max abs prob diff vs fp32 |")


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def _describe(facts: dict) -> str:
    parts = [facts.get("precision", "?")]
    if facts.get("attention", "none") != "none":
        parts.append(f"fused QKV, {facts['attention']} attention")
    if facts.get("first_token_last_layer"):
        parts.append("last layer for the first token only")
    if facts.get("prepacked_linear_layers"):
        parts.append("linear layers on prepacked oneDNN weights with fused bias and residual")
    if facts.get("malloc_tuned"):
        parts.append("glibc malloc tuned")
    return ", ".join(parts)


def format_report(report: dict) -> str:
    lines = [f"`{report['command']}`", "",
             f"- machine: {report['machine']}; torch {report['torch']}",
             f"- rows: {report['rows']:,} sampled from {report['data']} (median {report['median_words']:g} words, "
             f"median {report['median_tokens']:g} tokens, longest {report['max_tokens_seen']}); "
             f"{report['rounds']} interleaved rounds; the project's batches are "
             f"{report['real_token_fraction']:.1%} real tokens; normalising and tokenising alone runs at "
             f"{report['tokenize_msgs_per_s']:,.0f} msgs/s",
             "- matmul peak: " + ", ".join(f"{k} {v:,.0f} G{'OP' if k == 'int8' else 'FLOP'}/s"
                                           for k, v in report["matmul_peaks"].items()),
             f"- auto picks {report['auto']} ({report['auto_reason']}); agreement on the "
             f"{report['agreement_on']} ({report['agreement_rows']} rows)",
             *[f"- {r['mode']}: {_describe(r.get('facts', {}))}" for r in report["results"] if r["mode"] != PIPELINE],
             "", TABLE_HEADER, "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"]
    for r in report["results"]:
        if r["mode"] == PIPELINE:
            name = f"transformers pipeline, batch_size={report['pipeline_batch_size']}"
        else:
            name = f"outreach-guard {r['mode']}" + (f" (-> {r['precision']})" if r["mode"].startswith("auto") else "")
        gflops = f"{r['gflops']:,.0f}" if r["gflops"] is not None else "n/a"
        fraction = "n/a" if r["peak_fraction"] is None else f"{r['peak_fraction']:.0%} of {r['precision']}"
        agreement = "reference" if r["mode"] == "fp32" else f"{r['label_agreement']:.2%}"
        diff = "reference" if r["mode"] == "fp32" else f"{r['max_prob_diff']:.1e}"
        lines.append(f"| {name} | {r['msgs_per_s']:,.1f} ({r['msgs_per_s_min']:,.1f}-{r['msgs_per_s_max']:,.1f}) "
                     f"| {'n/a' if r['vs_pipeline'] is None else format(r['vs_pipeline'], '.1f') + 'x'} "
                     f"| {_mb(r['peak_rss_bytes'])} | {gflops} | {fraction} "
                     f"| {agreement} | {diff} |")
    lines += ["", "CPU time in the timed rounds, user + system (system: page faults, thread waits): " + "; ".join(
        f"{'pipeline' if r['mode'] == PIPELINE else r['mode']} {r['user_cpu_s']:,.0f} + {r['system_cpu_s']:,.0f} s"
        for r in report["results"])]
    below = [r["mode"] for r in report["results"] if r["mode"] not in ("fp32", PIPELINE)
             and r["label_agreement"] < AGREEMENT_BAR]
    if below:
        lines += ["", f"Below the {AGREEMENT_BAR:.1%} agreement bar, not to be offered: {', '.join(below)}"]
    for mode, prof in report.get("profiles", {}).items():
        lines += ["", f"Where `{mode}` spends its time ({report['rows']:,} rows under the PyTorch profiler: "
                      f"{prof['wall_s']:.1f} s wall, {prof['self_cpu_s']:.1f} s of operator self time):", "",
                  "| operator | self time | share |", "|---|---|---|"]
        lines += [f"| `{t['op']}` | {t['self_cpu_s']:.2f} s | {t['share']:.1%} |" for t in prof["top"]]
    if report["memory"]:
        smallest = report["memory"][0]["peak_rss_bytes"]
        lines += ["", "| rows scored by `python -m infer` | peak RSS | vs smallest | msgs/s incl. model load |",
                  "|---|---|---|---|"]
        for m in report["memory"]:
            lines.append(f"| {m['rows']:,} | {_mb(m['peak_rss_bytes'])} | {m['peak_rss_bytes'] / smallest - 1:+.1%} "
                         f"| {m['msgs_per_s']:,.1f} |")
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m train.benchmarks.throughput") -> int:
    args = parse_args(argv, prog)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    report = run_benchmark(args)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
