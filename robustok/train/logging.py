"""Run logging: metrics.jsonl + TensorBoard scalars, and image grids saved as PNG."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from robustok.data.transforms import to_uint8

log = logging.getLogger(__name__)


class MetricsLogger:
    """Appends one JSON object per logging step to `<run>/metrics.jsonl` and mirrors scalars to TensorBoard.

    `start_step`: the step training (re)starts from; rows of later steps, logged by a run that died before its
    next checkpoint, are dropped (metrics.jsonl rewritten atomically, TensorBoard `purge_step`), so a resumed
    run's log has each step once.
    """

    def __init__(
        self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True, start_step: Optional[int] = None
    ):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if enabled and start_step is not None:
            truncate_metrics(run_dir, start_step)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional `tensorboard` extra: metrics.jsonl alone holds every row
                log.warning("TensorBoard logs off (metrics.jsonl has every row): pip install 'robustok[tensorboard]'")
            else:
                purge = None if start_step is None else start_step + 1
                self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge)

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


def _parse_rows(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a row cut short by a crash, or a blank line
            continue
    return rows


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return _parse_rows(path.read_text()) if path.is_file() else []


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Keep only the metrics.jsonl rows of steps <= `last_step` (and no partial lines)."""
    from robustok.hub import atomic_write_bytes

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    rows = [r for r in _parse_rows(path.read_text()) if isinstance(r, dict) and r.get("step", 0) <= last_step]
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def image_grid(images: torch.Tensor, nrow: Optional[int] = None, pad: int = 2) -> np.ndarray:
    """Float images [-1, 1] (B, C, H, W) -> uint8 HWC grid (gray stays 1 channel, squeezed)."""
    x = to_uint8(images).cpu().numpy()
    b, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(b)))
    rows = int(math.ceil(b / nrow))
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = x[
            i
        ].transpose(1, 2, 0)
    return grid[:, :, 0] if c == 1 else grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: Optional[int] = None, scale: int = 1) -> Path:
    """Save a PNG grid of float images in [-1, 1]; `scale` enlarges small images with nearest-neighbour."""
    img = Image.fromarray(image_grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
