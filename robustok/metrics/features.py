"""Feature networks behind one interface (`FeatureNet`), chosen by name from the `FEATURES` registry.

A feature network subclasses `FeatureNet`: `name`, `dim`, `__call__(uint8 (B, C, H, W)) -> float (B, dim)` and,
with `has_logits`, `logits(images)`; `source` and `accuracy` describe its weights. Gray images are replicated to
RGB (Inception) or used as is (fmnist). A new network is one registration: `FEATURES.register("mine", build)`
with `build(device, inception_path, data_root, log) -> FeatureNet`; `--features mine` and
`robustok.evaluate_samples(..., features="mine")` then use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from robustok.errors import ConfigError
from robustok.registry import Registry


class FeatureNet:
    """What FID, IS, precision/recall, pFID and the gFID proxy use of a feature network."""

    name: str = ""
    dim: int = 0
    has_logits: bool = False  # `logits` classifies (Inception Score, class accuracy)
    source: str | Path = ""  # where the weights come from, e.g. their file ("": nothing to say)
    accuracy: Optional[float] = None  # a classifier's test accuracy, if measured

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features (B, dim) float (CPU) of uint8 images (B, C, H, W)."""
        raise NotImplementedError

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, classes) of uint8 images; only with `has_logits`."""
        raise ConfigError(f"feature network {self.name!r} has no logits")

    def forward_all(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of one batch; networks that get both from one pass override it."""
        return self(images), self.logits(images)

    def describe(self) -> str:
        """One line naming the features (with their source and the classifier's accuracy)."""
        extra = f", test accuracy {self.accuracy:.4f}" if self.accuracy is not None else ""
        return f"features: {self.name}" + (f" ({self.source}{extra})" if self.source else "")


class RandomFeatures(FeatureNet):
    """A fixed random conv net (seeded); for smoke tests and plumbing only: its FIDs mean little."""

    name = "random"
    has_logits = True

    def __init__(self, dim: int = 64, seed: int = 0, device: str | torch.device = "cpu"):
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.device = torch.device(device)
        self.w1 = (torch.randn(16, 3, 3, 3, generator=g) / 5).to(self.device)
        self.w2 = (torch.randn(dim, 16, 3, 3, generator=g) / 12).to(self.device)
        self.head = (torch.randn(10, dim, generator=g) / dim**0.5).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device).float() / 127.5 - 1
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        x = F.relu(F.conv2d(x, self.w1, stride=2, padding=1))
        x = F.relu(F.conv2d(x, self.w2, stride=2, padding=1))
        return x.mean((2, 3)).cpu()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self(images) @ self.head.T.cpu()


FeatureBuilder = Callable[..., FeatureNet]  # (device, inception_path, data_root, log) -> FeatureNet


def _inception(device, inception_path, data_root, log) -> FeatureNet:
    from robustok.metrics.inception import InceptionFeatures

    return InceptionFeatures(inception_path, device=device)


def _fmnist(device, inception_path, data_root, log) -> FeatureNet:
    from robustok.metrics.domain import FmnistFeatures

    return FmnistFeatures(device=device, root=data_root, log=log)


FEATURES: Registry[FeatureBuilder] = Registry("feature network", "--features")
FEATURES.register("inception", _inception)
FEATURES.register("fmnist", _fmnist)
FEATURES.register("random", lambda device, inception_path, data_root, log: RandomFeatures(device=device))
NAMES = tuple(FEATURES.names())  # the built-in names (FEATURES.names() also lists registered ones)


def get_feature_net(
    name: str,
    device: str | torch.device = "cpu",
    inception_path: str | None = None,
    data_root: str | None = None,
    log=print,
) -> FeatureNet:
    """Build the feature network registered as `name` (inception | fmnist | random | a registered one)."""
    net = FEATURES.lookup(name)(device, inception_path, data_root, log)
    if not isinstance(net, FeatureNet):
        raise ConfigError(
            f"--features {name}: the registered builder returned a {type(net).__name__}, not a "
            "robustok.metrics.features.FeatureNet subclass"
        )
    return net


def describe(net: FeatureNet) -> str:
    """One line naming the features (and the domain net's accuracy)."""
    return net.describe()
