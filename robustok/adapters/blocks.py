"""Convolutional building blocks of the taming-transformers lineage, with configurable parameter names.

LlamaGen, the MaskGIT VQGAN and diffusers' AutoencoderKL all use GroupNorm -> SiLU -> 3x3 conv residual
blocks, single-head spatial self-attention, strided-conv or average-pool downsampling and nearest + conv
upsampling; they differ in parameter names, biases and a few details, which the arguments below select.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus a shortcut.

    `shortcut`: attribute name of the 1x1 projection used when in != out ("nin_shortcut" in LlamaGen/MaskGIT,
    "conv_shortcut" in diffusers). `shortcut_on_output`: the MaskGIT VQGAN variant, whose projection maps the
    block's *output* (out -> out channels) and is added to it, instead of projecting the input.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        groups: int,
        *,
        bias: bool = True,
        shortcut: str = "nin_shortcut",
        shortcut_on_output: bool = False,
    ):
        super().__init__()
        self.cin, self.cout, self.shortcut_name, self.on_output = cin, cout, shortcut, shortcut_on_output
        self.norm1 = group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.norm2 = group_norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        if cin != cout:
            setattr(self, shortcut, nn.Conv2d(cout if shortcut_on_output else cin, cout, 1, bias=bias))

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.cin == self.cout:
            return x + h
        proj = getattr(self, self.shortcut_name)
        return h + proj(h) if self.on_output else proj(x) + h


def _attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Single-head attention over (B, N, C) tokens with scale C^-1/2."""
    return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]


class ConvAttnBlock(nn.Module):
    """Spatial self-attention with 1x1-conv projections `q`, `k`, `v`, `proj_out` and GroupNorm `norm`."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = group_norm(ch, groups)
        self.q, self.k, self.v = nn.Conv2d(ch, ch, 1), nn.Conv2d(ch, ch, 1), nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        t = self.norm(x)
        q, k, v = (m(t).flatten(2).transpose(1, 2) for m in (self.q, self.k, self.v))
        out = _attend(q, k, v).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class LinearAttnBlock(nn.Module):
    """diffusers' VAE mid-block attention: `group_norm`, linear `to_q`/`to_k`/`to_v`, `to_out.0`, one head."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.group_norm = group_norm(ch, groups)
        self.to_q, self.to_k, self.to_v = nn.Linear(ch, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch), nn.Dropout(0.0)])

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        t = self.group_norm(x).flatten(2).transpose(1, 2)
        out = _attend(self.to_q(t), self.to_k(t), self.to_v(t))
        out = self.to_out[1](self.to_out[0](out))
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class ConvDownsample(nn.Module):
    """Pad right/bottom by one, then a 3x3 stride-2 conv `conv` (taming / LlamaGen / diffusers VAE)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class ConvUpsample(nn.Module):
    """Nearest x2, then a 3x3 conv `conv`."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
