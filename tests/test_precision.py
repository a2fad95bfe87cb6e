"""The precision setting (`train.amp`, `--precision`): fp32 | bf16 | auto, resolved per device and printed."""

import pytest
import torch

import robustok.train.precision as prec
from robustok.errors import ConfigError
from robustok.train.precision import autocast, normalize, resolve_precision


def test_names_and_the_old_off():
    assert [normalize(s) for s in ("auto", "BF16", "fp32", "off", "False")] == ["auto", "bf16", "fp32", "fp32", "fp32"]
    with pytest.raises(ConfigError, match="auto, bf16 or fp32"):
        normalize("fp16")


def test_cpu_with_bf16_instructions(monkeypatch):
    monkeypatch.setattr(prec, "cpu_bf16_instructions", lambda: "amx_bf16")
    assert resolve_precision("bf16", "cpu")[0] == "bf16"
    assert resolve_precision("fp32", "cpu")[0] == "fp32"
    monkeypatch.setattr(prec, "AUTO_BF16_ON_CPU", False)
    name, why = resolve_precision("auto", "cpu")
    assert name == "fp32" and "cpu_bf16.py" in why and "amx_bf16" in why
    monkeypatch.setattr(prec, "AUTO_BF16_ON_CPU", True)
    assert resolve_precision("auto", "cpu")[0] == "bf16"


def test_cpu_without_them_says_so_and_uses_fp32(monkeypatch):
    monkeypatch.setattr(prec, "cpu_bf16_instructions", lambda: None)
    monkeypatch.setattr(prec, "AUTO_BF16_ON_CPU", True)
    name, why = resolve_precision("bf16", "cpu")
    assert name == "fp32" and "no bf16 matrix instructions" in why and "using fp32" in why
    assert resolve_precision("auto", "cpu")[0] == "fp32"


def test_autocast_switches_matmul_dtype():
    a = torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32


def test_cpu_flags_are_read():
    assert prec.cpu_bf16_instructions() in (None, *prec.CPU_BF16_FLAGS)


def test_sampling_runs_in_the_asked_precision(monkeypatch):
    from robustok.generator import ARConfig, ARGenerator
    from robustok.generator.sampling import SamplingOptions, sample_codes

    monkeypatch.setattr(prec, "cpu_bf16_instructions", lambda: "avx512_bf16")
    torch.manual_seed(0)
    gen = ARGenerator(ARConfig(vocab_size=32, grid=[4, 4], num_classes=2, dim=32, depth=1, heads=2)).eval()
    seen, real = [], gen.sample_codes

    def spy(*a, **k):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(*a, **k)

    gen.sample_codes = spy
    labels = torch.tensor([0, 1, 0])
    ids = {
        p: sample_codes(gen, labels, SamplingOptions(precision=p), torch.Generator().manual_seed(1))
        for p in ("fp32", "bf16")
    }
    default = sample_codes(gen, labels, SamplingOptions(), torch.Generator().manual_seed(1))
    assert seen == [False, True, False] and torch.equal(default, ids["fp32"])
    assert ids["bf16"].shape == (3, 4, 4) and ids["bf16"].dtype == ids["fp32"].dtype
