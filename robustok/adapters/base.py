"""Shared machinery of the off-the-shelf tokenizer adapters.

`ExternalTokenizer` implements robustok's tokenizer protocol (the one of `robustok.tokenizer.model.Tokenizer`:
encode/lookup/decode, codebook, latents, training forward, frozen parts) on top of three per-family hooks:
`_pre_quant(x)` (images in [-1, 1] -> raw pre-quantisation latents), `decode_codes(z)` (code vectors ->
images in [-1, 1]) and the `grid_size` property. `ExternalVQ` is a plain nearest-neighbour codebook without
buffers or dead-code restarts, so a frozen codebook stays bit-identical in post-training.

`read_checkpoint` (from `robustok.weight_files`, re-exported here) opens an original weight file safely and
`convert_state` maps its keys onto an adapter with strict checks.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

from robustok.errors import CheckpointError, ConfigError
from robustok.hub import load_state_checked
from robustok.tokenizer.base import TokenizerBase
from robustok.tokenizer.quantizer import VectorQuantizer
from robustok.weight_files import read_checkpoint  # noqa: F401 - re-exported for the adapters


# --------------------------------------------------------------------------------------------------------
# checkpoint files
# --------------------------------------------------------------------------------------------------------
def check_kind(state: dict[str, Tensor], source: str, family: str, signature: tuple[str, ...]) -> None:
    """Raise if `state` lacks a key that every original checkpoint of `family` has."""
    missing = [s for s in signature if s not in state]
    if missing:
        sample = sorted(state)[:4]
        raise CheckpointError(f"{source}: not a {family} checkpoint (no {missing[0]!r}; it has keys like {sample})")


def convert_state(
    module: nn.Module,
    state: dict[str, Tensor],
    source: str,
    *,
    rename: tuple[tuple[str, str], ...] = (),
    ignore_prefixes: tuple[str, ...] = (),
    aux: Optional[dict[str, Optional[Tensor]]] = None,
) -> list[str]:
    """Map an original state dict onto `module` and load it strictly. Returns the ignored keys.

    - `rename`: (old prefix, new prefix) pairs, applied in order to the first match.
    - `ignore_prefixes`: training-only parts that inference does not use (dropped, reported back).
    - `aux`: auxiliary buffers of the original (usage counters, index buffers): key -> expected value (checked
      when not None) or None (any value); dropped when present, never required.
    Every other key must match the module's state dict exactly (names and shapes).
    """
    out: dict[str, Tensor] = {}
    ignored: list[str] = []
    for k, v in state.items():
        if any(k.startswith(p) for p in ignore_prefixes):
            ignored.append(k)
            continue
        for old, new in rename:
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        if k in out:
            raise CheckpointError(f"{source}: key {k!r} occurs twice after renaming (old and new key names mixed?)")
        out[k] = v
    for k, expect in (aux or {}).items():
        if k in out:
            v = out.pop(k)
            if expect is not None and (v.shape != expect.shape or not torch.equal(v.to(expect.dtype), expect)):
                raise CheckpointError(
                    f"{source}: buffer {k!r} {tuple(v.shape)} differs from the layout this "
                    f"adapter assumes {tuple(expect.shape)}: is the config (token counts) right?"
                )
            ignored.append(k)
    load_state_checked(module, out, source)
    return ignored


# --------------------------------------------------------------------------------------------------------
# quantiser
# --------------------------------------------------------------------------------------------------------
def ExternalVQ(codebook_size: int, dim: int, l2_norm: bool, commit_weight: float = 0.25) -> VectorQuantizer:
    """A plain K x d codebook for a released model: no usage buffer and no dead-code restarts, so its only
    state is `embedding.weight` and a frozen codebook stays bit-identical in post-training."""
    return VectorQuantizer(codebook_size, dim, l2_norm, commit_weight, track_usage=False)


# --------------------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------------------
class ExternalTokenizer(TokenizerBase):
    """Base of the adapters: robustok's tokenizer protocol (`TokenizerBase`) for a released model.

    Subclasses set `family` (a readable name), `signature`, `frozen_prefixes`, build `self.quantizer`
    (`ExternalVQ`, or None for a continuous model) and implement the `TokenizerBase` hooks. Images are float in
    [-1, 1], (B, 3, H, W).
    """

    family: ClassVar[str] = "external"
    signature: ClassVar[tuple[str, ...]] = ()  # original key names every checkpoint of the family has
    frozen_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def infer_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        """Config fields that can be read off the tensor shapes of an original state dict."""
        return {}

    def load_original(self, state: dict[str, Tensor], source: str) -> list[str]:
        """Load an original (upstream-named) state dict strictly; returns the ignored training-only keys."""
        raise NotImplementedError

    def frozen_part_names(self) -> list[str]:
        """State-dict prefixes of the encoding side (frozen in post-training)."""
        return list(self.frozen_prefixes)


def check_channels(config: Any, name: str) -> None:
    if config.channels != 3:
        raise ConfigError(f"{name}: channels must be 3 (RGB), got {config.channels}")
    if config.image_size < 1:
        raise ConfigError(f"{name}: image_size must be positive, got {config.image_size}")


def level_indices(state: dict[str, Tensor], prefix: str) -> list[int]:
    """Sorted integer indices i of keys `prefix{i}.…` in `state`."""
    found = set()
    for k in state:
        if k.startswith(prefix):
            head = k[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)
