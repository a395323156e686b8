"""The README's two commands exist and do what it says; its other commands name real entry points."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def first_code_block(text: str) -> list[str]:
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def make_targets() -> dict:
    targets, current = {}, None
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(r"^([a-z]+):", line)
        if m:
            current = m.group(1)
            targets[current] = []
        elif current and line.startswith("\t"):
            targets[current].append(line.strip())
    return targets


def test_readme_starts_with_exactly_two_commands():
    assert first_code_block(README) == ["make demo", "make test"]
    # "Near its top": before any other section of the README.
    assert README.index("make demo") < README.index("\n## ", README.index("```") + 3)


def test_the_two_commands_set_up_and_run():
    targets = make_targets()
    assert targets["demo"] and targets["test"]
    makefile = (ROOT / "Makefile").read_text()
    # CPU torch wheel first, then the project with its test extras.
    assert makefile.index("torch==2.13.0") < makefile.index("-e '.[test]'")
    assert "demo: $(STAMP)" in makefile and "test: $(STAMP)" in makefile
    demo = "\n".join(targets["demo"])
    assert "-m train --config configs/default.yaml" in demo and "-m infer --model" in demo
    assert "pytest" in "\n".join(targets["test"])


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_python_module_commands_in_readme_exist():
    for module in set(re.findall(r"python -m ([a-z_.]+)", README)):
        if module in ("pip", "venv", "pytest"):
            continue
        path = ROOT / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), module
    for config in set(re.findall(r"configs/[a-z_\-]+\.yaml", README)):
        assert (ROOT / config).is_file(), config
