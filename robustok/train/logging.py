"""Run logging: metrics.jsonl + TensorBoard scalars, and image grids saved as PNG."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from robustok.data.transforms import to_uint8


class MetricsLogger:
    """Appends one JSON object per logging step to `<run>/metrics.jsonl` and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:  # tensorboard is a declared dependency; stay usable without it
                self.tb = None

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def image_grid(images: torch.Tensor, nrow: Optional[int] = None, pad: int = 2) -> np.ndarray:
    """Float images [-1, 1] (B, C, H, W) -> uint8 HWC grid (gray stays 1 channel, squeezed)."""
    x = to_uint8(images).cpu().numpy()
    b, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(b)))
    rows = int(math.ceil(b / nrow))
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = \
            x[i].transpose(1, 2, 0)
    return grid[:, :, 0] if c == 1 else grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: Optional[int] = None, scale: int = 1) -> Path:
    """Save a PNG grid of float images in [-1, 1]; `scale` enlarges small images with nearest-neighbour."""
    img = Image.fromarray(image_grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
