"""PatchGAN discriminator, hinge losses, LeCam regulariser and the adaptive generator weight (VQGAN family)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """pix2pix-style N-layer PatchGAN (GroupNorm instead of BatchNorm: safe under DDP and small batches)."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers + 1):
            c_out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [
                nn.Conv2d(c, c_out, 4, stride, 1, bias=False),
                nn.GroupNorm(min(32, c_out // 4), c_out),
                nn.LeakyReLU(0.2),
            ]
            c = c_out
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def hinge_g_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


class LeCam(nn.Module):
    """LeCam regulariser (Tseng et al. 2021) with EMAs of the mean real/fake logits."""

    ema_real: Tensor  # buffers
    ema_fake: Tensor

    def __init__(self, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, real: Tensor, fake: Tensor) -> Tensor:
        with torch.no_grad():
            self.ema_real.lerp_(real.mean().float(), 1 - self.decay)
            self.ema_fake.lerp_(fake.mean().float(), 1 - self.decay)
        return F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """||grad_last rec|| / (||grad_last g|| + 1e-4), clamped and detached (Esser et al. 2021)."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()
