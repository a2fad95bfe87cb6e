"""ViT encoder/decoder over a 2-D patch-token grid, with timm-compatible parameter names.

Parameter names follow timm's `VisionTransformer` (`patch_embed.proj`, `pos_embed`, `blocks.N.{norm1,attn.qkv,
attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`, `norm`), so a local DINOv2 checkpoint file can
initialise the encoder (`load_dinov2`), with the position embedding and patch kernel resampled to this grid.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.errors import CheckpointError


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, layer_scale: float = 1.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.ls1 = LayerScale(dim, layer_scale)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class ViTEncoder(nn.Module):
    """Image -> (B, out_dim, H/p, W/p): patch tokens after `depth` blocks, one token per grid cell."""

    def __init__(self, in_channels: int, image_size: int, patch: int, dim: int, depth: int, heads: int, out_dim: int):
        super().__init__()
        self.grid = image_size // patch
        self.patch_embed = PatchEmbed(in_channels, dim, patch)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid**2, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        t = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for blk in self.blocks:
            t = blk(t)
        t = self.head(self.norm(t))
        return t.transpose(1, 2).reshape(x.shape[0], -1, self.grid, self.grid)


class ViTDecoder(nn.Module):
    """(B, in_dim, h, w) -> image: per-token blocks, then a linear map to p x p pixel patches."""

    def __init__(self, out_channels: int, image_size: int, patch: int, dim: int, depth: int, heads: int, in_dim: int):
        super().__init__()
        self.grid, self.patch, self.out_channels = image_size // patch, patch, out_channels
        self.embed = nn.Linear(in_dim, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid**2, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.to_pixels = nn.Linear(dim, patch * patch * out_channels)

    @property
    def last_layer(self) -> Tensor:
        return self.to_pixels.weight

    def forward(self, z: Tensor) -> Tensor:
        b = z.shape[0]
        t = self.embed(z.flatten(2).transpose(1, 2)) + self.pos_embed
        for blk in self.blocks:
            t = blk(t)
        t = self.to_pixels(self.norm(t))  # (B, g*g, p*p*C)
        g, p, c = self.grid, self.patch, self.out_channels
        return t.view(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)


def load_dinov2(module: ViTEncoder | ViTDecoder, path: str | Path) -> list[str]:
    """Initialise matching blocks (and, for an encoder, patch/pos embeddings) from a local timm DINOv2 file.

    Accepts `.safetensors` or a `torch.load(weights_only=True)`-able state dict. The position embedding is
    resampled bicubically to this grid (cls entry dropped), the patch kernel bilinearly to this patch size.
    Returns the names that were loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: DINOv2 checkpoint not found (e.g. timm's vit_base_patch14_dinov2.lvd142m "
            "model.safetensors from a local download)"
        )
    from robustok.weight_files import read_checkpoint  # safetensors or weights-only, errors name the file

    state, _ = read_checkpoint(path)
    own = module.state_dict()
    loaded: list[str] = []
    for k, v in state.items():
        if k == "pos_embed" and k in own:
            n = v.shape[1] - 1 if int(math.isqrt(v.shape[1] - 1)) ** 2 == v.shape[1] - 1 else v.shape[1]
            grid = v[:, -n:]
            side = math.isqrt(n)
            grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            g = module.grid
            v = F.interpolate(grid.float(), size=(g, g), mode="bicubic", align_corners=False)
            v = v.permute(0, 2, 3, 1).reshape(1, g * g, -1)
        elif k == "patch_embed.proj.weight" and k in own and v.shape[-1] != own[k].shape[-1]:
            v = F.interpolate(v.float(), size=own[k].shape[-2:], mode="bilinear", align_corners=False)
            if v.shape[1] != own[k].shape[1]:  # gray input: sum the RGB kernels
                v = v.sum(1, keepdim=True)
        if k in own and own[k].shape == v.shape:
            own[k] = v.to(own[k].dtype)
            loaded.append(k)
    if not any(k.startswith("blocks.") for k in loaded):
        raise CheckpointError(
            f"{path}: no transformer block weights matched (is it a timm ViT/DINOv2 state dict with the same width?)"
        )
    module.load_state_dict(own)
    return loaded
