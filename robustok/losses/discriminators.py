"""Discriminators by name: `loss.disc_kind` selects an entry of `DISCRIMINATORS`.

Each kind turns the loss config into a JSON-able *spec* and builds the network from a spec. `Discriminator`
wraps any of them with the LeCam EMA state and DiffAugment (`loss.diffaug`), which is applied to every image the
network sees: real and fake in the discriminator step and the fake in the generator step. It is a
`robustok.hub.Pretrained` model whose config is the spec: main training saves it beside the tokenizer in
`<tokenizer>/discriminator/` (config.json + model.safetensors), so post-training rebuilds the same network.
Tokenizers of earlier versions hold `discriminator.json` + `discriminator.safetensors`; both layouts load.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from torch import Tensor, nn

from robustok.errors import CheckpointError, ConfigError
from robustok.hub import CONFIG_NAME, WEIGHTS_NAME, Pretrained, load_state_checked, load_tensors
from robustok.losses.diffaug import DiffAugment
from robustok.losses.gan import LeCam, PatchDiscriminator


@dataclass(frozen=True)
class DiscriminatorKind:
    spec: Callable[[Any, int], dict]  # (LossConfig, image channels) -> spec
    build: Callable[[dict], nn.Module]  # spec -> network (B, C, H, W) -> logits


def _patch_spec(lc: Any, channels: int) -> dict:
    return {"channels": channels, "width": lc.disc_width, "layers": lc.disc_layers}


def _patch_build(spec: dict) -> nn.Module:
    return PatchDiscriminator(spec["channels"], spec["width"], spec["layers"])


def _dino_spec(lc: Any, channels: int) -> dict:
    return {
        "checkpoint": lc.dino_disc_checkpoint or "",
        "image_size": lc.dino_disc_image_size,
        "taps": list(lc.dino_disc_taps),
        "virtual_bs": lc.dino_disc_virtual_bs,
    }


def _dino_build(spec: dict) -> nn.Module:
    from robustok.losses.dino_disc import build_dino_discriminator

    return build_dino_discriminator(spec["checkpoint"], spec["image_size"], spec["taps"], spec["virtual_bs"])


DISCRIMINATORS: dict[str, DiscriminatorKind] = {
    "patch": DiscriminatorKind(_patch_spec, _patch_build),
    "dino": DiscriminatorKind(_dino_spec, _dino_build),
}


class Discriminator(Pretrained):
    """A discriminator network + its LeCam EMA state (saved together) + DiffAugment on its inputs.

    `config` is the spec (a dict with `kind`, `diffaug` and the kind's settings); `spec` is the same dict.
    """

    config_class = dict

    def __init__(self, config: dict):
        super().__init__(dict(config))
        self.net = _kind(self.config.get("kind", "patch")).build(self.config)
        self.lecam = LeCam()
        self.augment = DiffAugment(self.config.get("diffaug", ""))

    @property
    def spec(self) -> dict:
        return self.config

    def config_dict(self) -> dict:
        return dict(self.config)

    @classmethod
    def read_config(cls, directory: str | Path) -> dict:
        from robustok.hub import read_model_meta

        meta = read_model_meta(directory, "discriminator")
        if meta.get("class") != cls.__name__ or not isinstance(meta.get("config"), dict):
            raise CheckpointError(
                f"{Path(directory) / CONFIG_NAME}: holds a {meta.get('class')!r}, not a robustok Discriminator"
            )
        return meta["config"]

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
    return Discriminator({"kind": spec.get("kind", "patch"), **spec})


SUBDIR = "discriminator"  # <tokenizer>/discriminator/
OLD_FILES = ("discriminator.json", "discriminator.safetensors")  # earlier versions: beside the tokenizer


def has_discriminator(tokenizer_dir: str | Path) -> bool:
    """True when a discriminator was saved with the tokenizer in `tokenizer_dir` (either layout)."""
    d = Path(tokenizer_dir)
    return (d / SUBDIR / WEIGHTS_NAME).is_file() or (d / OLD_FILES[1]).is_file()


def save_discriminator(disc: Discriminator, tokenizer_dir: str | Path) -> Path:
    """Save `disc` beside the tokenizer in `tokenizer_dir` (as `<tokenizer_dir>/discriminator/`)."""
    return disc.save_pretrained(Path(tokenizer_dir) / SUBDIR)


def copy_discriminator(src_tokenizer: str | Path, dest_tokenizer: str | Path) -> bool:
    """Copy the discriminator saved with one tokenizer to another tokenizer directory; False if there is none."""
    src, dest = Path(src_tokenizer), Path(dest_tokenizer)
    if (src / SUBDIR / WEIGHTS_NAME).is_file():
        shutil.copytree(src / SUBDIR, dest / SUBDIR, dirs_exist_ok=True)
        return True
    found = [f for f in OLD_FILES if (src / f).is_file()]
    for f in found:
        shutil.copy(src / f, dest / f)
    return bool(found)


def load_discriminator(tokenizer_dir: str | Path, backbone: Optional[str] = None) -> Discriminator:
    """The discriminator saved beside a tokenizer (either layout), errors naming the file.

    `backbone`: a new path for a DINO discriminator's frozen backbone file (it may have moved since training).
    """
    d = Path(tokenizer_dir)
    if (d / SUBDIR / CONFIG_NAME).is_file():
        meta_path, weights = d / SUBDIR / CONFIG_NAME, d / SUBDIR / WEIGHTS_NAME
        spec = Discriminator.read_config(d / SUBDIR)
    else:
        meta_path, weights = d / OLD_FILES[0], d / OLD_FILES[1]
        spec = _old_spec(meta_path, weights)
    try:
        if spec.get("kind") == "dino" and backbone:
            spec = {**spec, "checkpoint": backbone}
        disc = build_discriminator(spec)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{meta_path}: invalid discriminator description ({type(err).__name__}: {err}); "
            "expected the description written with the tokenizer (kind and its settings)"
        ) from None
    load_state_checked(disc, load_tensors(weights), str(weights))
    return disc


def _old_spec(meta_path: Path, weights: Path) -> dict:
    """The spec in an earlier version's `discriminator.json`."""
    if not meta_path.is_file():
        raise CheckpointError(
            f"{meta_path}: not found, but {weights.name} is there (both are written together); "
            "copy it too or set reuse_discriminator=false"
        )
    try:
        spec = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{meta_path}: invalid discriminator description ({type(err).__name__}: {err}); "
            "expected the JSON written with the tokenizer (kind and its settings)"
        ) from None
    if not isinstance(spec, dict):
        raise CheckpointError(
            f"{meta_path}: invalid discriminator description (not a JSON object); expected the "
            "JSON written with the tokenizer (kind and its settings)"
        )
    return spec
