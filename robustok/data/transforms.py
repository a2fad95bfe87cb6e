"""Image transforms on PIL images: explicit mode handling, ADM-style center crop, the paper's random crop."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL image (palette, CMYK, 16-bit, alpha, ...) to 'L' (channels=1) or 'RGB' (channels=3).

    16-bit (and 32-bit integer 'I') images are scaled by the fixed 16-bit range, v * 255 / 65535 (values outside
    [0, 65535] clipped), the same for every image; transparent pixels are composited onto white.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if img.mode in ("P", "PA", "LA", "RGBA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    target = "L" if channels == 1 else "RGB"
    return img.convert(target) if img.mode != target else img


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """ADM's `center_crop_arr`: box-downsample by 2 while the short side is >= 2*size, bicubic resize, crop."""
    while min(img.size) >= 2 * size:
        img = img.resize((img.size[0] // 2, img.size[1] // 2), resample=Image.Resampling.BOX)
    scale = size / min(img.size)
    img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), resample=Image.Resampling.BICUBIC)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    return img.crop((left, top, left + size, top + size))


def random_crop(
    img: Image.Image, size: int, rng: np.random.Generator, max_scale: float = 1.25, flip: bool = True
) -> Image.Image:
    """The paper's training augmentation: short side resized to U[size, max_scale*size], random crop, h-flip."""
    target = int(rng.integers(size, math.ceil(size * max_scale) + 1))
    while min(img.size) >= 2 * target:
        img = img.resize((img.size[0] // 2, img.size[1] // 2), resample=Image.Resampling.BOX)
    scale = target / min(img.size)
    w, h = (max(size, round(s * scale)) for s in img.size)
    img = img.resize((w, h), resample=Image.Resampling.BICUBIC)
    left = int(rng.integers(0, img.size[0] - size + 1))
    top = int(rng.integers(0, img.size[1] - size + 1))
    img = img.crop((left, top, left + size, top + size))
    if flip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL 'L'/'RGB' image -> float tensor (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] (B, C, H, W) -> uint8 (B, C, H, W), rounding as image writers do."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, C, H, W) -> float in [-1, 1]."""
    return x.float().div(127.5).sub(1.0)
