"""LlamaGen VQ-16 (`vq_ds16_c2i.pt`, FoundationVision/LlamaGen) as a robustok tokenizer.

Architecture facts (from LlamaGen `tokenizer/tokenizer_image/vq_model.py`): conv encoder/decoder with base
width 128, ch_mult (1, 1, 2, 2, 4) (downsampling 16), 2 residual blocks per level in the encoder and 3 in the
decoder, single-head attention after every residual block of the lowest-resolution level and in the
[res, attn, res] middle, GroupNorm(32, eps 1e-6), SiLU; z_channels 256; `quant_conv` 256 -> 8, codebook
16384 x 8 with l2-normalised codes and latents, `post_quant_conv` 8 -> 256. Images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from robustok.adapters.base import ExternalTokenizer, ExternalVQ, check_channels, convert_state, level_indices
from robustok.adapters.blocks import ConvAttnBlock, ConvDownsample, ConvUpsample, ResBlock, group_norm
from robustok.errors import ConfigError


@dataclass
class LlamaGenVQConfig:
    image_size: int = 256
    channels: int = 3
    base_channels: int = 128
    channel_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 16384
    code_dim: int = 8
    l2_norm: bool = True
    commit_weight: float = 0.25
    norm_groups: int = 32

    def validate(self) -> None:
        check_channels(self, "llamagen-vq16")
        f = 2 ** (len(self.channel_mult) - 1)
        if self.image_size % f:
            raise ConfigError(f"llamagen-vq16: image_size {self.image_size} is not divisible by the downsampling {f}")
        for m in self.channel_mult:
            if (self.base_channels * m) % self.norm_groups:
                raise ConfigError(
                    f"llamagen-vq16: width {self.base_channels * m} not divisible by norm_groups {self.norm_groups}"
                )


class _Level(nn.Module):
    """One resolution level: `res` blocks, each followed by its `attn` block (lowest resolution only), then the
    optional resampler (`downsample` in the encoder, `upsample` in the decoder: the original's key names)."""

    def __init__(
        self,
        res: Sequence[nn.Module],
        attn: Sequence[nn.Module],
        downsample: Optional[nn.Module] = None,
        upsample: Optional[nn.Module] = None,
    ):
        super().__init__()
        self.res, self.attn = nn.ModuleList(res), nn.ModuleList(attn)
        self.downsample, self.upsample = downsample, upsample

    def forward(self, h: Tensor) -> Tensor:
        for i, blk in enumerate(self.res):
            h = blk(h)
            if len(self.attn):
                h = self.attn[i](h)
        if self.downsample is not None:
            h = self.downsample(h)
        if self.upsample is not None:
            h = self.upsample(h)
        return h


class LlamaGenEncoder(nn.Module):
    def __init__(self, c: LlamaGenVQConfig):
        super().__init__()
        g, ch, mult = c.norm_groups, c.base_channels, c.channel_mult
        self.conv_in = nn.Conv2d(c.channels, ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        cin = ch
        for i, m in enumerate(mult):
            cout, last = ch * m, i == len(mult) - 1
            res, attn = [], []
            for _ in range(c.num_res_blocks):
                res.append(ResBlock(cin, cout, g))
                cin = cout
                if last:
                    attn.append(ConvAttnBlock(cin, g))
            self.conv_blocks.append(_Level(res, attn, downsample=None if last else ConvDownsample(cin)))
        self.mid = nn.ModuleList([ResBlock(cin, cin, g), ConvAttnBlock(cin, g), ResBlock(cin, cin, g)])
        self.norm_out = group_norm(cin, g)
        self.conv_out = nn.Conv2d(cin, c.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for blk in self.mid:
            h = blk(h)
        return self.conv_out(torch.nn.functional.silu(self.norm_out(h)))


class LlamaGenDecoder(nn.Module):
    def __init__(self, c: LlamaGenVQConfig):
        super().__init__()
        g, ch, mult = c.norm_groups, c.base_channels, c.channel_mult
        cin = ch * mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, cin, 3, padding=1)
        self.mid = nn.ModuleList([ResBlock(cin, cin, g), ConvAttnBlock(cin, g), ResBlock(cin, cin, g)])
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(len(mult))):
            cout = ch * mult[i]
            res, attn = [], []
            for _ in range(c.num_res_blocks + 1):
                res.append(ResBlock(cin, cout, g))
                cin = cout
                if i == len(mult) - 1:
                    attn.append(ConvAttnBlock(cin, g))
            self.conv_blocks.append(_Level(res, attn, upsample=ConvUpsample(cin) if i != 0 else None))
        self.norm_out = group_norm(cin, g)
        self.conv_out = nn.Conv2d(cin, c.channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        for blk in self.mid:
            h = blk(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(torch.nn.functional.silu(self.norm_out(h)))


class LlamaGenVQ(ExternalTokenizer):
    """LlamaGen VQ-16: 16x16 tokens for 256 px, 16384 l2-normalised codes of dim 8."""

    config_class = LlamaGenVQConfig
    family = "LlamaGen VQ"
    signature = ("quantize.embedding.weight", "encoder.conv_blocks.0.res.0.conv1.weight", "quant_conv.weight")
    frozen_prefixes = ("encoder.", "quant_conv.", "quantizer.")

    def __init__(self, config: LlamaGenVQConfig):
        super().__init__(config)
        config.validate()
        c = config
        self.encoder = LlamaGenEncoder(c)
        self.decoder = LlamaGenDecoder(c)
        self.quant_conv = nn.Conv2d(c.z_channels, c.code_dim, 1)
        self.post_quant_conv = nn.Conv2d(c.code_dim, c.z_channels, 1)
        self.quantizer = ExternalVQ(c.codebook_size, c.code_dim, c.l2_norm, c.commit_weight)

    @property
    def grid_size(self) -> int:
        return self.config.image_size // 2 ** (len(self.config.channel_mult) - 1)

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.conv_out.weight

    def _pre_quant(self, x: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(x.to(self.quant_conv.weight.dtype)))

    def decode_codes(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z.to(self.post_quant_conv.weight.dtype)))

    @classmethod
    def infer_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "quantize.embedding.weight" in state:
            out["codebook_size"], out["code_dim"] = map(int, state["quantize.embedding.weight"].shape)
        if "encoder.conv_in.weight" in state and "encoder.conv_out.weight" in state:
            ch = int(state["encoder.conv_in.weight"].shape[0])
            out["base_channels"], out["z_channels"] = ch, int(state["encoder.conv_out.weight"].shape[0])
            levels = level_indices(state, "encoder.conv_blocks.")
            keys = [f"encoder.conv_blocks.{i}.res.0.conv1.weight" for i in levels]
            widths = [int(state[k].shape[0]) for k in keys if k in state]
            if levels and len(widths) == len(keys) and all(w % ch == 0 for w in widths):
                out["channel_mult"] = [w // ch for w in widths]
                out["num_res_blocks"] = len(level_indices(state, "encoder.conv_blocks.0.res."))
        return out

    def load_original(self, state: dict[str, Tensor], source: str) -> list[str]:
        # `quantize.codebook_used` is LlamaGen's usage-statistics buffer (65536 recent ids), unused here.
        return convert_state(
            self, state, source, rename=(("quantize.", "quantizer."),), aux={"quantizer.codebook_used": None}
        )
