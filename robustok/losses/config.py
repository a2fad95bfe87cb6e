"""`LossConfig`: the `loss.*` section shared by main training and post-training (reconstruction, perceptual,
GAN with its discriminator, semantic regularisation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional


@dataclass
class LossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    perceptual: str = "none"  # none | lpips (needs lpips_vgg + lpips_lin weight files) | aux (needs
    # aux_perceptual_weights: robustok.losses.aux_perceptual, not the FID net)
    perceptual_weight: float = 1.0
    lpips_vgg: Optional[str] = None
    lpips_lin: Optional[str] = None
    aux_perceptual_weights: Optional[str] = None  # `python -m robustok.losses.aux_perceptual --train FILE`
    disc_weight: float = 0.0  # GAN term weight (paper: 0.5); 0 disables the discriminator
    disc_start: int = 0  # step at which the GAN terms switch on
    disc_lr: float = 1e-4
    disc_weight_decay: float = 0.0
    disc_width: int = 32
    disc_layers: int = 2
    lecam_weight: float = 0.001
    adaptive_weight: bool = True
    disc_kind: str = "patch"  # a name in robustok.losses.discriminators.DISCRIMINATORS: patch | dino
    diffaug: str = ""  # DiffAugment policy on the discriminator's inputs, e.g. color,translation,cutout
    dino_disc_checkpoint: Optional[str] = None  # disc_kind=dino: local DINO ViT-S/16 weights (timm key names)
    dino_disc_image_size: int = 224  # the backbone's input size (crop/resize to it)
    dino_disc_taps: list[int] = field(default_factory=lambda: [-1, 2, 5, 8, 11])  # -1: after the patch embedding
    dino_disc_virtual_bs: int = 8  # local batch-norm group size of the heads
    semantic: str = "none"  # none | dinov2 (InfoNCE to a frozen DINOv2 teacher's cls feature)
    semantic_weight: float = 0.1
    semantic_checkpoint: Optional[str] = None  # local DINOv2 ViT weights (timm key names)
    semantic_logit_scale: float = 1.0
    semantic_normalize: bool = False

    BOUNDS: ClassVar[dict] = {
        "l1_weight": ">=0",
        "l2_weight": ">=0",
        "perceptual_weight": ">=0",
        "disc_weight": ">=0",
        "disc_start": ">=0",
        "disc_lr": ">0",
        "disc_weight_decay": ">=0",
        "disc_width": ">=1",
        "disc_layers": ">=1",
        "lecam_weight": ">=0",
    }
