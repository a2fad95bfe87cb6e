"""The Tokenizer: encoder -> pre-quant projection -> bottleneck (VQ or Gaussian) -> post-quant projection -> decoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, cast

import torch
from torch import Tensor, nn

from robustok.errors import ConfigError
from robustok.tokenizer.base import TokenizerBase
from robustok.tokenizer.components import BACKBONES, BOTTLENECKS
from robustok.tokenizer.loading import register_tokenizer_class
from robustok.tokenizer.quantizer import Bottleneck, VectorQuantizer


@dataclass
class TokenizerConfig:
    image_size: int = 32
    channels: int = 1
    backbone: str = "conv"  # conv | vit (robustok.tokenizer.components.BACKBONES)
    hidden_dim: int = 64  # backbone output / decoder input width (before the projections)
    # conv backbone
    base_channels: int = 32
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2])  # downsampling 2^(len-1)
    num_res_blocks: int = 1
    # vit backbone
    patch_size: int = 4
    vit_width: int = 256
    vit_depth: int = 4
    vit_heads: int = 4
    dinov2_checkpoint: Optional[str] = None  # local timm DINOv2 file to initialise the ViT encoder
    dinov2_init_decoder: bool = False  # also initialise the ViT decoder's blocks from it (the paper does)
    # bottleneck
    bottleneck: str = "vq"  # vq (discrete tokens) | kl (continuous Gaussian latents): BOTTLENECKS
    codebook_size: int = 1024
    code_dim: int = 8
    l2_norm: bool = True
    commit_weight: float = 0.25
    dead_code_threshold: float = 0.01  # usage EMA (tokens/step) below which a code is restarted; 0: off
    usage_decay: float = 0.99
    kl_weight: float = 1e-6  # for bottleneck=kl

    # fields added after fingerprints were first written: left out of `fingerprint()` while at their default, so
    # token stores, generators and pairs made earlier still match their tokenizer
    FINGERPRINT_SKIP_IF_DEFAULT: ClassVar[tuple] = ("dinov2_init_decoder",)
    # keys added to config.json after its format began, and why their default reproduces files without them
    ADDED_KEYS: ClassVar[dict] = {
        "dinov2_init_decoder": "added with the ImageNet recipe; false: the decoder "
        "is not initialised from DINOv2 weights, which is what older files did"
    }
    BOUNDS: ClassVar[dict] = {
        "image_size": ">=8",
        "hidden_dim": ">=1",
        "base_channels": ">=1",
        "channel_mult": ">=1",
        "num_res_blocks": ">=0",
        "patch_size": ">=1",
        "vit_width": ">=1",
        "vit_depth": ">=1",
        "vit_heads": ">=1",
        "codebook_size": "[2,2147483648]",
        "code_dim": ">=1",
        "commit_weight": ">=0",
        "dead_code_threshold": ">=0",
        "usage_decay": "[0,1)",
        "kl_weight": ">=0",
    }

    def validate(self) -> None:
        BACKBONES.lookup(self.backbone)
        BOTTLENECKS.lookup(self.bottleneck)
        if self.channels not in (1, 3):
            raise ConfigError(f"model.channels must be 1 or 3, got {self.channels}")
        factor = BACKBONES.lookup(self.backbone).downsampling(self)
        if self.image_size % factor:
            raise ConfigError(f"model.image_size {self.image_size} is not divisible by the downsampling {factor}")
        if self.codebook_size < 2 or self.codebook_size > 2**31:
            raise ConfigError(f"model.codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def grid_size(self) -> int:
        return self.image_size // BACKBONES.lookup(self.backbone).downsampling(self)


@register_tokenizer_class
class Tokenizer(TokenizerBase):
    """An image tokenizer. Discrete (`bottleneck="vq"`): `encode` -> token ids, `decode` -> images.

    Continuous (`bottleneck="kl"`): `encode_latents` / `decode_latents` on (B, code_dim, h, w) latents.
    """

    config_class = TokenizerConfig

    def __init__(self, config: TokenizerConfig):
        super().__init__(config)
        config.validate()
        c = config
        self.encoder, self.decoder = BACKBONES.lookup(c.backbone).build(c)
        bottleneck = cast("type[Bottleneck]", BOTTLENECKS.lookup(c.bottleneck))  # the registry holds `Bottleneck`s
        self.quant_conv = nn.Conv2d(c.hidden_dim, c.code_dim * bottleneck.input_factor, 1)
        self.post_quant_conv = nn.Conv2d(c.code_dim, c.hidden_dim, 1)
        part = bottleneck.from_config(c)
        # discrete: token ids (TokenizerBase's VQ paths; a discrete bottleneck has VectorQuantizer's interface)
        self.quantizer = cast(VectorQuantizer, part) if part.discrete else None
        self.gaussian: Optional[Bottleneck] = None if part.discrete else part  # sampled in `_continuous_forward`

    @classmethod
    def from_pretrained(  # type: ignore[override]  # by design: any registered tokenizer class, not only `cls`
        cls, directory: str | Path, map_location: str | torch.device = "cpu"
    ) -> TokenizerBase:
        """Load a tokenizer directory: robustok's own, or an adapter's (any class registered with
        `robustok.tokenizer.loading`, dispatched on config.json's "class"), in eval mode."""
        from robustok.hub import read_model_meta
        from robustok.tokenizer.loading import load_tokenizer, tokenizer_classes

        name = read_model_meta(directory, "tokenizer").get("class")
        if name != cls.__name__ and name in tokenizer_classes():
            return load_tokenizer(directory, map_location)
        return super().from_pretrained(directory, map_location)

    # --- hooks of TokenizerBase -------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        return self.config.grid_size

    @property
    def last_layer(self) -> Tensor:
        return cast(Tensor, self.decoder.last_layer)  # every backbone's decoder exposes `last_layer` (components.py)

    def frozen_part_names(self) -> list[str]:
        return ["encoder.", "quant_conv.", "quantizer."]

    def _pre_quant(self, x: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(x))

    def _latent_mean(self, h: Tensor) -> Tensor:
        return h[:, : self.config.code_dim]

    def decode_codes(self, z_q: Tensor) -> Tensor:
        """Code vectors / continuous latents (B, d, h, w) -> images (unclamped)."""
        return self.decoder(self.post_quant_conv(z_q.to(self.post_quant_conv.weight.dtype)))

    def _continuous_forward(
        self, h: Tensor, perturb: Optional[dict], generator: Optional[torch.Generator]
    ) -> tuple[Tensor, dict, dict]:
        """Gaussian bottleneck: reparameterised sample + KL; latent noise on a beta fraction of images."""
        if self.gaussian is None:
            raise ConfigError(f"model.bottleneck={self.config.bottleneck!r} is discrete: no continuous latents")
        mean, logvar = h.chunk(2, dim=1)
        return self.gaussian(mean, logvar, perturb, generator)
