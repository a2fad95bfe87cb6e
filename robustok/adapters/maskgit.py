"""The MaskGIT VQGAN used by TiTok/RAR (`maskgit-vqgan-imagenet-f16-256.bin`) as a robustok tokenizer.

Architecture facts (from bytedance/1d-tokenizer `modeling/modules/maskgit_vqgan.py` and the fixed config in
`modeling/titok.py:PretrainedTokenizer`): hidden 128, channel_mult (1, 1, 2, 2, 4), 2 residual blocks per
level and in the middle, no attention anywhere; residual-block convs without bias; the 1x1 `nin_shortcut` of
a widening block maps the block's *output* (out -> out) and is added to it; average-pool downsampling,
nearest + `upsample_conv` upsampling; encoder `conv_out` is 1x1 to z_channels 256, there is no
quant_conv/post_quant_conv; codebook 1024 x 256, not normalised, squared-L2 lookup. The model works on images
in [0, 1] (TiTok feeds pixels / 255 and clamps the output to [0, 1]); this adapter converts from/to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from robustok.adapters.base import ExternalTokenizer, ExternalVQ, check_channels, convert_state, level_indices
from robustok.adapters.blocks import ResBlock, group_norm
from robustok.errors import ConfigError


@dataclass
class MaskGITVQGANConfig:
    image_size: int = 256
    channels: int = 3
    hidden_channels: int = 128
    channel_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 1024
    commit_weight: float = 0.25
    norm_groups: int = 32

    def validate(self) -> None:
        check_channels(self, "maskgit-vqgan")
        f = 2 ** (len(self.channel_mult) - 1)
        if self.image_size % f:
            raise ConfigError(f"maskgit-vqgan: image_size {self.image_size} is not divisible by the downsampling {f}")
        for m in [1, *self.channel_mult]:
            if (self.hidden_channels * m) % self.norm_groups:
                raise ConfigError(
                    f"maskgit-vqgan: width {self.hidden_channels * m} not divisible by norm_groups {self.norm_groups}"
                )


def _res(cin: int, cout: int, groups: int) -> ResBlock:
    return ResBlock(cin, cout, groups, bias=False, shortcut="nin_shortcut", shortcut_on_output=True)


class _Down(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module], downsample: bool):
        super().__init__()
        self.block, self.downsample = nn.ModuleList(blocks), downsample

    def forward(self, h: Tensor) -> Tensor:
        for b in self.block:
            h = b(h)
        return F.avg_pool2d(h, 2, 2) if self.downsample else h


class _Up(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module], ch: int, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if upsample:
            self.upsample_conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        for b in self.block:
            h = b(h)
        if hasattr(self, "upsample_conv"):
            h = self.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h


class MaskGITEncoder(nn.Module):
    def __init__(self, c: MaskGITVQGANConfig):
        super().__init__()
        g, ch, mult = c.norm_groups, c.hidden_channels, c.channel_mult
        self.conv_in = nn.Conv2d(c.channels, ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(mult):
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(_res(cin, ch * m, g))
                cin = ch * m
            self.down.append(_Down(blocks, i != len(mult) - 1))
        self.mid = nn.ModuleList(_res(cin, cin, g) for _ in range(c.num_res_blocks))
        self.norm_out = group_norm(cin, g)
        self.conv_out = nn.Conv2d(cin, c.z_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for blk in self.down:
            h = blk(h)
        for blk in self.mid:
            h = blk(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MaskGITDecoder(nn.Module):
    """`up[i]` is indexed by resolution level (0 = full resolution) and run from the last level to 0."""

    def __init__(self, c: MaskGITVQGANConfig):
        super().__init__()
        g, ch, mult = c.norm_groups, c.hidden_channels, c.channel_mult
        n = len(mult)
        cin = ch * mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, cin, 3, padding=1)
        self.mid = nn.ModuleList(_res(cin, cin, g) for _ in range(c.num_res_blocks))
        ups = []
        for i in range(n):
            bin_, bout = ch * (mult[-1] if i == n - 1 else mult[i + 1]), ch * mult[i]
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(_res(bin_, bout, g))
                bin_ = bout
            ups.append(_Up(blocks, bout, i != 0))
        self.up = nn.ModuleList(ups)
        self.norm_out = group_norm(ch * mult[0], g)
        self.conv_out = nn.Conv2d(ch * mult[0], c.channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        for blk in self.mid:
            h = blk(h)
        for blk in reversed(self.up):
            h = blk(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MaskGITVQGAN(ExternalTokenizer):
    """MaskGIT VQGAN f16: 16x16 tokens for 256 px, 1024 codes of dim 256 (not normalised)."""

    config_class = MaskGITVQGANConfig
    family = "MaskGIT VQGAN"
    signature = (
        "quantize.embedding.weight",
        "encoder.down.0.block.0.conv1.weight",
        "decoder.up.0.block.0.conv1.weight",
    )
    frozen_prefixes = ("encoder.", "quantizer.")

    def __init__(self, config: MaskGITVQGANConfig):
        super().__init__(config)
        config.validate()
        self.encoder = MaskGITEncoder(config)
        self.decoder = MaskGITDecoder(config)
        self.quantizer = ExternalVQ(config.codebook_size, config.z_channels, False, config.commit_weight)

    @property
    def grid_size(self) -> int:
        return self.config.image_size // 2 ** (len(self.config.channel_mult) - 1)

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.conv_out.weight

    def _pre_quant(self, x: Tensor) -> Tensor:
        w = self.encoder.conv_in.weight
        return self.encoder(((x + 1) / 2).to(w.dtype))  # the model expects [0, 1]

    def decode_codes(self, z: Tensor) -> Tensor:
        out = self.decoder(z.to(self.decoder.conv_in.weight.dtype))
        return out * 2 - 1  # [0, 1] -> [-1, 1]

    @classmethod
    def infer_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "quantize.embedding.weight" in state:
            out["codebook_size"], out["z_channels"] = map(int, state["quantize.embedding.weight"].shape)
        if "encoder.conv_in.weight" in state:
            ch = int(state["encoder.conv_in.weight"].shape[0])
            out["hidden_channels"] = ch
            levels = level_indices(state, "encoder.down.")
            keys = [f"encoder.down.{i}.block.0.conv1.weight" for i in levels]
            widths = [int(state[k].shape[0]) for k in keys if k in state]
            if levels and len(widths) == len(keys) and all(w % ch == 0 for w in widths):
                out["channel_mult"] = [w // ch for w in widths]
                out["num_res_blocks"] = len(level_indices(state, "encoder.down.0.block."))
        return out

    def load_original(self, state: dict[str, Tensor], source: str) -> list[str]:
        return convert_state(self, state, source, rename=(("quantize.", "quantizer."),))
