"""The Tokenizer: encoder -> pre-quant projection -> bottleneck (VQ or Gaussian) -> post-quant projection -> decoder."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from robustok.errors import ConfigError
from robustok.hub import Pretrained
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
    # bottleneck
    bottleneck: str = "vq"                  # vq (discrete tokens) | kl (continuous Gaussian latents)
    codebook_size: int = 1024
    code_dim: int = 8
    l2_norm: bool = True
    commit_weight: float = 0.25
    dead_code_threshold: float = 0.01       # usage EMA (tokens/step) below which a code is restarted; 0: off
    usage_decay: float = 0.99
    kl_weight: float = 1e-6                 # for bottleneck=kl

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


@dataclass
class TokenizerOutput:
    recon: Tensor                   # decoded image, float [-1, 1] range (unclamped)
    ids: Optional[Tensor]           # clean token ids (B, h, w) for VQ, None for KL
    losses: dict[str, Tensor]       # vq, commit (VQ) or kl (KL)
    stats: dict[str, Tensor]        # perplexity, batch_usage, restarted, perturbed_fraction, ...


class Tokenizer(Pretrained):
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

    # --- properties -------------------------------------------------------------------------------------
    @property
    def is_discrete(self) -> bool:
        return self.quantizer is not None

    @property
    def codebook(self) -> Tensor:
        """(K, d) code vectors as used for lookup."""
        if self.quantizer is None:
            raise ConfigError("this tokenizer is continuous (bottleneck=kl): it has no codebook")
        return self.quantizer.codebook

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size if self.is_discrete else 0

    @property
    def grid_size(self) -> int:
        return self.config.grid_size

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.last_layer

    def frozen_part_names(self) -> list[str]:
        """Prefixes of the modules that encode (encoder, pre-quant projection, codebook)."""
        return ["encoder.", "quant_conv.", "quantizer."]

    # --- encoding ---------------------------------------------------------------------------------------
    def _check_images(self, x: Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.channels or x.shape[2] != c.image_size or x.shape[3] != c.image_size:
            raise ValueError(f"expected images (B, {c.channels}, {c.image_size}, {c.image_size}), got "
                             f"{tuple(x.shape)}")

    def encode_latents(self, x: Tensor) -> Tensor:
        """Pre-quantisation latents (B, d, h, w): l2-normalised for an l2 VQ, the Gaussian mean for KL."""
        self._check_images(x)
        h = self.quant_conv(self.encoder(x)).float()
        if self.quantizer is None:
            return h[:, : self.config.code_dim]
        return self.quantizer.normalize(h)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Latents -> (straight-through code vectors, ids (B, h, w), losses/stats)."""
        if self.quantizer is None:
            raise ConfigError("quantize() needs a discrete tokenizer (bottleneck=vq)")
        return self.quantizer(z)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Images float [-1, 1] (B, C, H, W) -> token ids (B, h, w)."""
        z = self.encode_latents(x)
        if self.quantizer is None:
            raise ConfigError("encode() returns token ids and needs a discrete tokenizer; use encode_latents()")
        b, d, h, w = z.shape
        return self.quantizer.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    # --- decoding ---------------------------------------------------------------------------------------
    def decode_codes(self, z_q: Tensor) -> Tensor:
        """Code vectors / continuous latents (B, d, h, w) -> images."""
        return self.decoder(self.post_quant_conv(z_q.to(self.post_quant_conv.weight.dtype)))

    decode_latents = decode_codes

    def lookup(self, ids: Tensor) -> Tensor:
        if self.quantizer is None:
            raise ConfigError("decode(ids) needs a discrete tokenizer; use decode_latents()")
        g = self.grid_size
        if ids.ndim == 2 and ids.shape[1] == g * g:
            ids = ids.view(-1, g, g)
        if ids.ndim != 3 or ids.shape[1:] != (g, g):
            raise ValueError(f"expected token ids (B, {g}, {g}), got {tuple(ids.shape)}")
        return self.quantizer.lookup(ids)

    @torch.no_grad()
    def decode(self, ids: Tensor) -> Tensor:
        """Token ids (B, h, w) (or (B, h*w)) -> images float [-1, 1] (clamped)."""
        return self.decode_codes(self.lookup(ids)).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Encode and decode (clean, no perturbation)."""
        if self.quantizer is None:
            return self.decode_latents(self.encode_latents(x)).clamp(-1, 1)
        return self.decode(self.encode(x))

    # --- training forward -------------------------------------------------------------------------------
    def forward(self, x: Tensor, perturb: Optional[dict] = None,
                generator: Optional[torch.Generator] = None) -> TokenizerOutput:
        """Training forward. `perturb`: None or {beta, alpha, delta, noise_std, neighbours} for latent perturbation.

        The VQ/commit (or KL) losses use the clean latents; only the decoder input is perturbed. In eval mode
        the perturbation is never applied (pFID perturbs ids explicitly with `perturb_ids`).
        """
        if not self.training:
            perturb = None
        from robustok.tokenizer.perturbation import perturb_codes_st, perturb_continuous

        self._check_images(x)
        h = self.quant_conv(self.encoder(x)).float()
        stats: dict[str, Tensor] = {}
        if self.quantizer is None:
            mean, logvar = h.chunk(2, dim=1)
            logvar = logvar.clamp(-30.0, 20.0)
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
            losses = {"kl": self.config.kl_weight * kl}
            ids = None
            if perturb is not None and perturb["beta"] > 0:
                z, mask = perturb_continuous(z, perturb["beta"], perturb["noise_std"], generator)
                stats["perturbed_images"] = mask.float().mean()
            z_dec = z
        else:
            z_q, ids, aux = self.quantizer(h)
            losses = {"vq": aux.pop("vq"), "commit": aux.pop("commit")}
            stats.update(aux)
            z_dec = z_q
            if perturb is not None and perturb["beta"] > 0 and perturb["alpha"] > 0:
                z = self.quantizer.normalize(h)
                z_dec, new_ids, mask = perturb_codes_st(z, ids, self.codebook, perturb["beta"], perturb["alpha"],
                                                        perturb["delta"], perturb.get("neighbours", "code"),
                                                        generator)
                stats["perturbed_images"] = mask.float().mean()
                stats["changed_tokens"] = (new_ids != ids).float().mean()
        return TokenizerOutput(self.decode_codes(z_dec), ids, losses, stats)
