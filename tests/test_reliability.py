"""Scoring that survives crashes, bad input and obfuscation; training that survives crashes.

The kill test runs the real command line (``python -m infer``) and kills it with SIGKILL
mid-run several times, resuming each time, then checks the output is byte-identical to an
uninterrupted run.
"""

import copy
import dataclasses
import json
import logging
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_rows, write_jsonl
from infer import Classifier, ModelFolderError
from infer.cli import main as score_main
from infer.io import InputError, read_rows
from infer.score import score_file, score_rows
from infer.text import normalize_text
from train.evaluation.robustness import PERTURBATIONS, perturb

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHUNK = "4"
BATCH = "2"  # small batches spread the writes out, so that kills land mid-run
# One thread: a tiny model gains nothing from more, and on a busy machine they slow it tenfold.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def clf(tiny_model):
    return Classifier.from_pretrained(tiny_model, device="cpu")


def _kill_test_input(path, n=600):
    """Valid rows with bad ones mixed in, and ids that need quoting in CSV."""
    lines = [json.dumps(r) for r in make_rows(n, seed=21)]
    lines[7] = '{"id": "torn", "text": "no closing'
    lines[40] = json.dumps({"id": "multi\nline, \"quoted\" id", "text": "a message with an awkward id"})
    lines[41] = json.dumps({"id": "e", "text": "   "})
    lines[60] = json.dumps({"id": 60, "text": ["not", "a", "string"]})
    path.write_text("\n".join(lines) + "\n")
    return path


def _score_command(model, src, out):
    return [sys.executable, "-m", "infer", "--model", str(model), "--input", str(src), "--output", str(out),
            "--chunk-size", CHUNK, "--max-batch-size", BATCH, "--device", "cpu", "--no-progress", "--resume"]


