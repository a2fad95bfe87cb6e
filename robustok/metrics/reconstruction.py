"""Reconstruction metrics on uint8 images (what a viewer sees): PSNR, Gaussian-window SSIM; codebook usage."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustok.errors import DataError


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise DataError(
            f"image batches must both be (B, C, H, W) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Per-image PSNR in dB (B,) of two image batches (compared as float64; identical images give inf)."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 255.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-image SSIM (B,) of Wang et al. (2004): 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03,
    'valid' filtering, mean over positions and channels. Images smaller than the window use a window of their size."""
    _check_pair(x, y)
    win = min(window, x.shape[-1], x.shape[-2])
    g = gaussian_window(win, sigma).to(x.device)
    c = x.shape[1]
    gx = g.view(1, 1, 1, win).expand(c, 1, 1, win)
    gy = g.view(1, 1, win, 1).expand(c, 1, win, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gx, groups=c), gy, groups=c)

    a, b = x.double(), y.double()
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def code_histogram(ids: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Counts (K,) of each code in a batch of token ids."""
    flat = ids.reshape(-1).long()
    if flat.numel() and (flat.min() < 0 or flat.max() >= codebook_size):
        raise DataError(f"token ids out of range [0, {codebook_size}): min {int(flat.min())}, max {int(flat.max())}")
    return torch.bincount(flat.cpu(), minlength=codebook_size).double()


def usage_and_perplexity(counts: torch.Tensor) -> tuple[float, float]:
    """(fraction of codes used at least once, perplexity exp(H) of the code distribution)."""
    total = float(counts.sum())
    if total == 0:
        return 0.0, 0.0
    p = counts[counts > 0] / total
    return float((counts > 0).double().mean()), math.exp(float(-(p * p.log()).sum()))
