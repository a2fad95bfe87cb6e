"""The image-reconstruction objective shared by main training and post-training."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.losses.discriminators import Discriminator
from robustok.losses.gan import adaptive_weight, hinge_d_loss, hinge_g_loss
from robustok.losses.perceptual import perceptual_distance


def reconstruction_objective(
    recon: Tensor,
    x: Tensor,
    lc: Any,
    perceptual: Optional[nn.Module],
    disc: Optional[Discriminator],
    last_layer: Tensor,
    step: int,
) -> tuple[Tensor, Optional[Tensor], dict[str, Tensor]]:
    """L1 + L2 (+ perceptual) (+ adaptive-weighted hinge GAN from `lc.disc_start`) of `recon` against `x`.

    `lc` is a `LossConfig`. Returns `(generator loss, discriminator loss or None, detached logs)`; the
    discriminator (with its LeCam state) is only called once the GAN phase has started.
    """
    rec = lc.l1_weight * (recon - x).abs().mean() + lc.l2_weight * F.mse_loss(recon, x)
    logs: dict[str, Tensor] = {"rec": rec.detach()}
    if perceptual is not None and lc.perceptual_weight > 0:
        perceptual.to(x.device)
        perc = lc.perceptual_weight * perceptual_distance(perceptual, recon, x)
        rec = rec + perc
        logs["perceptual"] = perc.detach()
    loss, d_loss = rec, None
    if disc is not None and step >= lc.disc_start:
        disc.requires_grad_(False)
        g_adv = hinge_g_loss(disc(recon))
        disc.requires_grad_(True)
        w = adaptive_weight(rec, g_adv, last_layer) if lc.adaptive_weight else torch.ones(())
        loss = loss + lc.disc_weight * w * g_adv
        real, fake = disc(x), disc(recon.detach())
        d_loss = lc.disc_weight * (hinge_d_loss(real, fake) + lc.lecam_weight * disc.lecam(real, fake))
        logs.update(
            g_adv=g_adv.detach(), adaptive_w=w, logits_real=real.mean().detach(), logits_fake=fake.mean().detach()
        )
    return loss, d_loss, logs