def _kill_mid_run(command, out, rng) -> bool:
    """Start a run, wait until it has written something new, kill it. True if it was killed
    before finishing."""
    before = out.stat().st_size if out.exists() else 0
    proc = subprocess.Popen(command, cwd=ROOT, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.stat().st_size > before:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("ext, kills", [("jsonl", 2), ("csv", 1)])
def test_sigkill_and_resume_give_the_uninterrupted_output(tiny_model, tmp_path, ext, kills):
    src = _kill_test_input(tmp_path / "in.jsonl")
    reference = tmp_path / f"reference.{ext}"
    uninterrupted = Classifier.from_pretrained(tiny_model, device="cpu", max_batch_size=int(BATCH))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the killed runs, so that every float comes out the same
    try:
        score_file(uninterrupted, src, reference, chunk_size=int(CHUNK), progress=False)
    finally:
        torch.set_num_threads(threads)
    expected = reference.read_bytes()

    out = tmp_path / f"out.{ext}"
    rng = random.Random(ext)
    for _ in range(kills):
        assert _kill_mid_run(_score_command(tiny_model, src, out), out, rng), "the run ended before the kill"
        left = out.read_bytes()
        # Only complete rows, each the same as in the uninterrupted run, then at most the
        # beginning of the next one (cut off, with no line terminator).
        assert expected.startswith(left) and len(left) < len(expected)
    done = subprocess.run(_score_command(tiny_model, src, out), cwd=ROOT, env=ONE_THREAD, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == expected
    assert "resumed=" in done.stderr.splitlines()[-1]


def test_bad_rows_get_a_status_and_their_text_reaches_no_output_log_or_error(tiny_model, tmp_path, capfd,
                                                                             caplog, recwarn):
    """Every kind of bad row gets its status code and an error naming its row number, the job goes
    on, and message text appears nowhere but in the input: not in the output, the logs (captured
    at DEBUG, every logger), warnings, or anything written to stdout or stderr."""
    marker = "ZQXJV-SECRET-MARKER"
    src = tmp_path / "in.jsonl"
    with open(src, "wb") as fh:
        fh.write(json.dumps({"id": "a", "text": f"hello {marker} there"}).encode() + b"\n")
        fh.write(b'{"id": "b", "text": ""}\n')
        fh.write(b'{"id": "c", "text": null}\n')
        fh.write(b'{"id": "d", "text": 42}\n')
        fh.write(f'{{"id": "e", "text": "{marker} torn\n'.encode())
        fh.write(f'{{"id": "f", "text": "caf\xe9 latin-1 {marker}"}}\n'.encode("latin-1"))
        fh.write(b'{"id": "g", "text": "\\u200b \\u200d"}\n')
        fh.write(json.dumps({"id": "h", "text": [marker]}).encode() + b"\n")
        fh.write(json.dumps({"id": "i", "text": {"body": marker}}).encode() + b"\n")
        fh.write(json.dumps({"id": "j", "text": f"{marker} " * 20000}).encode() + b"\n")
        fh.write(json.dumps({"id": "k", "body": marker}).encode() + b"\n")
        fh.write(b"\n")
        fh.write(json.dumps({"id": "l", "text": "another normal message"}).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    caplog.set_level(logging.DEBUG)
    assert score_main(["--model", str(tiny_model), "--input", str(src), "--output", str(out), "--no-progress"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in got] == ["ok", "empty_text", "null_text", "not_a_string", "malformed_json",
                                          "invalid_utf8", "empty_text", "not_a_string", "not_a_string", "ok",
                                          "missing_text", "empty_line", "ok"]
    # Ids pass through; a row that could not be parsed is named by its row number.
    assert [r["id"] for r in got] == ["a", "b", "c", "d", 5, 6, "g", "h", "i", "j", "k", 12, "l"]
    for number, r in enumerate(got, 1):
        if r["status"] == "ok":
            assert r["label"] is not None and r["error"] is None
        else:
            assert r["label"] is None and r["score"] is None and r["probs"] is None
            assert r["error"].startswith(f"row {number}: ")
    stdout, stderr = capfd.readouterr()
    assert ("wrote " + str(out) + ": empty_line=1, empty_text=2, invalid_utf8=1, malformed_json=1, missing_text=1, "
            "not_a_string=3, null_text=1, ok=3") in stderr
    assert "torn" not in out.read_text() and "latin-1" not in out.read_text()
    for where in (out.read_text(), stdout, stderr, caplog.text, *(str(w.message) for w in recwarn)):
        assert marker not in where
    assert any(r.name.startswith("infer") for r in caplog.records)  # the logs were captured


def _copy_model(tiny_model, tmp_path, name="m"):
    folder = tmp_path / name
    shutil.copytree(tiny_model, folder)
    return folder


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _write(path, text):
    path.write_text(text)
    return path


def _mkdir(path):
    path.mkdir()
    return path


# Each case: how to break the input (returning it) or the model, and the error line it must give.
WHOLE_INPUT_ERRORS = {
    "missing input": (lambda m, d: d / "nope.jsonl", "{input}: no such file"),
    "unknown input format": (lambda m, d: _write(d / "in.txt", "hi"), "unknown format '.txt'"),
    "missing text column": (lambda m, d: _write(d / "in.jsonl", '{"id": 1, "body": "x"}\n'),
                            "no text column 'text'; columns present: ['body', 'id']"),
    "missing text column in CSV": (lambda m, d: _write(d / "in.csv", "id,body\n1,x\n"),
                                   "no text column 'text'; columns present: ['body', 'id']"),
    "missing model folder": (lambda m, d: shutil.rmtree(m), "model folder does not exist"),
    "missing config.json": (lambda m, d: (m / "config.json").unlink(), "missing config.json"),
    "malformed config.json": (lambda m, d: (m / "config.json").write_text("{oops"), "malformed config.json"),
    "missing pipeline file": (lambda m, d: (m / "outreach_guard.json").unlink(), "missing outreach_guard.json"),
    "malformed pipeline file": (lambda m, d: (m / "outreach_guard.json").write_text("[]"),
                                "outreach_guard.json: malformed"),
    "missing weights": (lambda m, d: (m / "model.safetensors").unlink(),
                        "no weights found (expected model.safetensors)"),
    "corrupt weights": (lambda m, d: (m / "model.safetensors").write_bytes(b"\0" * 64), "cannot load model weights"),
    "missing tokenizer": (lambda m, d: (m / "tokenizer.json").unlink(), "missing tokenizer files"),
    "label map vs weights": (lambda m, d: _edit_json(m / "outreach_guard.json",
                                                     task={"labels": ["a", "b", "c"], "positive_label": "a"}),
                             "does not match the model's 2 outputs"),
    "config labels vs weights": (lambda m, d: _edit_json(m / "config.json", id2label={"0": "a", "1": "b", "2": "c"},
                                                         label2id={"a": 0, "b": 1, "c": 2}),
                                 "shapes do not match config.json"),
    "input is a directory": (lambda m, d: _mkdir(d / "in.jsonl"), "{input}: a directory, not a file"),
    "pipeline file not JSON": (lambda m, d: (m / "outreach_guard.json").write_text("{not json"),
                               "outreach_guard.json: malformed"),
}


@pytest.mark.parametrize("case", WHOLE_INPUT_ERRORS)
def test_whole_input_errors_stop_with_one_clear_line(tiny_model, tmp_path, capsys, case):
    model = _copy_model(tiny_model, tmp_path)
    good_input = write_jsonl(tmp_path / "good.jsonl", make_rows(3))
    breaker, expected = WHOLE_INPUT_ERRORS[case]
    broken_input = breaker(model, tmp_path)
    src = broken_input if isinstance(broken_input, pathlib.Path) else good_input
    # The library raises it as soon as it is called: read_rows before any row is read, and
    # from_pretrained before anything is scored ...
    if src is broken_input:
        with pytest.raises(InputError) as raised:
            read_rows(src)
    else:
        with pytest.raises(ModelFolderError) as raised:
            Classifier.from_pretrained(model)
    message = str(raised.value)
    assert expected.format(input=src) in message
    # ... and the command line says exactly that, on one line, with exit status 2.
    out = tmp_path / "out.jsonl"
    assert score_main(["--model", str(model), "--input", str(src), "--output", str(out), "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: " + " ".join(message.split("\n"))]
    assert not out.exists()  # nothing was scored


def test_one_row_that_breaks_the_model_costs_only_itself(clf, tmp_path, monkeypatch):
    real_predict = clf.predict

    def fragile_predict(texts):
        if any("poison" in t for t in texts):
            raise RuntimeError("boom")
        return real_predict(texts)

    monkeypatch.setattr(clf, "predict", fragile_predict)
    rows = list(read_rows(write_jsonl(tmp_path / "in.jsonl",
                                      [{"id": i, "text": "poison" if i == 2 else f"fine text {i}"} for i in range(5)])))
    out = score_rows(clf, rows)
    assert [r["status"] for r in out] == ["ok", "ok", "model_error", "ok", "ok"]
    assert out[2]["error"] == "row 3: scoring failed (RuntimeError)"
    monkeypatch.setattr(clf, "predict", lambda texts: (_ for _ in ()).throw(RuntimeError("model is broken")))
    with pytest.raises(RuntimeError, match="model is broken"):
        score_rows(clf, rows)


@pytest.mark.parametrize("policy", ["truncate", "sliding_window"])
def test_a_five_megabyte_message_is_scored_like_any_other(clf, tmp_path, policy):
    text_settings = dataclasses.replace(clf.manifest.text, long_text=policy, window_stride=8, max_windows=4)
    long_clf = copy.copy(clf)
    long_clf.manifest = dataclasses.replace(clf.manifest, text=text_settings)
    huge = "Please send the internal budget plans. " * 130_000
    assert len(huge) > 5_000_000
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "small", "text": "hello"}, {"id": "huge", "text": huge}])
    out = tmp_path / "out.jsonl"
    assert score_file(long_clf, src, out, progress=False) == {"ok": 2}
    windows, owners = long_clf.encode([huge])
    assert len(windows) == (1 if policy == "truncate" else 4)  # the documented cap on windows
    assert all(len(w) <= text_settings.max_length for w in windows)


# -- the normaliser -------------------------------------------------------------------------

lookalike_heavy = st.text(st.sampled_from(list("aceopxy ACEHKOPT\t\n.,é") + list("асеорху АСЕНКОРТ ϲϹςΣп")))


@settings(max_examples=300, deadline=None)
@given(lookalike_heavy)
def test_normalising_twice_changes_nothing_even_with_lookalikes(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters() | st.sampled_from(["\ud800", "\udfff", "\U000e0041", "\u2066"])))
def test_normalised_text_is_always_valid_unicode(text):
    normalize_text(text).encode("utf-8")  # no unpaired surrogates left; tokenizers need valid text


# Whitespace: inserted line breaks stay (as one "\n"), but the words, and so the tokens, are the same.
@pytest.mark.parametrize("name, seen_as", [("zero_width", str), ("homoglyph", str), ("whitespace", str.split)])
def test_the_normaliser_undoes_evasion(name, seen_as):
    texts = [r["text"] for r in make_rows(200, seed=8)]
    perturbed = perturb(texts, name, seed=3)
    assert sum(p != t for p, t in zip(perturbed, texts)) > 190  # the perturbation did something
    assert [seen_as(normalize_text(p)) for p in perturbed] == [seen_as(normalize_text(t)) for t in texts]


def test_casing_is_undone_by_the_uncased_tokenizer(clf):
    texts = [r["text"] for r in make_rows(50, seed=9)]
    assert clf.tokenizer.do_lower_case
    assert clf.encode(perturb(texts, "casing", seed=1))[0] == clf.encode(texts)[0]


def test_perturbations_are_seeded_per_row():
    texts = [r["text"] for r in make_rows(20, seed=2)]
    for name in PERTURBATIONS:
        assert perturb(texts, name, seed=5) == perturb(texts, name, seed=5)
        assert perturb(texts[:7], name, seed=5) == perturb(texts, name, seed=5)[:7]
        assert perturb(texts, name, seed=5) != perturb(texts, name, seed=6)


# -- training -------------------------------------------------------------------------------


def test_training_resumes_from_its_last_checkpoint_after_a_crash(trained_run, tiny_base, tiny_data_files, tmp_path,
                                                                 monkeypatch):
    from safetensors.torch import load_file
    from transformers import Trainer

    from conftest import tiny_recipe
    from train.recipes import recipe_from_dict, train

    # The same recipe as the session's trained run: 2 epochs, a checkpoint per epoch.
    recipe = recipe_from_dict(tiny_recipe(tiny_base, tiny_data_files))
    save_checkpoint = Trainer._save_checkpoint

    def crash_after_first_checkpoint(self, *args, **kwargs):
        save_checkpoint(self, *args, **kwargs)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(Trainer, "_save_checkpoint", crash_after_first_checkpoint)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(recipe, tmp_path / "crashed")
    monkeypatch.undo()
    assert not (tmp_path / "crashed" / "model").exists()  # no folder that looks complete but is not
    assert [p.name for p in (tmp_path / "crashed" / "checkpoints").iterdir()] == ["checkpoint-6"]

    resumed = train(recipe, tmp_path / "crashed", resume=True)
    a = load_file(trained_run.model_dir / "model.safetensors")
    b = load_file(resumed.model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), atol=1e-6, err_msg=name)


