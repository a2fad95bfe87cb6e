"""Convolutional encoder/decoder of the VQGAN/LlamaGen family (GroupNorm + SiLU residual blocks)."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c // 4 if c >= 4 else 1), c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.block = nn.Sequential(
            _norm(c_in),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.block(x)


class ConvEncoder(nn.Module):
    """Image (B, C, H, W) -> features (B, out_dim, H/2^(L-1), W/2^(L-1)) for L = len(channel_mult)."""

    def __init__(self, in_channels: int, base: int, channel_mult: Sequence[int], num_res_blocks: int, out_dim: int):
        super().__init__()
        chans = [base * m for m in channel_mult]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, chans[0], 3, padding=1)]
        c = chans[0]
        for level, c_out in enumerate(chans):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(c, c_out))
                c = c_out
            if level < len(chans) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        layers += [ResBlock(c, c), _norm(c), nn.SiLU(), nn.Conv2d(c, out_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Features (B, in_dim, h, w) -> image (B, C, h*2^(L-1), w*2^(L-1)); mirror of `ConvEncoder`."""

    def __init__(self, out_channels: int, base: int, channel_mult: Sequence[int], num_res_blocks: int, in_dim: int):
        super().__init__()
        chans = [base * m for m in reversed(channel_mult)]
        c = chans[0]
        layers: list[nn.Module] = [nn.Conv2d(in_dim, c, 3, padding=1), ResBlock(c, c)]
        for level, c_out in enumerate(chans):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(c, c_out))
                c = c_out
            if level < len(chans) - 1:
                layers += [Upsample(), nn.Conv2d(c, c, 3, padding=1)]
        layers += [_norm(c), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(c, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> Tensor:
        """Weight of the output layer (for the adaptive GAN weight)."""
        return self.conv_out.weight

    def forward(self, z: Tensor) -> Tensor:
        return self.conv_out(self.net(z))


class Upsample(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
