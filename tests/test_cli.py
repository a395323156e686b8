"""The command line: the ``outreach-guard`` console script and its sub-commands, ``python -m train``
and ``python -m infer``. One fresh process per command checked; the rest runs in-process."""

import json
import pathlib
import subprocess
import sys

import pytest

from train.cli import COMMANDS, main, usage

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = pathlib.Path(sys.executable).parent / "outreach-guard"


def run(*args, script=True):
    command = [str(SCRIPT), *args] if script else [sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _corpus_row(i, text, family, **fields):
    return {"id": f"c{i}", "text": text, "label": "benign", "tactics": [], "family": family, "hard": False,
            "stage": "first_contact", "source": "authored", "author": "w1", "split": "train", **fields}


def test_the_console_script_is_installed():
    assert SCRIPT.is_file(), "run `pip install -e '.[test]'` so that the outreach-guard command exists"


def test_help_lists_every_command():
    res = run("--help")
    assert res.returncode == 0, res.stderr
    listed = [line.split()[0] for line in res.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert res.stdout.strip() == usage()


def test_an_unknown_command_exits_2(capsys):
    res = run("frobnicate")
    assert res.returncode == 2 and "unknown command 'frobnicate'" in res.stderr
    assert main([]) == 2 and "usage: outreach-guard <command>" in capsys.readouterr().out


def test_score_on_a_missing_input_is_one_error_line(tiny_model, tmp_path):
    missing = tmp_path / "missing.jsonl"
    res = run("score", "--model", str(tiny_model), "--input", str(missing), "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {missing}: no such file"]
    assert res.stderr.strip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "o.jsonl").exists()


def test_validate_exit_codes(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in [
        _corpus_row(1, "A perfectly ordinary note about a job opening in our Berlin office.", "jobs"),
        _corpus_row(2, "Would you speak on our energy panel next spring? Travel is covered.", "panels")]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_corpus_row(1, "Only three words", "f", label="spam")) + "\n")
    res = run("validate", str(good))
    assert res.returncode == 0, res.stderr
    assert "OK: no problems found" in res.stdout and f"{good}: 2 rows" in res.stdout
    res = run("validate", str(bad))
    assert res.returncode == 1
    assert "label 'spam' not in ['benign', 'grooming']" in res.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help_under_its_own_name(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: outreach-guard {command}")


@pytest.mark.parametrize("module, usage_line", [("train", "usage: python -m train"),
                                                ("infer", "usage: python -m infer")])
def test_python_dash_m_still_works(module, usage_line):
    res = run("-m", module, "--help", script=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(usage_line)
