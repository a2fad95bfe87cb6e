"""The Tokenizer: encoder -> pre-quant projection -> bottleneck (VQ or Gaussian) -> post-quant projection -> decoder."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import Tensor, nn

from robustok.errors import ConfigError
from robustok.tokenizer.base import TokenizerBase
from robustok.tokenizer.conv import ConvDecoder, ConvEncoder
from robustok.tokenizer.quantizer import VectorQuantizer
from robustok.tokenizer.vit import ViTDecoder, ViTEncoder


@dataclass
class TokenizerConfig:
    image_size: int = 32
    channels: int = 1
    backbone: str = "conv"                  # conv | vit
    hidden_dim: int = 64                    # backbone output / decoder input width (before the projections)
    # conv backbone
    base_channels: int = 32
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2])   # downsampling 2^(len-1)
    num_res_blocks: int = 1
    # vit backbone
    patch_size: int = 4
    vit_width: int = 256
    vit_depth: int = 4
    vit_heads: int = 4
    dinov2_checkpoint: Optional[str] = None  # local timm DINOv2 file to initialise the ViT encoder
    dinov2_init_decoder: bool = False        # also initialise the ViT decoder's blocks from it (the paper does)
    # bottleneck
    bottleneck: str = "vq"                  # vq (discrete tokens) | kl (continuous Gaussian latents)
    codebook_size: int = 1024
    code_dim: int = 8
    l2_norm: bool = True
    commit_weight: float = 0.25
    dead_code_threshold: float = 0.01       # usage EMA (tokens/step) below which a code is restarted; 0: off
    usage_decay: float = 0.99
    kl_weight: float = 1e-6                 # for bottleneck=kl

    # fields added after fingerprints were first written: left out of `fingerprint()` while at their default, so
    # token stores, generators and pairs made earlier still match their tokenizer
    FINGERPRINT_SKIP_IF_DEFAULT: ClassVar[tuple] = ("dinov2_init_decoder",)
    BOUNDS: ClassVar[dict] = {"image_size": ">=8", "hidden_dim": ">=1", "base_channels": ">=1", "channel_mult": ">=1",
                              "num_res_blocks": ">=0", "patch_size": ">=1", "vit_width": ">=1", "vit_depth": ">=1",
                              "vit_heads": ">=1", "codebook_size": "[2,2147483648]", "code_dim": ">=1",
                              "commit_weight": ">=0", "dead_code_threshold": ">=0", "usage_decay": "[0,1)",
                              "kl_weight": ">=0"}

    def validate(self) -> None:
        if self.backbone not in ("conv", "vit"):
            raise ConfigError(f"model.backbone must be 'conv' or 'vit', got {self.backbone!r}")
        if self.bottleneck not in ("vq", "kl"):
            raise ConfigError(f"model.bottleneck must be 'vq' or 'kl', got {self.bottleneck!r}")
        if self.channels not in (1, 3):
            raise ConfigError(f"model.channels must be 1 or 3, got {self.channels}")
        factor = self.patch_size if self.backbone == "vit" else 2 ** (len(self.channel_mult) - 1)
        if self.image_size % factor:
            raise ConfigError(f"model.image_size {self.image_size} is not divisible by the downsampling {factor}")
        if self.codebook_size < 2 or self.codebook_size > 2**31:
            raise ConfigError(f"model.codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def grid_size(self) -> int:
        factor = self.patch_size if self.backbone == "vit" else 2 ** (len(self.channel_mult) - 1)
        return self.image_size // factor


class Tokenizer(TokenizerBase):
    """An image tokenizer. Discrete (`bottleneck="vq"`): `encode` -> token ids, `decode` -> images.

    Continuous (`bottleneck="kl"`): `encode_latents` / `decode_latents` on (B, code_dim, h, w) latents.
    """

    config_class = TokenizerConfig

    def __init__(self, config: TokenizerConfig):
        super().__init__(config)
        config.validate()
        c = config
        if c.backbone == "conv":
            self.encoder = ConvEncoder(c.channels, c.base_channels, c.channel_mult, c.num_res_blocks, c.hidden_dim)
            self.decoder = ConvDecoder(c.channels, c.base_channels, c.channel_mult, c.num_res_blocks, c.hidden_dim)
        else:
            self.encoder = ViTEncoder(c.channels, c.image_size, c.patch_size, c.vit_width, c.vit_depth, c.vit_heads,
                                      c.hidden_dim)
            self.decoder = ViTDecoder(c.channels, c.image_size, c.patch_size, c.vit_width, c.vit_depth, c.vit_heads,
                                      c.hidden_dim)
        latent_out = c.code_dim * (2 if c.bottleneck == "kl" else 1)
        self.quant_conv = nn.Conv2d(c.hidden_dim, latent_out, 1)
        self.post_quant_conv = nn.Conv2d(c.code_dim, c.hidden_dim, 1)
        self.quantizer = (VectorQuantizer(c.codebook_size, c.code_dim, c.l2_norm, c.commit_weight,
                                          c.dead_code_threshold, c.usage_decay) if c.bottleneck == "vq" else None)

    # --- hooks of TokenizerBase -------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        return self.config.grid_size

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.last_layer

    def frozen_part_names(self) -> list[str]:
        return ["encoder.", "quant_conv.", "quantizer."]

    def _pre_quant(self, x: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(x))

    def _latent_mean(self, h: Tensor) -> Tensor:
        return h[:, : self.config.code_dim]

    def decode_codes(self, z_q: Tensor) -> Tensor:
        """Code vectors / continuous latents (B, d, h, w) -> images (unclamped)."""
        return self.decoder(self.post_quant_conv(z_q.to(self.post_quant_conv.weight.dtype)))

    def _continuous_forward(self, h: Tensor, perturb: Optional[dict],
                            generator: Optional[torch.Generator]) -> tuple[Tensor, dict, dict]:
        """Gaussian bottleneck: reparameterised sample + KL; latent noise on a beta fraction of images."""
        from robustok.tokenizer.perturbation import perturb_continuous

        mean, logvar = h.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
        stats: dict[str, Tensor] = {}
        if perturb is not None and perturb["beta"] > 0:
            z, mask = perturb_continuous(z, perturb["beta"], perturb["noise_std"], generator)
            stats["perturbed_images"] = mask.float().mean()
        return z, {"kl": self.config.kl_weight * kl}, stats
