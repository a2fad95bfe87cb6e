"""The RobusTok release tokenizer (`main-train.pt` / `post-train.pt`, HF qiuk6/RobusTok) as a robustok tokenizer.

Architecture facts (qiuk2/RobusTok @ c4c6760: `tokenizer/tokenizer_image/xqgan_model.py`,
`dino_enc/dinov2.py`, `dino_enc/to_pixel.py`, `dino_enc/vision_transformer.py`, `configs/main-train.yaml`;
summarised in the project's method.md section 1):

- Encoder `encoder.model` is timm's `vit_base_patch14_dinov2` rebuilt at img_size 256, patch 16: width 768,
  12 blocks, 12 heads, qkv bias, LayerScale, LayerNorm eps 1e-6, cls token, 257-entry position embedding that
  covers the cls token, no head. `encoder.latent_tokens` (1, 256, 768) are laid out as a 16x16 grid and get the
  patch position embeddings; `encoder.lvl_embed` (2 entries) adds 0 to [cls + patches] and 1 to the latent
  tokens (`encoder.lvl1LC` is that index buffer). Full attention; output = the latent tokens after the final
  LayerNorm, as a (768, 16, 16) grid (row-major).
- `quant_conv` 1x1 768 -> 64; codebook `quantize.embedding` 4096 x 64, latents and codes l2-normalised.
- `post_quant_conv` 1x1 64 -> 768. Decoder `decoder.model`: the same ViT without patch embedding; input =
  [cls, 256 copies of `decoder.mask_token`] + position embedding, followed by [cls, 256 latents] + position
  embedding, `decoder.lvl_embed` 0/1 on the two halves (514 tokens). The 256 mask-token outputs after the
  final LayerNorm go through `decoder.to_pixel.model` (Linear 768 -> 16*16*3) and are unpatchified with
  channels last within each patch. Images in [-1, 1] in and out.

Training-only parts of the original checkpoint (the frozen DINOv2 teacher `semantic_model.*`, and
`detail_model.*` / `sem_linear.*` when present) are ignored on load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustok.adapters.base import ExternalTokenizer, ExternalVQ, check_channels, convert_state, level_indices
from robustok.errors import ConfigError
from robustok.tokenizer.vit import Block


@dataclass
class RobusTokReleaseConfig:
    image_size: int = 256
    channels: int = 3
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    num_latent_tokens: int = 256
    codebook_size: int = 4096
    code_dim: int = 64
    l2_norm: bool = True
    commit_weight: float = 0.25

    def validate(self) -> None:
        check_channels(self, "robustok-release")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"robustok-release: image_size {self.image_size} not divisible by patch_size {self.patch_size}"
            )
        if self.num_latent_tokens != (self.image_size // self.patch_size) ** 2:
            raise ConfigError(
                "robustok-release: num_latent_tokens must equal the number of patches "
                f"({(self.image_size // self.patch_size) ** 2}); got {self.num_latent_tokens}"
            )
        if self.width % self.heads:
            raise ConfigError(f"robustok-release: width {self.width} not divisible by heads {self.heads}")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


class _PatchEmbed(nn.Module):
    def __init__(self, channels: int, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch, stride=patch)


class DinoViT(nn.Module):
    """timm-named DINOv2 backbone: `cls_token`, `pos_embed` (cls + grid), `patch_embed.proj`, `blocks`, `norm`."""

    def __init__(self, c: RobusTokReleaseConfig, patch_embed: bool):
        super().__init__()
        n = c.grid_size**2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, c.width) * 0.02)
        if patch_embed:
            self.patch_embed = _PatchEmbed(c.channels, c.width, c.patch_size)
        self.blocks = nn.ModuleList(Block(c.width, c.heads, c.mlp_ratio, layer_scale=1e-5) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.width, eps=1e-6)

    def with_cls_and_pos(self, t: Tensor) -> Tensor:
        """[cls, t] + pos_embed for grid tokens t (B, n, C) (timm `_pos_embed`, class token embedded)."""
        cls = self.cls_token.expand(t.shape[0], -1, -1)
        return torch.cat([cls, t], dim=1) + self.pos_embed

    def run(self, t: Tensor) -> Tensor:
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)


def _levels(first: int, second: int) -> Tensor:
    return torch.cat([torch.zeros(first, dtype=torch.long), torch.ones(second, dtype=torch.long)]).view(1, -1)


class RobusTokEncoder(nn.Module):
    lvl1LC: Tensor  # buffer

    def __init__(self, c: RobusTokReleaseConfig):
        super().__init__()
        n = c.grid_size**2
        self.model = DinoViT(c, patch_embed=True)
        self.latent_tokens = nn.Parameter(torch.randn(1, c.num_latent_tokens, c.width) * 1e-6)
        self.lvl_embed = nn.Embedding(2, c.width)
        self.register_buffer("lvl1LC", _levels(n + 1, c.num_latent_tokens), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        m = self.model
        t = m.with_cls_and_pos(m.patch_embed.proj(x).flatten(2).transpose(1, 2))
        z = self.latent_tokens.expand(b, -1, -1) + m.pos_embed[:, 1:]
        t = torch.cat([t, z], dim=1) + self.lvl_embed(self.lvl1LC)
        out = m.run(t)[:, -z.shape[1] :]  # (B, n, C)
        g = math.isqrt(out.shape[1])
        return out.transpose(1, 2).reshape(b, -1, g, g)


class _ToPixel(nn.Module):
    """Holds the token-to-patch projection under the release's key name (`to_pixel.model`)."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.model = nn.Linear(width, out)


