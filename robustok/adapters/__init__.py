"""Off-the-shelf tokenizers in robustok's tokenizer interface, and the loader for any tokenizer directory.

- `load_external(kind, path, **config_overrides)` reads an ORIGINAL weight file (LlamaGen `vq_ds16_c2i.pt`,
  MaskGIT `maskgit-vqgan-imagenet-f16-256.bin`, RobusTok `main-train.pt`/`post-train.pt`, diffusers
  `diffusion_pytorch_model.safetensors`), maps it strictly onto the adapter and returns it in eval mode.
  Convert once with `load_external(...).save_pretrained(dir)`; afterwards the directory loads like any
  robustok model.
- importing this package registers every adapter class with `robustok.tokenizer.loading`, so
  `robustok.load_tokenizer(dir)` (re-exported here) and `Tokenizer.from_pretrained(dir)` load their directories.

Loading is safe: safetensors, or `torch.load(weights_only=True)` (plus `argparse.Namespace`, which the
LlamaGen/RobusTok training scripts store next to the weights). See docs/adapters.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch

from robustok.adapters.base import ExternalTokenizer, check_kind, read_checkpoint
from robustok.adapters.llamagen import LlamaGenVQ, LlamaGenVQConfig
from robustok.adapters.maskgit import MaskGITVQGAN, MaskGITVQGANConfig
from robustok.adapters.robustok_release import RobusTokRelease, RobusTokReleaseConfig
from robustok.adapters.sd_vae import SDVAE, SDVAEConfig
from robustok.errors import ConfigError
from robustok.registry import Registry
from robustok.tokenizer.loading import load_tokenizer, register_tokenizer_class, tokenizer_classes

__all__ = [
    "ADAPTERS",
    "ENTRIES",
    "load_external",
    "load_tokenizer",
    "tokenizer_classes",
    "ExternalTokenizer",
    "LlamaGenVQ",
    "LlamaGenVQConfig",
    "MaskGITVQGAN",
    "MaskGITVQGANConfig",
    "RobusTokRelease",
    "RobusTokReleaseConfig",
    "SDVAE",
    "SDVAEConfig",
]

ADAPTERS: Registry[type[ExternalTokenizer]] = Registry("tokenizer kind", "convert KIND")
for _name, _adapter in {
    "llamagen-vq16": LlamaGenVQ,
    "maskgit-vqgan": MaskGITVQGAN,
    "robustok-release": RobusTokRelease,
    "sd-vae": SDVAE,
}.items():
    ADAPTERS.register(_name, _adapter)

# which entry of a checkpoint dict holds the weights, in order of preference (raw state dicts need none)
ENTRIES: Registry[tuple[str, ...]] = Registry("checkpoint entries of tokenizer kind", "convert KIND")
for _name, _entries in {
    "llamagen-vq16": ("model", "ema", "state_dict"),
    "maskgit-vqgan": ("model", "state_dict"),
    "robustok-release": ("ema", "model"),
    "sd-vae": ("state_dict",),
}.items():
    ENTRIES.register(_name, _entries)


def load_external(
    kind: str,
    path: str | Path,
    weights: Optional[str] = None,
    map_location: str | torch.device = "cpu",
    **config_overrides: Any,
) -> ExternalTokenizer:
    """Load an original weight file of family `kind` (a key of `ADAPTERS`) into its adapter, in eval mode.

    `weights` picks the state dict inside a training checkpoint ("ema" or "model"; default: "ema" for the
    RobusTok release, "model" for LlamaGen). Config fields are read off the tensor shapes where possible;
    `config_overrides` (fields of the adapter's config dataclass, e.g. `image_size=512`) take precedence.
    Raises `CheckpointError` naming the file for wrong kinds, missing/unexpected keys, wrong shapes and
    files that would need full unpickling.
    """
    if kind not in ADAPTERS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; choose one of {sorted(ADAPTERS)}")
    cls = ADAPTERS[kind]
    state, source = read_checkpoint(path, weights, ENTRIES[kind])
    check_kind(state, source, cls.family, cls.signature)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(config_overrides) - fields)
    if unknown:
        raise ConfigError(f"{kind}: unknown config field(s) {unknown}; fields are {sorted(fields)}")
    cfg = {**cls.infer_config(state), **config_overrides}
    try:
        config = cls.config_class(**cfg)
    except TypeError as err:
        raise ConfigError(f"{kind}: invalid config {cfg}: {err}") from None
    model = cls(config)
    model.load_original(state, source)
    return model.to(map_location).eval()


for _cls in ADAPTERS.values():  # `robustok.load_tokenizer` finds the adapters through this registration
    register_tokenizer_class(_cls)
