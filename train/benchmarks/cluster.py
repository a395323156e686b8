"""Scoring on Ray against ``python -m infer``: ``python -m train.benchmarks.cluster --model DIR --rows N``.

Samples N messages from a corpus file (``--data``, default ``data/corpus.jsonl``) into a JSONL
file, then runs, each as its own command, the way a user would:

* ``python -m infer`` on it (every usable CPU as torch threads);
* ``python -m infer.distributed`` on it with each ``--workers`` count, on a fresh local Ray
  cluster (started by the command), the CPUs shared out between the workers.

Each command also scores a one-row file: its wall time is the fixed cost (interpreter, imports,
model load; for Ray also the cluster and the actors). Reported per scorer: wall time for N
rows, msgs/s including that fixed cost, msgs/s after it ((N - 1) / (wall N - wall 1)), and the
start-up overhead over ``python -m infer``. Runs take turns over ``--rounds`` rounds; medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv=None, prog: str = "python -m train.benchmarks.cluster") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder written by `python -m train`")
    p.add_argument("--data", default="data/corpus.jsonl", help="JSONL corpus to sample texts from")
    p.add_argument("--rows", type=int, default=2000, help="messages in the timed file (sampled with replacement)")
    p.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def sample_file(data: str, rows: int, seed: int, path: Path) -> Path:
    from infer.io import read_table

    texts = [r["text"] for r in read_table(data, required=["text"])]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": i + 1, "text": rng.choice(texts)}) + "\n")
    return path


def commands(args, workers: list[int], cpus: int) -> dict[str, callable]:
    """Scorer name -> function(input, output) -> the command line."""
    base = [sys.executable, "-m"]
    common = ["--model", args.model, "--precision", args.precision, "--no-progress"]
    out = {"python -m infer": lambda src, dst: base + ["infer", "--input", str(src), "--output", str(dst) + ".jsonl",
                                                        *common]}
    for w in workers:
        per_worker = max(1, cpus // w)
        out[f"Ray, {w} worker{'s' if w > 1 else ''} x {per_worker} CPU"] = (
            lambda src, dst, w=w, c=per_worker: base + ["infer.distributed", "--input", str(src), "--output", str(dst),
                                                        "--workers", str(w), "--cpus-per-worker", str(c), *common])
    return out


def timed(cmd: list[str], output: Path) -> float:
    shutil.rmtree(output, ignore_errors=True)
    Path(str(output) + ".jsonl").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # always a fresh local cluster
    started = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return wall


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_benchmark(args) -> dict:
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    folder = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    try:
        big = sample_file(args.data, args.rows, args.seed, folder / "rows.jsonl")
        one = sample_file(args.data, 1, args.seed, folder / "one.jsonl")
        scorers = commands(args, workers, cpus)
        walls = {name: {"rows": [], "one": []} for name in scorers}
        for _ in range(args.rounds):
            for name, cmd in scorers.items():
                walls[name]["one"].append(timed(cmd(one, folder / "out"), folder / "out"))
                walls[name]["rows"].append(timed(cmd(big, folder / "out"), folder / "out"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = []
    for name, w in walls.items():
        rows_s, one_s = statistics.median(w["rows"]), statistics.median(w["one"])
        results.append({"scorer": name, "wall_s": round(rows_s, 1), "startup_s": round(one_s, 1),
                        "msgs_per_s": round(args.rows / rows_s, 1),
                        # None when the 1-row run took longer than the full one (a noisy machine)
                        "msgs_per_s_after_startup": round((args.rows - 1) / (rows_s - one_s), 1)
                        if rows_s > one_s else None})
    reference = results[0]["startup_s"]
    for r in results:
        r["startup_overhead_s"] = round(r["startup_s"] - reference, 1)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"machine": f"{cpu_name()}, {cpus} CPUs", "load_average_1min": [load_before, load_after], "rows": args.rows,
            "rounds": args.rounds, "precision": args.precision, "model": args.model, "results": results}


def render(report: dict) -> str:
    lines = [f"- machine: {report['machine']}; {report['rows']:,} rows; {report['rounds']} round(s), medians; "
             f"--precision {report['precision']}; 1-minute load average {report['load_average_1min'][0]:.1f} before, "
             f"{report['load_average_1min'][1]:.1f} after", "",
             "| scorer | wall for the rows | msgs/s incl. start-up | msgs/s after start-up | start-up (1 row) "
             "| start-up over python -m infer |", "|---|---|---|---|---|---|"]
    for r in report["results"]:
        after = r["msgs_per_s_after_startup"]
        lines.append(f"| {r['scorer']} | {r['wall_s']} s | {r['msgs_per_s']} | {'n/a' if after is None else after} | "
                     f"{r['startup_s']} s | {r['startup_overhead_s']:+} s |")
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m train.benchmarks.cluster") -> int:
    args = parse_args(argv, prog)
    report = run_benchmark(args)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
