"""Scoring on a Ray cluster (infer.distributed) against ``python -m infer``: a local 2-CPU cluster
for the session; files with bad rows in every format; a Ray Dataset in and out; the command
against an already running cluster."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_rows, write_jsonl

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'outreach-guard[ray]'")

from infer.cli import main as score_main  # noqa: E402
from infer.distributed import ScoreBatch, load_results, main as distributed_main, score_dataset, score_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 2 CPUs, started once for the session."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, object_store_memory=256 * 2**20)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three files, one per format, with bad rows of every kind the reader reports."""
    folder = tmp_path_factory.mktemp("ray_inputs")
    with open(folder / "messy.jsonl", "wb") as fh:
        for r in make_rows(30, seed=21, prefix="j"):
            fh.write(json.dumps(r).encode() + b"\n")
        fh.write(b'{"id": "b", "text": ""}\n')
        fh.write(b'{"id": "c", "text": null}\n')
        fh.write(b'{"id": "d", "text": 42}\n')
        fh.write(b'{"id": "e", "text": "torn\n')
        fh.write('{"id": "f", "text": "caf\xe9 latin-1"}\n'.encode("latin-1"))
        fh.write(b'{"id": "g", "text": "\\u200b \\u200d"}\n')
        fh.write(json.dumps({"id": "h", "text": ["a", "list"]}).encode() + b"\n")
        fh.write(json.dumps({"id": "k", "body": "no text field"}).encode() + b"\n")
        fh.write(b"\n[1, 2]\n")
        fh.write(json.dumps({"id": 7, "text": "an integer id, then one more normal message"}).encode() + b"\n")
    with open(folder / "rows.csv", "w", newline="") as fh:
        fh.write("id,text\n")
        for r in make_rows(25, seed=22, prefix="c"):
            fh.write(f'{r["id"]},"{r["text"]}"\n')
        fh.write('x1,"too",many,fields\n\nx2,"last row"\n')
    rows = make_rows(20, seed=23, prefix="p") + [{"id": "pnull", "text": None, "label": "benign"}]
    pq.write_table(pa.Table.from_pylist(rows), folder / "rows.parquet")
    return folder


