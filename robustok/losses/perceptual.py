"""Perceptual loss: LPIPS-VGG when the user has its weight files; otherwise none (documented choice).

Offline, the embedded default trains without a perceptual term: no pretrained network can be downloaded, and
using the FID feature network (Inception, or the project's Fashion-MNIST classifier) as a training loss would
bias exactly the FID it is judged by. With `loss.perceptual=lpips`, give `loss.lpips_vgg` (torchvision VGG16
weights) and `loss.lpips_lin` (the LPIPS linear heads, e.g. `vgg.pth` from the `lpips` package).
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from robustok.errors import ConfigError


def build_perceptual(kind: str, vgg_path: Optional[str] = None, lin_path: Optional[str] = None) -> Optional[nn.Module]:
    """Return a module `f(x, y) -> per-image distance` (float [-1,1] images), or None for `kind="none"`."""
    if kind == "none":
        return None
    if kind == "lpips":
        from robustok.metrics.lpips import LPIPS

        return LPIPS(vgg_path, lin_path)  # frozen, eval mode, differentiable w.r.t. its inputs
    raise ConfigError(f"loss.perceptual must be 'none' or 'lpips', got {kind!r}")


def perceptual_distance(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean perceptual distance over the batch (gray images are handled by the network)."""
    return net(x, y).mean()
