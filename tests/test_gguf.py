"""``pkg:<module>`` names for packaged weights: found without importing the package, a ready
folder used as it is, chunked GGUF packages assembled into the cache (no model work here; the
conversion itself is checked end to end in test_e2e_llm.py)."""

import sys

import pytest

from train.recipes.config import ModelConfig
from train.recipes.gguf import packaged_gguf, packaged_model_dir


@pytest.fixture
def packages(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("OUTREACH_GUARD_CACHE", str(tmp_path / "cache"))
    yield root
    for name in [m for m in sys.modules if m.startswith("fakeweights_")]:
        del sys.modules[name]


def test_a_shipped_gguf_file_is_found_without_importing_its_package(packages):
    pkg = packages / "fakeweights_file"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('needs a chat plugin')\n")
    (pkg / "tiny.Q4_1.gguf").write_bytes(b"GGUF")
    assert packaged_gguf("fakeweights_file") == pkg / "tiny.Q4_1.gguf"
    assert "fakeweights_file" not in sys.modules


def test_a_ready_folder_is_used_as_it_is(packages, tmp_path):
    pkg = packages / "fakeweights_folder"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"MODEL_DIR = {str(tmp_path / 'model')!r}\n")
    assert packaged_gguf("fakeweights_folder") is None
    assert ModelConfig("pkg:fakeweights_folder").resolve() == str(tmp_path / "model")


def test_chunked_packages_are_assembled_into_the_cache(packages, tmp_path):
    pkg = packages / "fakeweights_chunks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\nMODEL_NAME = 'm.gguf'\nEXPECTED_SHA256 = 'ab' * 32\n"
        "def assemble(path):\n    Path(path).parent.mkdir(parents=True, exist_ok=True)\n"
        "    Path(path).write_bytes(b'GG' + b'UF')\n    return Path(path)\n")
    path = packaged_gguf("fakeweights_chunks")
    assert path.read_bytes() == b"GGUF" and path.is_relative_to(tmp_path / "cache")


def test_unknown_packages_are_named():
    with pytest.raises(ValueError, match="no installed package named 'no_such_weights_pkg'"):
        packaged_model_dir("no_such_weights_pkg")
