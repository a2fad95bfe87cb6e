"""The DINO discriminator (VAR / ImageFolder / RobusTok lineage): a frozen DINO ViT-S/16 + small trainable heads.

The image (in [-1, 1]) is brought to the backbone's size (224 for ViT-S/16): with probability 0.5 a random
crop when it is larger, otherwise an area resize. Token features are taken after the patch embedding and after
blocks 2, 5, 8 and 11; the cls token is added to every patch token. Each of these five (B, N, D) maps feeds its
own head: [spectral-norm Conv1d k=1 + local batch norm + LeakyReLU(0.2)], a residual block of the same with
k=9 (circular padding), then a spectral-norm Conv1d D -> 1. The logits of all heads are concatenated, (B, 5N),
for the hinge loss. The backbone is frozen and held outside the module tree: it is not in `state_dict()` (so
discriminator checkpoints hold only the heads), not in `parameters()`, and `requires_grad_` does not touch it;
`.to()` still moves it. Gradients flow through it to the input (the generator's images).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from robustok.losses.frozen_vit import FrozenViT, load_frozen_vit

HOW_TO_GET = (
    "The DINO discriminator needs DINO v1 ViT-S/16 weights as a local file (timm key names), e.g. "
    "dino_deitsmall16_pretrain.pth from the facebookresearch/dino release, or timm's "
    "vit_small_patch16_224.dino model.safetensors; set loss.dino_disc_checkpoint=PATH."
)
DEFAULT_TAPS = (-1, 2, 5, 8, 11)  # -1: after the patch embedding


class BatchNormLocal(nn.Module):
    """Batch norm over virtual batches of `virtual_bs` images (statistics per group, never across ranks)."""

    def __init__(self, channels: int, virtual_bs: int = 8, eps: float = 1e-5):
        super().__init__()
        self.virtual_bs, self.eps = virtual_bs, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        b, c, n = x.shape
        groups = max(1, math.ceil(b / self.virtual_bs))
        while b % groups:
            groups -= 1
        g = x.float().view(groups, b // groups, c, n)
        mean = g.mean(dim=(1, 3), keepdim=True)
        var = g.var(dim=(1, 3), keepdim=True, unbiased=False)
        g = (g - mean) * torch.rsqrt(var + self.eps)
        return (g.view(b, c, n) * self.weight[None, :, None] + self.bias[None, :, None]).to(x.dtype)


class _ConvBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, virtual_bs: int):
        super().__init__()
        self.conv = spectral_norm(nn.Conv1d(channels, channels, kernel, padding=kernel // 2, padding_mode="circular"))
        self.norm = BatchNormLocal(channels, virtual_bs)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class DinoHead(nn.Module):
    """One tap's head: (B, D, N) token features -> (B, N) logits."""

    def __init__(self, channels: int, virtual_bs: int = 8, kernel: int = 9):
        super().__init__()
        self.block = _ConvBlock(channels, 1, virtual_bs)
        self.residual = _ConvBlock(channels, kernel, virtual_bs)
        self.out = spectral_norm(nn.Conv1d(channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.block(x)
        h = h + self.residual(h)
        return self.out(h).squeeze(1)


class DinoDiscriminator(nn.Module):
    """Frozen DINO ViT features at several depths + trainable heads -> (B, taps * N) logits."""

    def __init__(
        self, backbone: FrozenViT, taps: Sequence[int] = DEFAULT_TAPS, virtual_bs: int = 8, crop_prob: float = 0.5
    ):
        super().__init__()
        bad = [t for t in taps if t != -1 and not 0 <= t < len(backbone.blocks)]
        if bad:
            from robustok.errors import ConfigError

            raise ConfigError(
                f"loss.dino_disc_taps: block index {bad[0]} outside the backbone's {len(backbone.blocks)} blocks"
            )
        self.taps, self.crop_prob = tuple(taps), crop_prob
        self._frozen = (backbone.eval().requires_grad_(False),)
        self.heads = nn.ModuleList(DinoHead(backbone.dim, virtual_bs) for _ in self.taps)

    @property
    def backbone(self) -> FrozenViT:
        return self._frozen[0]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._frozen[0]._apply(fn)
        return self

    def resize(self, x: Tensor) -> Tensor:
        """To the backbone's input size: a random crop (prob `crop_prob`, if larger) or an area resize."""
        size = self.backbone.image_size
        h, w = x.shape[-2:]
        if (h, w) == (size, size):
            return x
        if h >= size and w >= size and float(torch.rand(())) < self.crop_prob:
            top = int(torch.randint(0, h - size + 1, ()))
            left = int(torch.randint(0, w - size + 1, ()))
            return x[..., top : top + size, left : left + size]
        return F.interpolate(x, size=(size, size), mode="area" if h >= size else "bilinear")

    def forward(self, x: Tensor) -> Tensor:
        x = self.resize(x.float())
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        logits = []
        for head, t in zip(self.heads, self.backbone.tokens(x, self.taps)):
            feats = t[:, 1:] + t[:, :1]  # cls added to every patch token
            logits.append(head(feats.transpose(1, 2)))
        return torch.cat(logits, dim=1)


def build_dino_discriminator(
    checkpoint: str, image_size: int = 224, taps: Sequence[int] = DEFAULT_TAPS, virtual_bs: int = 8
) -> DinoDiscriminator:
    """The DINO discriminator with its backbone loaded from `checkpoint` (clear error naming it if absent)."""
    backbone = load_frozen_vit(checkpoint, image_size, None, "DINO discriminator backbone", HOW_TO_GET)
    return DinoDiscriminator(backbone, taps, virtual_bs)
