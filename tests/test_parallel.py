"""Data-parallel training (train.recipes.parallel): two CPU processes under torchrun (gloo), a tiny
model, a few steps, against the session's single-process run of the same recipe."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_recipe
from infer import Classifier
from train.recipes.parallel import check_data_parallel, effective_batch_size

ROOT = Path(__file__).resolve().parents[1]


def launch_two_processes(recipe: dict, folder: Path):
    """``torchrun --standalone --nproc_per_node 2 -m train --config <recipe>``; the run folder and the result."""
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "train", "--config", str(config), "--output-dir", str(folder / "run")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return folder / "run", res


@pytest.fixture(scope="module")
def two_process_run(tiny_base, tiny_data_files, tmp_path_factory):
    """Two CPU processes (gloo) on the tiny recipe *without* ``use_cpu``: the launch that
    accelerate alone would run as two separate single-process trainings."""
    raw = tiny_recipe(tiny_base, tiny_data_files)
    del raw["training"]["use_cpu"]
    return launch_two_processes(raw, tmp_path_factory.mktemp("ddp"))


def test_two_processes_train_one_model_with_half_the_steps(two_process_run, trained_run):
    run_dir, res = two_process_run
    single = trained_run.metrics["train"]
    parallel = json.loads((run_dir / "model" / "metrics.json").read_text())["train"]
    assert single["world_size"] == 1 and parallel["world_size"] == 2
    # Same recipe (8 rows per device): the global batch doubles, so the run takes half the steps
    # and each process sees half of the training rows per epoch.
    assert parallel["effective_batch_size"] == 2 * single["effective_batch_size"] == 16
    assert single["steps"] > 0 and parallel["steps"] * 2 == single["steps"]
    assert parallel["rows"] == single["rows"] == 48
    # Exactly one model folder, and only the main process reported it.
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "model"]
    assert res.stdout.count("model written to") == 1


def test_evaluation_counts_each_validation_row_once(two_process_run):
    run_dir, _ = two_process_run
    # The Trainer's per-epoch evaluation (sharded across both processes, then gathered).
    states = sorted((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    evals = [e for s in states for e in json.loads(s.read_text())["log_history"] if "eval_n" in e]
    assert evals and all(e["eval_n"] == 16 for e in evals)
    # The final scores (the main process, with the infer runtime).
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 16 and metrics["test"]["n"] == 16


def test_the_parallel_model_loads_and_scores(two_process_run, tiny_data_files):
    run_dir, _ = two_process_run
    clf = Classifier.from_pretrained(run_dir / "model", device="cpu", precision="fp32")
    rows = [json.loads(line) for line in Path(tiny_data_files["validation"]).read_text().splitlines()]
    predictions = clf.predict([r["text"] for r in rows])
    assert len(predictions) == 16 and {p.label for p in predictions} <= {"benign", "grooming"}
    assert clf.threshold == json.loads((run_dir / "model" / "outreach_guard.json").read_text())["task"]["threshold"]


def test_a_launch_the_trainer_runs_as_one_process_is_refused():
    check_data_parallel(running=2, launched=2)
    check_data_parallel(running=1, launched=1)
    with pytest.raises(RuntimeError, match="2 processes were launched.*world of 1.*use_cpu"):
        check_data_parallel(running=1, launched=2)


def test_effective_batch_size_counts_accumulation_and_processes():
    assert effective_batch_size({}, 1) == 8  # TrainingArguments' default per-device batch
    assert effective_batch_size({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 3}, 2) == 24


@pytest.mark.multigpu
def test_two_gpu_processes_train_one_model_with_nccl(tiny_base, tiny_data_files, tmp_path):
    run_dir, res = launch_two_processes(tiny_recipe(tiny_base, tiny_data_files, use_cpu=False), tmp_path)
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2 and metrics["validation"]["n"] == 16
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "model"]
    assert res.stdout.count("model written to") == 1
