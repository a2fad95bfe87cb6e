"""PSNR, SSIM, codebook usage/perplexity, Inception Score and precision/recall."""

import math

import numpy as np
import pytest
import torch

from robustok.errors import DataError
from robustok.metrics.generation import inception_score, precision_recall
from robustok.metrics.reconstruction import code_histogram, psnr, ssim, usage_and_perplexity


def test_psnr_known_value():
    x = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    y = x.clone() + 10
    assert psnr(x, y)[0].item() == pytest.approx(10 * math.log10(255**2 / 100))
    assert torch.isinf(psnr(x, x)).all()


def test_ssim_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    noise = torch.randint(-30, 31, x.shape, generator=g)
    y = (x.int() + noise).clamp(0, 255).to(torch.uint8)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    s = ssim(x, y)
    assert ((s > 0) & (s < 1)).all()
    assert torch.allclose(s, ssim(y, x))
    with pytest.raises(DataError):
        ssim(x, y[:, :1])


def test_ssim_matches_direct_formula_on_one_window():
    # an 11x11 image has exactly one valid window: compare with the weighted-statistics formula
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (1, 1, 11, 11), generator=g).double()
    y = torch.randint(0, 256, (1, 1, 11, 11), generator=g).double()
    c = torch.arange(11, dtype=torch.float64) - 5
    w1 = torch.exp(-(c**2) / (2 * 1.5**2))
    w = torch.outer(w1, w1) / w1.sum() ** 2
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cxy = (w * x * y).sum() - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ref = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim(x, y).item() == pytest.approx(ref.item(), rel=1e-10)


def test_usage_and_perplexity():
    counts = code_histogram(torch.arange(8).repeat(5).view(5, 2, 4), 16)
    usage, ppl = usage_and_perplexity(counts)
    assert usage == 0.5 and ppl == pytest.approx(8.0)
    with pytest.raises(DataError, match="out of range"):
        code_histogram(torch.tensor([[16]]), 16)


def test_inception_score_bounds():
    assert inception_score(np.zeros((100, 10)))[0] == pytest.approx(1.0)
    confident = np.eye(10)[np.arange(100) % 10] * 50
    assert inception_score(confident)[0] == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(DataError):
        inception_score(np.zeros((5, 10)))


def test_precision_recall():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 5))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    far = real + 100
    assert precision_recall(real, far) == (0.0, 0.0)
    # a generator covering only half the modes: high precision, low recall
    two = np.concatenate([rng.standard_normal((150, 5)), rng.standard_normal((150, 5)) + 20])
    p, r = precision_recall(two, rng.standard_normal((300, 5)))
    assert p > 0.8 and r < 0.6
