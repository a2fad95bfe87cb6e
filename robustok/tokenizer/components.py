"""Registries of the tokenizer's parts: encoder/decoder backbones (`model.backbone`) and bottlenecks
(`model.bottleneck`). `Tokenizer` builds its parts only through these tables, so a new backbone or bottleneck is
one `register` call (see docs/extending.md).

A backbone is a `Backbone(build, downsampling)`: `build(TokenizerConfig) -> (encoder, decoder)` with the encoder
mapping images (B, C, H, W) to (B, hidden_dim, h, w) and the decoder the reverse (exposing `last_layer`), and
`downsampling(TokenizerConfig) -> int` (H / h). A bottleneck is a class with `discrete`, `input_factor` and
`from_config(TokenizerConfig)` (see `robustok.tokenizer.quantizer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from robustok.registry import Registry
from robustok.tokenizer.quantizer import GaussianBottleneck, VectorQuantizer


@dataclass(frozen=True)
class Backbone:
    build: Callable[[Any], tuple[nn.Module, nn.Module]]  # TokenizerConfig -> (encoder, decoder)
    downsampling: Callable[[Any], int]  # TokenizerConfig -> image size / grid size


def _conv(c) -> tuple[nn.Module, nn.Module]:
    from robustok.tokenizer.conv import ConvDecoder, ConvEncoder

    encoder = ConvEncoder(c.channels, c.base_channels, c.channel_mult, c.num_res_blocks, c.hidden_dim)
    return encoder, ConvDecoder(c.channels, c.base_channels, c.channel_mult, c.num_res_blocks, c.hidden_dim)


def _vit(c) -> tuple[nn.Module, nn.Module]:
    from robustok.tokenizer.vit import ViTDecoder, ViTEncoder

    encoder = ViTEncoder(c.channels, c.image_size, c.patch_size, c.vit_width, c.vit_depth, c.vit_heads, c.hidden_dim)
    return encoder, ViTDecoder(
        c.channels, c.image_size, c.patch_size, c.vit_width, c.vit_depth, c.vit_heads, c.hidden_dim
    )


BACKBONES: Registry[Backbone] = Registry("tokenizer backbone", "model.backbone")
BACKBONES.register("conv", Backbone(_conv, lambda c: 2 ** (len(c.channel_mult) - 1)))
BACKBONES.register("vit", Backbone(_vit, lambda c: c.patch_size))

BOTTLENECKS: Registry[type] = Registry("tokenizer bottleneck", "model.bottleneck")
BOTTLENECKS.register("vq", VectorQuantizer)
BOTTLENECKS.register("kl", GaussianBottleneck)