def test_long_text_policy_can_be_chosen_when_scoring(tiny_model, tmp_path):
    text = " ".join(r["text"] for r in make_rows(30, seed=6))  # about 15 windows of 64 tokens
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "long", "text": text}])
    # Reference: every window of the text scored on its own (fp32, so that the windows' scores
    # differ by more than rounding; this random tiny model scores them all near 0.512).
    clf = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")
    windows, owners = clf.encode([text])
    assert len(windows) == 1  # the model's own policy truncates
    settings = clf.manifest.text.with_long_text("sliding_window")
    clf.manifest = dataclasses.replace(clf.manifest, text=settings)
    windows, owners = clf.encode([text])
    assert len(windows) > 10 and set(owners) == {0}
    positive = clf.labels.index(clf.manifest.positive_label)
    per_window = clf._score_windows(windows)[:, positive]
    scores = {}
    for policy in ("truncate", "sliding_window"):
        out = tmp_path / f"{policy}.jsonl"
        assert score_main(["--model", str(tiny_model), "--input", str(src), "--output", str(out), "--no-progress",
                           "--device", "cpu", "--precision", "fp32", "--long-text", policy]) == 0
        scores[policy] = json.loads(out.read_text())["score"]
    # Truncation sees the first window only; sliding windows report the most suspicious one.
    assert scores["truncate"] == pytest.approx(per_window[0], rel=1e-6)
    assert scores["sliding_window"] == pytest.approx(per_window.max(), rel=1e-6)
    assert per_window.max() > per_window[0]
