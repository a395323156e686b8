import pytest
import torch

from infer import device as device_module
from infer.device import PRECISIONS, auto_precision, configure_threads, resolve_precision


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_picks_bf16_only_on_cpus_with_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    chosen, reason = auto_precision(torch.device("cpu"))
    assert chosen == expected and reason


@pytest.mark.parametrize("bf16_supported, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_gpu_prefers_bf16_then_fp16(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    assert resolve_precision("auto", torch.device("cuda")) == expected


def test_auto_says_which_mode_it_chose(monkeypatch, caplog):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("INFO", logger="infer.device"):
        resolve_precision("auto", torch.device("cpu"))
    assert "auto -> bf16" in caplog.text


def test_x86_bf16_needs_the_instructions_not_just_avx512(monkeypatch):
    # oneDNN reports bf16 "supported" on any AVX-512 CPU, where it is emulated and slow.
    monkeypatch.setattr(device_module.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert device_module.cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert device_module.cpu_has_native_bf16() is True


def test_unknown_precision_is_refused():
    assert "int8" not in PRECISIONS  # measured below the agreement bar: not offered
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", torch.device("cpu"))


def test_threads_default_to_every_usable_cpu(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device_module, "usable_cpu_count", lambda: 3)
    assert configure_threads() == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads() == 1 and torch.get_num_threads() == 1
    assert configure_threads(2) == 2 and torch.get_num_threads() == 2
    with pytest.raises(ValueError):
        configure_threads(0)
