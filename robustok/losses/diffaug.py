"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to real and fake images before the
discriminator, so it cannot overfit the real set while the generator still gets gradients through them.

Ops are registered by name in `AUGMENTS`; a policy is a comma-separated list (`"color,translation,cutout"`, the
RobusTok/VAR discriminator's). Each op draws fresh randomness per image on every call (torch's global RNG, which
the training loop seeds per step). Images are float tensors in [-1, 1], (B, C, H, W).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from robustok.errors import ConfigError


def _rand(x: Tensor, *shape: int) -> Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype)


def color(x: Tensor) -> Tensor:
    """Random brightness (±0.5 in [0,1] units), saturation (×[0, 2]) and contrast (×[0.5, 1.5]) per image."""
    x = x + (_rand(x, 1, 1, 1) - 0.5) * 2.0  # ±0.5 of the [0, 1] range = ±1 in [-1, 1]
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, 1, 1, 1) * 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ±ratio of its size in each axis, filling with zeros (gray in [-1, 1])."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1) - dy
    gx = torch.arange(w, device=x.device).view(1, 1, w) - dx
    valid = ((gy >= 0) & (gy < h) & (gx >= 0) & (gx < w)).unsqueeze(1)
    idx = (gy.clamp(0, h - 1) * w + gx.clamp(0, w - 1)).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    out = x.flatten(2).gather(2, idx).view_as(x)
    return out * valid.to(x.dtype)


def cutout(x: Tensor, ratio: float = 0.2) -> Tensor:
    """Zero one square of ratio × the image size at a random position per image (it may overhang the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    y0, x0 = cy - ch // 2, cx - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


AUGMENTS: dict[str, Callable[[Tensor], Tensor]] = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> list[str]:
    """`"color,translation,cutout"` -> op names; '' or 'none' -> []; unknown names are a `ConfigError`."""
    names = [p.strip() for p in policy.split(",") if p.strip() and p.strip() != "none"]
    bad = [n for n in names if n not in AUGMENTS]
    if bad:
        raise ConfigError(f"loss.diffaug: unknown augmentation {bad[0]!r}; choose from {sorted(AUGMENTS)}")
    return names


class DiffAugment(nn.Module):
    """Apply the policy's ops in order (always, in train and eval mode: the discriminator sees augmented images
    in both its own step and the generator's)."""

    def __init__(self, policy: str = "color,translation,cutout"):
        super().__init__()
        self.ops = parse_policy(policy)

    def forward(self, x: Tensor) -> Tensor:
        for name in self.ops:
            x = AUGMENTS[name](x)
        return x

    def extra_repr(self) -> str:
        return ",".join(self.ops) or "none"