class RobusTokDecoder(nn.Module):
    lvl1LC: Tensor  # buffer

    def __init__(self, c: RobusTokReleaseConfig):
        super().__init__()
        n = c.grid_size**2
        self.grid, self.patch, self.channels = c.grid_size, c.patch_size, c.channels
        self.model = DinoViT(c, patch_embed=False)
        self.mask_token = nn.Parameter(torch.randn(1, 1, c.width) * 1e-6)
        self.lvl_embed = nn.Embedding(2, c.width)
        self.register_buffer("lvl1LC", _levels(n + 1, c.num_latent_tokens + 1), persistent=False)
        self.to_pixel = _ToPixel(c.width, c.patch_size**2 * c.channels)

    def forward(self, z: Tensor) -> Tensor:
        """z (B, C, g, g) after post_quant_conv -> images (B, 3, H, W)."""
        b = z.shape[0]
        m = self.model
        n = self.grid**2
        x = m.with_cls_and_pos(self.mask_token.expand(b, n, -1))
        lat = m.with_cls_and_pos(z.flatten(2).transpose(1, 2))
        t = torch.cat([x, lat], dim=1) + self.lvl_embed(self.lvl1LC)
        t = m.run(t)[:, 1 : 1 + n]
        g, p, c = self.grid, self.patch, self.channels
        t = self.to_pixel.model(t).view(b, g, g, p, p, c)
        return t.permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)


class RobusTokRelease(ExternalTokenizer):
    """RobusTok release: DINOv2-B encoder with 256 latent tokens, 4096 x 64 l2 codebook, ViT-B decoder."""

    config_class = RobusTokReleaseConfig
    family = "RobusTok release"
    signature = (
        "encoder.latent_tokens",
        "encoder.model.pos_embed",
        "decoder.mask_token",
        "quant_conv.weight",
        "quantize.embedding.weight",
    )
    frozen_prefixes = ("encoder.", "quant_conv.", "quantizer.")
    ignore_prefixes = ("semantic_model.", "detail_model.", "sem_linear.", "encoder.model.head.", "decoder.model.head.")

    def __init__(self, config: RobusTokReleaseConfig):
        super().__init__(config)
        config.validate()
        c = config
        self.encoder = RobusTokEncoder(c)
        self.decoder = RobusTokDecoder(c)
        self.quant_conv = nn.Conv2d(c.width, c.code_dim, 1)
        self.post_quant_conv = nn.Conv2d(c.code_dim, c.width, 1)
        self.quantizer = ExternalVQ(c.codebook_size, c.code_dim, c.l2_norm, c.commit_weight)

    @property
    def grid_size(self) -> int:
        return self.config.grid_size

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.to_pixel.model.weight

    def _pre_quant(self, x: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(x.to(self.quant_conv.weight.dtype)))

    def decode_codes(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z.to(self.post_quant_conv.weight.dtype)))

    @classmethod
    def infer_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "quantize.embedding.weight" in state:
            out["codebook_size"], out["code_dim"] = map(int, state["quantize.embedding.weight"].shape)
        if "encoder.latent_tokens" in state:
            out["num_latent_tokens"], out["width"] = map(int, state["encoder.latent_tokens"].shape[1:])
            if out["width"] % 64 == 0:
                out["heads"] = out["width"] // 64  # DINOv2 S/B/L use 64-dim heads
        proj = state.get("encoder.model.patch_embed.proj.weight")
        pos = state.get("encoder.model.pos_embed")
        if proj is not None and pos is not None:
            side = math.isqrt(int(pos.shape[1]) - 1)
            out["patch_size"] = int(proj.shape[-1])
            out["image_size"] = side * int(proj.shape[-1])
        depth = len(level_indices(state, "encoder.model.blocks."))
        if depth:
            out["depth"] = depth
        return out

    def load_original(self, state: dict[str, Tensor], source: str) -> list[str]:
        n = self.config.grid_size**2
        aux = {
            "encoder.lvl1LC": _levels(n + 1, self.config.num_latent_tokens),
            "decoder.lvl1LC": _levels(n + 1, self.config.num_latent_tokens + 1),
            "quantizer.ema_vocab_hit_SV": None,
        }
        return convert_state(
            self, state, source, rename=(("quantize.", "quantizer."),), ignore_prefixes=self.ignore_prefixes, aux=aux
        )
