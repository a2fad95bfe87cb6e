"""A frozen ViT feature network (DINO / DINOv2) loaded from a local timm-style state dict.

Used by the DINO discriminator (DINO ViT-S/16) and the semantic InfoNCE teacher (DINOv2 ViT-B/14). Key names
follow timm's `VisionTransformer`: `cls_token`, `pos_embed` (cls entry first), `patch_embed.proj`,
`blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`, `norm`; other keys
(`mask_token`, `head.*`, ...) are ignored. Width, depth, MLP width, patch size and LayerScale are read from the
file; heads = width / 64 (true for every DINO/DINOv2 model). The network can be re-gridded: the position
embedding is resampled bicubically, the patch kernel by the pseudo-inverse of the resize (FlexiViT/timm), so a
14-px DINOv2 kernel on 16-px patches gives the same response to a resized patch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.errors import CheckpointError
from robustok.hf_hub import resolve_weights
from robustok.tokenizer.vit import Block

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _PatchEmbed(nn.Module):
    """Holds the patch projection under timm's key name (`patch_embed.proj`)."""

    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)


class FrozenViT(nn.Module):
    """Plain ViT with a cls token; `tokens(x, taps)` returns the token sequences after the tapped blocks."""

    mean: Tensor  # buffers
    std: Tensor

    def __init__(
        self,
        image_size: int,
        patch: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        layer_scale: bool = False,
    ):
        super().__init__()
        self.image_size, self.patch, self.dim = image_size, patch, dim
        self.grid = image_size // patch
        self.patch_embed = _PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, dim))
        blocks = [Block(dim, heads, mlp_ratio, 1e-5 if layer_scale else 1.0) for _ in range(depth)]
        self.blocks = nn.ModuleList(blocks)
        if not layer_scale:  # DINO v1 has no LayerScale: gamma stays 1 and is not read from the file
            for blk in blocks:
                blk.ls1.gamma.data.fill_(1.0)
                blk.ls2.gamma.data.fill_(1.0)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def embed(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] (B, 3, image_size, image_size) -> [cls, patches] + pos (B, 1 + g*g, dim)."""
        x = ((x + 1) / 2 - self.mean) / self.std
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self.pos_embed

    def tokens(self, x: Tensor, taps: Sequence[int] = ()) -> list[Tensor]:
        """Token sequences after the patch embedding (tap -1) and after each block index in `taps`."""
        t = self.embed(x)
        out = [t] if -1 in taps else []
        last = max(taps) if taps else len(self.blocks) - 1
        for i, blk in enumerate(self.blocks[: last + 1]):
            t = blk(t)
            if i in taps:
                out.append(t)
        return out

    def cls_feature(self, x: Tensor) -> Tensor:
        """The final-norm cls token (B, dim): DINO's global image feature."""
        t = self.embed(x)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)[:, 0]


def _resize_patch_kernel(w: Tensor, size: int) -> Tensor:
    """Pseudo-inverse resize of conv kernels (C_out, C_in, p, p) -> (C_out, C_in, size, size)."""
    p = w.shape[-1]
    if p == size:
        return w
    basis = torch.eye(p * p, dtype=torch.float64).view(p * p, 1, p, p)
    resized = F.interpolate(basis, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mat = resized.view(p * p, size * size).T  # (size², p²): resize as a linear map
    pinv = torch.linalg.pinv(mat.T)  # (size², p²)
    flat = w.double().reshape(-1, p * p)
    return (flat @ pinv.T).reshape(*w.shape[:2], size, size).to(w.dtype)


def _resize_pos_embed(pos: Tensor, grid: int) -> Tensor:
    """(1, 1 + n, d) -> (1, 1 + grid², d): cls entry kept, the square patch grid resampled bicubically."""
    cls, patches = pos[:, :1], pos[:, 1:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise CheckpointError(f"pos_embed has {patches.shape[1]} patch entries, not a square grid")
    if side == grid:
        return pos
    g = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    g = F.interpolate(g, size=(grid, grid), mode="bicubic", align_corners=False, antialias=True)
    return torch.cat([cls, g.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)], dim=1)


def read_state_dict(path: str | Path, what: str, how_to_get: str) -> dict[str, Tensor]:
    """A state dict from `.safetensors` or a `torch.load(weights_only=True)` file (`model`/`state_dict`/`teacher`
    sub-dicts unwrapped, `module.`/`backbone.` prefixes stripped); a clear error naming the file otherwise."""
    p = resolve_weights(path) if path else None
    if p is None or not p.is_file():
        raise CheckpointError(f"{path or '(no path given)'}: {what} weights file not found. {how_to_get}")
    state: Any
    if p.suffix == ".safetensors":
        from robustok.hub import load_tensors

        state = load_tensors(p)
    else:
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure
            raise CheckpointError(f"{p}: cannot read {what} weights ({err})") from None
        for key in ("model", "state_dict", "teacher"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: {what} file is not a state dict")
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            k = k[len(prefix) :] if k.startswith(prefix) else k
        out[k] = v
    return out


def load_frozen_vit(path: str | Path, image_size: int, patch: Optional[int], what: str, how_to_get: str) -> FrozenViT:
    """Build a frozen, eval-mode `FrozenViT` from a local file, re-gridded to `image_size` / `patch`
    (None: the file's own patch size)."""
    state = read_state_dict(path, what, how_to_get)
    need = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "norm.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a timm-style ViT state dict for the {what} (missing {missing}). {how_to_get}"
        )
    dim = state["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / dim
    patch = patch or state["patch_embed.proj.weight"].shape[-1]
    if image_size % patch:
        raise CheckpointError(f"{what}: image size {image_size} is not divisible by the patch size {patch}")
    layer_scale = "blocks.0.ls1.gamma" in state
    net = FrozenViT(image_size, patch, dim, depth, max(1, dim // 64), mlp_ratio, layer_scale)
    own = net.state_dict()
    for k in own:
        if k not in state:
            if ".ls" in k and not layer_scale:
                continue
            raise CheckpointError(f"{path}: {what} weights lack {k!r} (depth {depth}, width {dim}). {how_to_get}")
        v = state[k].float()
        if k == "pos_embed":
            v = _resize_pos_embed(v, net.grid)
        elif k == "patch_embed.proj.weight":
            v = _resize_patch_kernel(v, patch)
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{path}: {what} weight {k!r} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
            )
        own[k] = v
    net.load_state_dict(own)
    return net.eval().requires_grad_(False)
