"""LPIPS: torchvision / lpips key names, zero for identical images, differentiable, clear missing-file errors."""

import pytest
import torch

from robustok.errors import CheckpointError
from robustok.metrics.lpips import CONV_CHANNELS, CONV_INDICES, LPIPS, TAP_CHANNELS


def _files(tmp_path):
    g = torch.Generator().manual_seed(0)
    vgg, cin = {}, 3
    for i, c in zip(CONV_INDICES, CONV_CHANNELS):
        vgg[f"features.{i}.weight"] = torch.randn(c, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        vgg[f"features.{i}.bias"] = torch.zeros(c)
        cin = c
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(TAP_CHANNELS)}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    return tmp_path / "vgg16.pth", tmp_path / "vgg.pth"


def test_lpips_distance_and_gradient(tmp_path):
    lp = LPIPS(*_files(tmp_path))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1).requires_grad_(True)
    assert torch.allclose(lp(x, x), torch.zeros(2), atol=1e-6)
    d = lp(x, y)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in lp.parameters())
    gray = x[:, :1]
    assert lp(gray, gray).abs().max() < 1e-6


def test_lpips_embedded_slice_names(tmp_path):
    vgg_path, heads_path = _files(tmp_path)
    vgg = torch.load(vgg_path, weights_only=True)
    slices = {f"net.slice1.{k.split('.')[1]}.{k.split('.')[2]}": v for k, v in vgg.items() if k.startswith("features")}
    torch.save(slices, tmp_path / "lpips_full.pth")
    a = LPIPS(tmp_path / "lpips_full.pth", heads_path)
    b = LPIPS(vgg_path, heads_path)
    x, y = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.allclose(a(x, y), b(x, y))


def test_lpips_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="--lpips-vgg"):
        LPIPS(tmp_path / "absent.pth", tmp_path / "absent2.pth")
    vgg_path, _ = _files(tmp_path)
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "bad_heads.pth")
    with pytest.raises(CheckpointError, match="lin0..lin4"):
        LPIPS(vgg_path, tmp_path / "bad_heads.pth")
