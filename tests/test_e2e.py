"""End to end with the real packaged all-MiniLM-L6-v2: train briefly, reload, score a file."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_minilm_train_reload_score(tmp_path):
    run_dir = tmp_path / "run"
    train = subprocess.run(
        [sys.executable, "-m", "train", "--config", "configs/default.yaml", "--output-dir", str(run_dir),
         "data.max_train_samples=96", "text.max_length=64", "training.num_train_epochs=1",
         "training.per_device_train_batch_size=16", "training.disable_tqdm=true", "training.use_cpu=true",
         "data.test_splits=[test]"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert train.returncode == 0, train.stderr[-3000:]
    model = run_dir / "model"
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["train"]["rows"] == 96 and metrics["test"]["n"] >= 400

    rows = [json.loads(l) for l in open(ROOT / "data" / "sample.jsonl")]
    out = tmp_path / "scores.jsonl"
    score = subprocess.run([sys.executable, "-m", "infer", "--model", str(model), "--input", "data/sample.jsonl",
                            "--output", str(out), "--no-progress"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert score.returncode == 0, score.stderr[-3000:]
    got = [json.loads(l) for l in open(out)]
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    labels = json.loads((model / "outreach_guard.json").read_text())["task"]["labels"]
    for r in got:
        assert r["status"] == "ok" and r["label"] in labels
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["score"] == pytest.approx(r["probs"]["grooming"])
