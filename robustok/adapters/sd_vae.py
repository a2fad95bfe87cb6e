"""diffusers `AutoencoderKL` (the SD 1.x/2.x VAE, `diffusion_pytorch_model.safetensors`) as a continuous tokenizer.

Architecture facts (from huggingface/diffusers `models/autoencoders/vae.py`, `autoencoder_kl.py`,
`unets/unet_2d_blocks.py`, `resnet.py`, `attention_processor.py`): block_out_channels (128, 256, 512, 512),
layers_per_block 2 (encoder blocks: 2 resnets, decoder blocks: 3), GroupNorm(32, eps 1e-6), SiLU; encoder
down blocks end with a pad-(0,1,0,1) stride-2 conv except the last; mid block = resnet, single-head attention
(`group_norm`, `to_q/k/v`, `to_out.0`; older files name them `query/key/value/proj_attn`), resnet; encoder
`conv_out` gives 2 x 4 channels (mean, log-variance), `quant_conv` 8 -> 8, `post_quant_conv` 4 -> 4; decoder
up blocks end with nearest x2 + conv except the last. Downsampling 8; images in [-1, 1].

`encode_latents` returns the posterior mean times `scaling_factor` (0.18215 for SD 1.x/2.x, the factor the
diffusion models were trained with) when `scale_latents` is true; `decode_latents` divides it out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.adapters.base import ExternalTokenizer, check_channels, convert_state, level_indices
from robustok.adapters.blocks import ConvDownsample, ConvUpsample, LinearAttnBlock, ResBlock, group_norm
from robustok.errors import ConfigError
from robustok.tokenizer.base import TokenizerOutput
from robustok.tokenizer.quantizer import GaussianBottleneck


@dataclass
class SDVAEConfig:
    image_size: int = 256
    channels: int = 3
    block_out_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 512])
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_groups: int = 32
    scaling_factor: float = 0.18215  # SD 1.x/2.x; SDXL's VAE uses 0.13025
    scale_latents: bool = True  # encode_latents returns mean * scaling_factor
    kl_weight: float = 1e-6  # weight of the KL term in the training forward

    def validate(self) -> None:
        check_channels(self, "sd-vae")
        f = 2 ** (len(self.block_out_channels) - 1)
        if self.image_size % f:
            raise ConfigError(f"sd-vae: image_size {self.image_size} is not divisible by the downsampling {f}")
        if any(c % self.norm_groups for c in self.block_out_channels):
            raise ConfigError(
                f"sd-vae: block_out_channels {self.block_out_channels} not divisible by norm_groups {self.norm_groups}"
            )
        if self.scaling_factor <= 0:
            raise ConfigError(f"sd-vae: scaling_factor must be positive, got {self.scaling_factor}")


def _res(cin: int, cout: int, groups: int) -> ResBlock:
    return ResBlock(cin, cout, groups, shortcut="conv_shortcut")


class _Block(nn.Module):
    def __init__(self, resnets: Sequence[nn.Module], sampler: Optional[nn.Module], name: str):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.sampler_name = name
        if sampler is not None:
            setattr(self, name, nn.ModuleList([sampler]))

    def forward(self, h: Tensor) -> Tensor:
        for r in self.resnets:
            h = r(h)
        if hasattr(self, self.sampler_name):
            h = getattr(self, self.sampler_name)[0](h)
        return h


class _Mid(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([_res(ch, ch, groups), _res(ch, ch, groups)])
        self.attentions = nn.ModuleList([LinearAttnBlock(ch, groups)])

    def forward(self, h: Tensor) -> Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](h)))


class SDVAEEncoder(nn.Module):
    def __init__(self, c: SDVAEConfig):
        super().__init__()
        g, outs = c.norm_groups, c.block_out_channels
        self.conv_in = nn.Conv2d(c.channels, outs[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cin = outs[0]
        for i, cout in enumerate(outs):
            res = []
            for _ in range(c.layers_per_block):
                res.append(_res(cin, cout, g))
                cin = cout
            last = i == len(outs) - 1
            self.down_blocks.append(_Block(res, None if last else ConvDownsample(cout), "downsamplers"))
        self.mid_block = _Mid(cin, g)
        self.conv_norm_out = group_norm(cin, g)
        self.conv_out = nn.Conv2d(cin, 2 * c.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for b in self.down_blocks:
            h = b(h)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class SDVAEDecoder(nn.Module):
    def __init__(self, c: SDVAEConfig):
        super().__init__()
        g = c.norm_groups
        rev = list(reversed(c.block_out_channels))
        self.conv_in = nn.Conv2d(c.latent_channels, rev[0], 3, padding=1)
        self.mid_block = _Mid(rev[0], g)
        self.up_blocks = nn.ModuleList()
        cin = rev[0]
        for i, cout in enumerate(rev):
            res = []
            for _ in range(c.layers_per_block + 1):
                res.append(_res(cin, cout, g))
                cin = cout
            last = i == len(rev) - 1
            self.up_blocks.append(_Block(res, None if last else ConvUpsample(cout), "upsamplers"))
        self.conv_norm_out = group_norm(cin, g)
        self.conv_out = nn.Conv2d(cin, c.channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            h = b(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# older diffusers / converted files name the mid-block attention projections differently
_DEPRECATED_ATTN = (("query.", "to_q."), ("key.", "to_k."), ("value.", "to_v."), ("proj_attn.", "to_out.0."))


class SDVAE(ExternalTokenizer):
    """Continuous KL autoencoder (downsampling 8, 4 latent channels). No codebook: `encode`/`lookup` raise."""

    config_class = SDVAEConfig
    family = "diffusers AutoencoderKL"
    signature = (
        "encoder.down_blocks.0.resnets.0.conv1.weight",
        "decoder.up_blocks.0.resnets.0.conv1.weight",
        "quant_conv.weight",
        "post_quant_conv.weight",
    )
    frozen_prefixes = ("encoder.", "quant_conv.")

    def __init__(self, config: SDVAEConfig):
        super().__init__(config)
        config.validate()
        c = config
        self.encoder = SDVAEEncoder(c)
        self.decoder = SDVAEDecoder(c)
        self.quant_conv = nn.Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(c.latent_channels, c.latent_channels, 1)
        self.quantizer = None
        self.gaussian = GaussianBottleneck(c.kl_weight)

    @property
    def grid_size(self) -> int:
        return self.config.image_size // 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.conv_out.weight

    @property
    def latent_scale(self) -> float:
        return self.config.scaling_factor if self.config.scale_latents else 1.0

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior (mean, logvar) (B, 4, h, w) in the VAE's own (unscaled) units; logvar clamped to [-30, 20]."""
        self._check_images(x)
        m = self.quant_conv(self.encoder(x.to(self.quant_conv.weight.dtype))).float()
        mean, logvar = m.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def _pre_quant(self, x: Tensor) -> Tensor:
        return self.moments(x)[0] * self.latent_scale

    def decode_codes(self, z: Tensor) -> Tensor:
        z = z / self.latent_scale
        return self.decoder(self.post_quant_conv(z.to(self.post_quant_conv.weight.dtype)))

    def forward(
        self, x: Tensor, perturb: Optional[dict] = None, generator: Optional[torch.Generator] = None
    ) -> TokenizerOutput:
        """Training forward: sample the posterior (mean in eval mode), KL loss, decode. `perturb` with
        {beta, noise_std} adds Gaussian noise to the (scaled) latents of a beta fraction of images (training only).
        """
        mean, logvar = self.moments(x)
        z, losses, stats = self.gaussian(mean, logvar, perturb, generator, scale=self.latent_scale)
        return TokenizerOutput(self.decode_codes(z), None, losses, stats)

    @classmethod
    def infer_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        levels = level_indices(state, "encoder.down_blocks.")
        keys = [f"encoder.down_blocks.{i}.resnets.0.conv1.weight" for i in levels]
        widths = [int(state[k].shape[0]) for k in keys if k in state]
        if levels and len(widths) == len(keys):
            out["block_out_channels"] = widths
            out["layers_per_block"] = len(level_indices(state, "encoder.down_blocks.0.resnets."))
        if "post_quant_conv.weight" in state:
            out["latent_channels"] = int(state["post_quant_conv.weight"].shape[0])
        return out

    def load_original(self, state: dict[str, Tensor], source: str) -> list[str]:
        rename = tuple(
            (f"{side}.mid_block.attentions.0.{old}", f"{side}.mid_block.attentions.0.{new}")
            for side in ("encoder", "decoder")
            for old, new in _DEPRECATED_ATTN
        )
        state = dict(state)
        for k, v in list(state.items()):  # some converted files store the attention projections as 1x1 convs
            if ".mid_block.attentions.0." in k and k.endswith(".weight") and v.ndim == 4 and v.shape[-2:] == (1, 1):
                state[k] = v[:, :, 0, 0]
        return convert_state(self, state, source, rename=rename)
