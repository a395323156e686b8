"""Layering: the ``infer`` runtime never imports ``train`` nor the training-only packages, so
scoring installs and starts light."""

import ast
import json
import pathlib
import subprocess
import sys

from conftest import make_rows, write_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[1]
BANNED = ("train", "datasets", "accelerate", "evaluate", "peft", "sklearn")
RUNTIME_MODULES = ("infer", "infer.cli", "infer.score", "infer.fastpath", "infer.io")


def imported_names(path: pathlib.Path) -> list[str]:
    """Top-level names of every absolute import in a file, wherever it sits (functions included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
    return [name.split(".")[0] for name in names]


def test_no_file_of_infer_imports_training_packages():
    files = sorted((ROOT / "infer").rglob("*.py"))
    folders = {p.parent.relative_to(ROOT).as_posix() for p in files}
    assert {"infer", "infer/fastpath", "infer/io"} <= folders  # every sub-folder is walked
    for path in files:
        assert not set(imported_names(path)) & set(BANNED), f"{path.relative_to(ROOT)} imports {imported_names(path)}"


def test_the_walk_sees_imports_anywhere_in_a_file(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from train.recipes import train\n    import datasets.arrow\n"
                      "    importlib.import_module('evaluate')\n")
    assert imported_names(sample) == ["os", "train", "datasets", "evaluate"]


def test_a_fresh_interpreter_imports_and_scores_without_training_packages(tiny_model, tmp_path):
    """In a fresh interpreter: importing the runtime loads none of the banned modules; then, with
    them blocked the way a missing package looks to Python (``sys.modules[name] = None`` makes
    ``find_spec`` return None and ``import`` fail), the command line scores a file. transformers
    >= 5 imports accelerate by itself when it *is* installed, so blocking is the only faithful
    check that scoring needs none of them."""
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(12, seed=3))
    out = tmp_path / "out.csv"
    code = (
        "import json, sys\n"
        f"for name in {RUNTIME_MODULES!r}:\n"
        "    __import__(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {BANNED!r})\n"
        "print(json.dumps(loaded), flush=True)\n"
        f"for name in {BANNED!r}:\n"
        "    sys.modules[name] = None\n"
        "from infer.cli import main\n"
        "sys.exit(main(['--model', sys.argv[1], '--input', sys.argv[2], '--output', sys.argv[3], '--no-progress']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tiny_model), str(src), str(out)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0]) == []
    assert "ok=12" in res.stderr
    assert len(out.read_text().splitlines()) == 13  # header and one row per input row
