"""Discriminators by name: `loss.disc_kind` selects an entry of `DISCRIMINATORS`.

Each kind turns the loss config into a JSON-able *spec* (written beside the tokenizer as `discriminator.json`,
so post-training rebuilds the same network) and builds the network from a spec. `Discriminator` wraps any of
them with the LeCam EMA state and DiffAugment (`loss.diffaug`), which is applied to every image the network
sees: real and fake in the discriminator step and the fake in the generator step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor, nn

from robustok.errors import ConfigError
from robustok.losses.diffaug import DiffAugment
from robustok.losses.gan import LeCam, PatchDiscriminator


@dataclass(frozen=True)
class DiscriminatorKind:
    spec: Callable[[Any, int], dict]       # (LossConfig, image channels) -> spec
    build: Callable[[dict], nn.Module]     # spec -> network (B, C, H, W) -> logits


def _patch_spec(lc: Any, channels: int) -> dict:
    return {"channels": channels, "width": lc.disc_width, "layers": lc.disc_layers}


def _patch_build(spec: dict) -> nn.Module:
    return PatchDiscriminator(spec["channels"], spec["width"], spec["layers"])


def _dino_spec(lc: Any, channels: int) -> dict:
    return {"checkpoint": lc.dino_disc_checkpoint or "", "image_size": lc.dino_disc_image_size,
            "taps": list(lc.dino_disc_taps), "virtual_bs": lc.dino_disc_virtual_bs}


def _dino_build(spec: dict) -> nn.Module:
    from robustok.losses.dino_disc import build_dino_discriminator
    return build_dino_discriminator(spec["checkpoint"], spec["image_size"], spec["taps"], spec["virtual_bs"])


DISCRIMINATORS: dict[str, DiscriminatorKind] = {
    "patch": DiscriminatorKind(_patch_spec, _patch_build),
    "dino": DiscriminatorKind(_dino_spec, _dino_build),
}


class Discriminator(nn.Module):
    """A discriminator network + its LeCam EMA state (checkpointed together) + DiffAugment on its inputs."""

    def __init__(self, net: nn.Module, diffaug: str = "", spec: dict | None = None):
        super().__init__()
        self.net = net
        self.lecam = LeCam()
        self.augment = DiffAugment(diffaug)
        self.spec = dict(spec or {})

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.augment(x))


def _kind(name: str) -> DiscriminatorKind:
    if name not in DISCRIMINATORS:
        raise ConfigError(f"loss.disc_kind: unknown discriminator {name!r}; choose from {sorted(DISCRIMINATORS)}")
    return DISCRIMINATORS[name]


def discriminator_spec(lc: Any, channels: int) -> dict:
    """The spec of `lc.disc_kind` for images with `channels` channels (includes `kind` and `diffaug`)."""
    return {"kind": lc.disc_kind, "diffaug": lc.diffaug, **_kind(lc.disc_kind).spec(lc, channels)}


def build_discriminator(spec: dict) -> Discriminator:
    """A `Discriminator` from a spec (a spec without `kind`, as older tokenizers saved, is a PatchGAN)."""
    kind = spec.get("kind", "patch")
    return Discriminator(_kind(kind).build(spec), spec.get("diffaug", ""), {"kind": kind, **spec})