def reference(model, path, tmp_path) -> list[dict]:
    """What ``python -m infer`` writes for ``path``, row by row."""
    out = tmp_path / (Path(path).name + ".scores.jsonl")
    assert score_main(["--model", str(model), "--input", str(path), "--output", str(out), "--no-progress"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def assert_same_results(got: list[dict], expected: list[dict]):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g["id"] == (None if e["id"] is None else str(e["id"]))
        assert (g["status"], g["error"], g["label"]) == (e["status"], e["error"], e["label"])
        if e["status"] == "ok":
            assert g["score"] == pytest.approx(e["score"], abs=1e-4)
            assert dict(g["probs"]) == pytest.approx(e["probs"], abs=1e-4)
        else:
            assert g["score"] is None and g["probs"] is None


def test_files_with_bad_rows_score_as_python_m_infer(ray_cluster, tiny_model, inputs, tmp_path):
    out = tmp_path / "scored"
    counts = score_files(str(inputs / "*"), tiny_model, out, workers=2, batch_size=16)
    results = load_results(out).to_pylist()
    files = sorted(str(p) for p in inputs.iterdir())
    # Every input row exactly once: each file's row numbers are 1..n, in order after load_results.
    assert sorted({r["path"] for r in results}) == files
    for path in files:
        expected = reference(tiny_model, path, tmp_path)
        got = [r for r in results if r["path"] == path]
        assert [r["row"] for r in got] == list(range(1, len(expected) + 1))
        assert_same_results(got, expected)
    statuses = [r["status"] for r in results]
    assert counts == {s: statuses.count(s) for s in set(statuses)}
    assert {"ok", "empty_text", "null_text", "not_a_string", "malformed_json", "invalid_utf8", "missing_text",
            "empty_line", "bad_csv_row"} == set(counts)
    assert len(list(out.glob("*.parquet"))) >= 1


def test_a_ray_dataset_in_and_a_ray_dataset_out(ray_cluster, tiny_model, inputs, tmp_path):
    source = inputs / "rows.parquet"
    ds = ray.data.read_parquet(str(source))
    scored = score_dataset(ds, tiny_model, workers=1, batch_size=8)
    assert isinstance(scored, ray.data.Dataset)
    got = sorted(scored.take_all(), key=lambda r: r["id"])
    expected = sorted(reference(tiny_model, source, tmp_path), key=lambda r: r["id"])
    for r in expected:
        if r["status"] != "ok":  # a dataset has no row numbers: its error records name the row by its id
            r["error"] = r["error"].replace("row 21:", "row pnull:")
    assert_same_results(got, expected)


def test_a_batch_without_the_text_column_is_a_clear_error(tiny_model):
    scorer = ScoreBatch(str(tiny_model), device="cpu", precision="fp32")  # what each actor holds
    assert scorer(pa.table({"id": ["1"], "text": ["hello there"]})).column("status").to_pylist() == ["ok"]
    with pytest.raises(ValueError, match=r"no text column 'text'; columns present: \['body', 'id'\]"):
        scorer(pa.table({"id": ["1"], "body": ["hello"]}))


def test_whole_input_errors_stop_before_any_scoring(ray_cluster, tiny_model, inputs, tmp_path, capsys):
    args = ["--model", str(tiny_model), "--output", str(tmp_path / "o"), "--no-progress", "--input"]
    assert distributed_main(args + [str(tmp_path / "missing.jsonl")]) == 2
    assert distributed_main(args + [str(inputs / "rows.csv"), "--text-column", "body"]) == 2
    assert distributed_main(["--model", str(tmp_path), "--input", str(inputs / "rows.csv"), "--output",
                             str(tmp_path / "o")]) == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"")
    assert distributed_main(["--model", str(tiny_model), "--input", str(inputs / "rows.csv"), "--output",
                             str(tmp_path / "full")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4
    assert "no such file" in errors[0] and "no text column 'body'" in errors[1]
    assert "outreach_guard.json" in errors[2] and "not an empty folder" in errors[3]
    assert not (tmp_path / "o").exists()


def test_the_command_runs_unchanged_against_a_running_cluster(ray_cluster, tiny_model, inputs, tmp_path):
    """A second driver, in its own process, finds the session's cluster through RAY_ADDRESS."""
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    out = tmp_path / "scored"
    res = subprocess.run([sys.executable, "-m", "infer.distributed", "--model", str(tiny_model), "--input",
                          str(inputs / "rows.csv"), "--output", str(out), "--workers", "1", "--no-progress"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ray: 2 CPUs" in res.stderr and f"wrote {out}: bad_csv_row=1, empty_line=1, ok=26" in res.stderr
    assert_same_results(load_results(out).to_pylist(), reference(tiny_model, inputs / "rows.csv", tmp_path))


def test_importing_infer_does_not_import_ray():
    code = ("import sys, infer, infer.cli, infer.score, infer.distributed\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_the_cluster_benchmark_runs_commands_the_scorers_accept(tmp_path):
    """The benchmark's command lines parse with the two commands' own parsers."""
    import argparse

    from infer.cli import build_parser as infer_parser
    from infer.distributed import build_parser as distributed_parser
    from train.benchmarks.cluster import commands

    args = argparse.Namespace(model="m", precision="fp32")
    scorers = commands(args, workers=[1, 2], cpus=2)
    assert list(scorers) == ["python -m infer", "Ray, 1 worker x 2 CPU", "Ray, 2 workers x 1 CPU"]
    for name, cmd in scorers.items():
        argv = cmd(tmp_path / "in.jsonl", tmp_path / "out")
        parser = infer_parser() if argv[2] == "infer" else distributed_parser()
        parsed = parser.parse_args(argv[3:])
        assert parsed.model == "m" and parsed.precision == "fp32"
        if argv[2] == "infer.distributed":
            assert (parsed.workers, parsed.cpus_per_worker) == ((1, 2) if "1 worker" in name else (2, 1))
