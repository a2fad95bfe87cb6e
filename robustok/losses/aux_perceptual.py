"""`loss.perceptual=aux`: an offline perceptual distance that is not the evaluation feature network.

No pretrained perceptual network (LPIPS-VGG) can be downloaded offline, and training against the FID feature
network (`robustok.metrics.domain`'s Fashion-MNIST classifier, or Inception) would optimise the very metric the
result is judged by. This module trains a second, small network here instead, kept deliberately unlike the FID
network in every respect that could be chosen:
- architecture: strided convolutions with GroupNorm + SiLU, no max-pooling, no fully connected feature layer
  (the FID net: conv + ReLU + max-pool, a 128-d fully connected feature);
- objective: self-supervised 4-way rotation prediction, no class labels (the FID net: 10-class supervision);
- seed and data order: its own (`SEED`).
The distance is LPIPS-like without learned heads: channel-normalised activations of every stage, squared
difference summed over channels, averaged over positions and stages. Train it with
`python -m robustok.losses.aux_perceptual --train FILE` (deterministic: one thread, fixed seed and order), then
set `loss.perceptual=aux loss.aux_perceptual_weights=FILE`. Numbers reported with it must still be checked with
FID-inception, not only with FID-fmnist.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.errors import CheckpointError
from robustok.hf_hub import resolve_weights

VERSION = "v1"
SEED = 20261129  # not the FID network's seed (robustok.metrics.domain.SEED)
STEPS = 400
BATCH = 128
LR = 2e-3
WIDTHS = (16, 32, 64, 64)
TRAIN_HINT = "train one with `python -m robustok.losses.aux_perceptual --train FILE`"


class AuxNet(nn.Module):
    """32x32 gray -> a stem and three strided GroupNorm/SiLU stages (taps) -> 4 rotation logits."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, WIDTHS[0], 3, 1, 1)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(4, c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 4, 2, 1))
            for c_in, c_out in zip(WIDTHS[:-1], WIDTHS[1:])
        )
        self.rotation_head = nn.Linear(WIDTHS[-1], 4)

    def taps(self, x: Tensor) -> list[Tensor]:
        h = self.stem(x)
        out = [h]
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.rotation_head(F.silu(self.taps(x)[-1]).mean((2, 3)))


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 3:
        return (x * torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(
            1, keepdim=True
        )
    if x.shape[1] != 1:
        raise ValueError(f"loss.perceptual=aux needs 1- or 3-channel images, got {x.shape[1]} channels")
    return x


class AuxPerceptual(nn.Module):
    """Frozen `AuxNet`; `f(x, y)` -> per-image distance of float [-1, 1] images (differentiable in x and y)."""

    def __init__(self, net: AuxNet):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "AuxPerceptual":
        return super().train(False)  # always frozen statistics (it has none, but stay in eval mode)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self.net.taps(_gray(x.float())), self.net.taps(_gray(y.float()))
        total = x.new_zeros(x.shape[0], dtype=torch.float32)
        for a, b in zip(fx, fy):
            a, b = F.normalize(a, dim=1, eps=1e-8), F.normalize(b, dim=1, eps=1e-8)
            total = total + (a - b).pow(2).sum(1).mean((1, 2))
        return total / len(fx)


def load_aux_perceptual(path: Optional[str]) -> AuxPerceptual:
    """The network at `path` (safetensors), with a `CheckpointError` naming the key if it is absent or wrong."""
    from robustok.hub import load_state_checked, load_tensors

    if not path:
        raise CheckpointError(f"loss.perceptual=aux needs loss.aux_perceptual_weights=FILE; {TRAIN_HINT}")
    path = str(resolve_weights(path))
    if not Path(path).is_file():
        raise CheckpointError(f"loss.aux_perceptual_weights={path}: not found; {TRAIN_HINT}")
    net = AuxNet()
    load_state_checked(net, load_tensors(path), f"loss.aux_perceptual_weights={path}")
    return AuxPerceptual(net)


def _rotated(x: Tensor, k: Tensor) -> Tensor:
    """Rotate image i by k[i] quarter turns."""
    return torch.stack([torch.rot90(img, int(r), (1, 2)) for img, r in zip(x, k)])


def _fmnist(split: str, root: Optional[str]) -> Tensor:
    from robustok.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(split, root)  # labels are never used
    return torch.from_numpy(np.pad(images, ((0, 0), (2, 2), (2, 2)))).unsqueeze(1)


def rotation_accuracy(net: AuxNet, images: Tensor, seed: int = 0) -> float:
    """Share of correctly predicted quarter turns on uint8 `images` (one random turn each)."""
    k = torch.from_numpy(np.random.default_rng(seed).integers(0, 4, len(images)))
    correct = 0
    with torch.inference_mode():
        for lo in range(0, len(images), 500):
            x = _rotated(images[lo : lo + 500].float() / 127.5 - 1, k[lo : lo + 500])
            correct += int((net(x).argmax(1) == k[lo : lo + 500]).sum())
    return correct / max(1, len(images))


def train_aux_perceptual(
    out: str | Path,
    steps: int = STEPS,
    seed: int = SEED,
    batch: int = BATCH,
    images: Optional[Tensor] = None,
    root: Optional[str] = None,
    log=print,
) -> dict:
    """Train `AuxNet` on rotation prediction (fashion-mnist:train, or uint8 `images` (N, 1, 32, 32)); write
    `out` (safetensors, atomically) and return its metadata. Deterministic: one thread, fixed seed and order."""
    from robustok.hub import save_tensors

    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be positive, got {steps}, {batch}")
    train_images = images if images is not None else _fmnist("train", root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = AuxNet()
        opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
        rng = np.random.default_rng(seed)
        for step in range(steps):
            idx = torch.from_numpy(rng.integers(0, len(train_images), batch))
            k = torch.from_numpy(rng.integers(0, 4, batch))
            x = _rotated(train_images[idx].float() / 127.5 - 1, k)
            loss = F.cross_entropy(net(x), k)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 100 == 0:
                log(f"aux perceptual: step {step + 1}/{steps} rotation loss {loss.item():.4f}")
        held_out = train_images[:1000] if images is not None else _fmnist("test", root)[:2000]
        acc = rotation_accuracy(net.eval(), held_out)
    finally:
        torch.set_num_threads(threads)
    meta = {
        "kind": "aux-perceptual",
        "version": VERSION,
        "objective": "rotation",
        "seed": str(seed),
        "steps": str(steps),
        "batch": str(batch),
        "rotation_accuracy": f"{acc:.4f}",
    }
    save_tensors(net.state_dict(), out, metadata=meta)
    return meta


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m robustok.losses.aux_perceptual",
        description="Train the offline perceptual network of loss.perceptual=aux.",
    )
    p.add_argument("--train", required=True, metavar="FILE", help="output safetensors file")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST IDX files (default: search)")
    a = p.parse_args(argv)
    meta = train_aux_perceptual(a.train, a.steps, a.seed, a.batch, root=a.data_root)
    print(json.dumps({"file": a.train, **meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
