"""`fmnist`: a fast domain feature network for the embedded Fashion-MNIST default.

A small CNN classifier trained deterministically on `fashion-mnist:train` (fixed seed, fixed order, one thread).
Its weights ship with the package (`weights/`, 1.4 MB, checked by sha256), because retraining on another CPU gives
slightly different weights (0.9072 instead of 0.9077 test accuracy without AVX-512) and so other FID-fmnist
values. Its 128-d penultimate activations are the FID features; its test accuracy is stored with the weights.
Retrain on request: `python -m robustok.metrics.domain --train FILE`, then `ROBUSTOK_FMNIST_WEIGHTS=FILE`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustok.errors import CheckpointError
from robustok.metrics.features import FeatureNet

VERSION = "v1"
SEED = 1234
EPOCHS = 3
BATCH = 128
LR = 2e-3


SHIPPED = Path(__file__).with_name("weights") / f"fmnist-features-{VERSION}.safetensors"
SHIPPED_SHA256 = "682d62e3f2e1dfa79c9020ef31a41f2497eb38017c7e8f738fc689d785f5dfe0"
SHIPPED_ACCURACY = 0.9077


class FmnistNet(nn.Module):
    """32x32 gray -> 3 conv stages -> 128-d feature -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc = nn.Linear(128 * 4 * 4, 128)
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1|3, H, W) -> float (B, 1, 32, 32) in [-1, 1]; RGB -> luma (ITU-R 601), other sizes resized."""
    x = images.float()
    if x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] != 1:
        raise CheckpointError(f"fmnist features need 1- or 3-channel images, got {x.shape[1]} channels")
    if x.shape[-2:] != (32, 32):
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return x / 127.5 - 1.0


def _padded(split: str, root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    from robustok.data.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist(split, root)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def accuracy(net: FmnistNet, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            correct += int((net(_prepare(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum())
    return correct / len(images)


def train(root: str | None = None, epochs: int = EPOCHS, log=print) -> tuple[FmnistNet, float]:
    """Train deterministically on fashion-mnist:train; returns (net, test accuracy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise-reproducible CPU reductions
    try:
        images, labels = _padded("train", root)
        gen = torch.Generator().manual_seed(SEED)
        torch.manual_seed(SEED)
        net = FmnistNet()
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        steps = epochs * (len(images) // BATCH)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
        start = time.time()
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=gen)
            for i in range(len(images) // BATCH):
                idx = order[i * BATCH : (i + 1) * BATCH]
                loss = F.cross_entropy(net(_prepare(images[idx])), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            log(f"fmnist features: epoch {epoch + 1}/{epochs} loss {loss.item():.3f} ({time.time() - start:.0f}s)")
        net.eval()
        test_images, test_labels = _padded("test", root)
        return net, accuracy(net, test_images, test_labels)
    finally:
        torch.set_num_threads(threads)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_weights(path: Path | None = None) -> tuple[FmnistNet, float, Path]:
    """The feature network from `path` (default: the weights shipped with the package, checked by sha256).

    Returns (net, test accuracy, file). `$ROBUSTOK_FMNIST_WEIGHTS` names another file (e.g. one made by
    `python -m robustok.metrics.domain --train FILE`); the shipped file must match its hash, so FID-fmnist values
    are the same on every machine.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path or os.environ.get("ROBUSTOK_FMNIST_WEIGHTS") or SHIPPED)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: fmnist feature weights not found"
            + (" (the package was installed without its data files; reinstall robustok)" if path == SHIPPED else "")
        )
    if path == SHIPPED and _sha256(path) != SHIPPED_SHA256:
        raise CheckpointError(
            f"{path}: sha256 does not match the shipped fmnist feature weights "
            f"({SHIPPED_SHA256[:16]}...); the file is damaged: reinstall robustok"
        )
    try:
        with safe_open(str(path), "pt") as f:
            acc = float((f.metadata() or {})["test_accuracy"])
        net = FmnistNet()
        net.load_state_dict(load_file(str(path)))
    except (SafetensorError, KeyError, ValueError, RuntimeError, OSError) as err:
        raise CheckpointError(f"{path}: not a usable fmnist feature network ({err})") from None
    return net.eval(), acc, path


def train_and_save(path: Path, root: str | None = None, log=print) -> float:
    """Train the network deterministically (about 2 minutes on one core) and save it atomically; returns accuracy."""
    from robustok.hub import save_tensors

    net, acc = train(root, log=log)
    save_tensors(
        net.state_dict(),
        path,
        metadata={"test_accuracy": f"{acc:.6f}", "seed": str(SEED), "epochs": str(EPOCHS), "version": VERSION},
    )
    log(f"fmnist features: test accuracy {acc:.4f}, sha256 {_sha256(path)} ({path})")
    return acc


class FmnistFeatures(FeatureNet):
    """The `fmnist` feature network: uint8 (B, 1|3, H, W) -> 128-d features; `logits` for IS."""

    name = "fmnist"
    dim = 128
    has_logits = True

    def __init__(self, device: str | torch.device = "cpu", root: str | None = None, log=print):
        self.net, self.accuracy, self.source = load_weights()
        self.device = torch.device(device)
        self.net.to(self.device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(_prepare(images.to(self.device))).float().cpu()

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(_prepare(images.to(self.device))).float().cpu()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Retrain the fmnist feature network (the package ships it).")
    parser.add_argument("--train", metavar="FILE", required=True, help="where to write the new weights")
    parser.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    args = parser.parse_args()
    acc = train_and_save(Path(args.train), args.data_root)
    print(f"shipped: accuracy {SHIPPED_ACCURACY}, sha256 {SHIPPED_SHA256}")
