"""precision="auto": bf16 only where the hardware runs it natively, fp32 elsewhere, and a warning
when bf16 is forced where it is emulated. The CPU and GPU are simulated, so every case runs here."""

import pytest
import torch

from gankit import hardware


def fake_cpu(monkeypatch, capability, **flags):
    monkeypatch.setattr(hardware.torch.backends.cpu, "get_cpu_capability", lambda: capability)
    for name, attr in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"),
                       ("avx512", "_is_avx512_supported"), ("avx2", "_is_avx2_supported")):
        monkeypatch.setattr(hardware.torch.cpu, attr, lambda v=flags.get(name, False): v)


@pytest.mark.parametrize("capability, flags, chosen, banner", [
    ("AVX2", dict(avx2=True), "fp32", "cpu AVX2, no native bf16 -> fp32"),
    # AVX-512 without BF16 (Skylake-X, Zen 4 has BF16): oneDNN says "bf16 supported" but emulates it
    ("AVX512", dict(avx2=True, avx512=True), "fp32", "cpu AVX512, no native bf16 -> fp32"),
    ("AVX512", dict(avx2=True, avx512=True, avx512_bf16=True), "bf16", "cpu AVX512 + AVX512_BF16, native bf16 -> bf16"),
    ("AVX512", dict(avx2=True, avx512=True, avx512_bf16=True, amx=True), "bf16", "cpu AVX512 + AMX, native bf16 -> bf16"),
    ("DEFAULT", dict(), "fp32", "cpu DEFAULT, no native bf16 -> fp32"),  # e.g. an Arm laptop
])
def test_auto_picks_bf16_only_where_native_on_cpu(monkeypatch, capability, flags, chosen, banner):
    fake_cpu(monkeypatch, capability, **flags)
    assert hardware.resolve_precision("auto", "cpu") == (chosen, banner, None)
    assert hardware.resolve_precision("fp32", "cpu")[0] == "fp32"


def test_forced_bf16_on_an_emulating_cpu_warns_once_with_the_consequence(monkeypatch):
    fake_cpu(monkeypatch, "AVX2", avx2=True)
    precision, why, warning = hardware.resolve_precision("bf16", "cpu")
    assert precision == "bf16" and why == "cpu AVX2, no native bf16 -> bf16 (as configured)"
    assert "emulated" in warning and "slower" in warning and "\n" not in warning
    fake_cpu(monkeypatch, "AVX512", avx512=True, amx=True)
    assert hardware.resolve_precision("bf16", "cpu")[2] is None


@pytest.mark.parametrize("major, native, chosen", [(9, True, "bf16"), (8, True, "bf16"), (7, False, "fp32")])
def test_auto_on_cuda_follows_the_gpu(monkeypatch, major, native, chosen):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (major, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "a GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native)
    precision, why, _ = hardware.resolve_precision("auto", "cuda")
    assert precision == chosen and why.startswith(f"cuda sm_{major}0, ")


def test_this_machine_is_described():
    hw = hardware.inspect("cpu")
    assert hw.device == "cpu" and hw.name and hw.capability
    assert hw.native_bf16 == (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        hardware.resolve_precision("fp16", "cpu")
