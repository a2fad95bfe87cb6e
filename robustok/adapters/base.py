"""Shared machinery of the off-the-shelf tokenizer adapters.

`ExternalTokenizer` implements robustok's tokenizer protocol (the one of `robustok.tokenizer.model.Tokenizer`:
encode/lookup/decode, codebook, latents, training forward, frozen parts) on top of three per-family hooks:
`_pre_quant(x)` (images in [-1, 1] -> raw pre-quantisation latents), `decode_codes(z)` (code vectors ->
images in [-1, 1]) and the `grid_size` property. `ExternalVQ` is a plain nearest-neighbour codebook without
buffers or dead-code restarts, so a frozen codebook stays bit-identical in post-training.

`read_checkpoint` opens an original weight file safely (safetensors, or `torch.load(weights_only=True)` with
`argparse.Namespace` as the only extra allowed class, because the LlamaGen/RobusTok training scripts store
their argparse arguments next to the weights) and `convert_state` maps its keys onto an adapter with strict
checks.
"""
from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

from robustok.errors import CheckpointError, ConfigError
from robustok.hub import load_state_checked, load_tensors
from robustok.tokenizer.base import TokenizerBase
from robustok.tokenizer.quantizer import VectorQuantizer


# --------------------------------------------------------------------------------------------------------
# checkpoint files
# --------------------------------------------------------------------------------------------------------
def _torch_load_safe(path: Path) -> Any:
    """`torch.load(weights_only=True)`, allowing `argparse.Namespace` (training args stored beside weights)."""
    ctx = getattr(torch.serialization, "safe_globals", None)
    try:
        if ctx is not None:
            with ctx([argparse.Namespace]):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = str(err)
        if "Unsupported operand" in msg or "WeightsUnpickler" not in msg and "unsupported global" not in msg.lower():
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (invalid pickle data: "
                                  f"{msg.splitlines()[0][:200]})") from None
        m = (re.search(r"Unsupported global: GLOBAL \S+", msg) or re.search(r"WeightsUnpickler error: [^\n.]+", msg)
             or re.search(r"unsupported GLOBAL \S+", msg))
        detail = m.group(0) if m else msg.splitlines()[0][:200]
        raise CheckpointError(
            f"{path}: refused to load: the file needs full unpickling ({detail}); only weights-only "
            "checkpoints (tensors, plain containers, argparse.Namespace) or safetensors files are accepted. "
            "If you trust the file, re-save just its state dict as safetensors") from None
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError, ImportError, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None


def read_checkpoint(path: str | Path, entry: Optional[str] = None,
                    entries: tuple[str, ...] = ("model",)) -> tuple[dict[str, Tensor], str]:
    """Read a state dict from an original weight file. Returns `(state, description of where it came from)`.

    `.safetensors` files are read directly. Pickled files (`.pt`, `.bin`, `.pth`, ...) go through
    `torch.load(weights_only=True)`; if the object is a dict of dicts, `entry` (or the first of `entries`
    present) selects the state dict, e.g. "ema" or "model" of a training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        obj: Any = load_tensors(path)
    else:
        obj = _torch_load_safe(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict or checkpoint dict")
    where = str(path)
    if entry is not None:
        if entry not in obj or not isinstance(obj[entry], dict):
            raise CheckpointError(f"{path}: has no state dict under {entry!r} (top-level keys: "
                                  f"{sorted(map(str, obj))[:8]})")
        obj, where = obj[entry], f"{path}[{entry!r}]"
    elif not all(isinstance(v, Tensor) for v in obj.values()):   # a training checkpoint, not a bare state dict
        pick = next((e for e in entries if isinstance(obj.get(e), dict)), None)
        if pick is None:
            raise CheckpointError(f"{path}: a checkpoint dict without any of the entries {list(entries)} "
                                  f"(top-level keys: {sorted(map(str, obj))[:8]})")
        obj, where = obj[pick], f"{path}[{pick!r}]"
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad or not obj:
        raise CheckpointError(f"{where}: not a state dict of tensors (e.g. {bad[:3]!r})" if bad
                              else f"{where}: empty state dict")
    return dict(obj), where


def check_kind(state: dict[str, Tensor], source: str, family: str, signature: tuple[str, ...]) -> None:
    """Raise if `state` lacks a key that every original checkpoint of `family` has."""
    missing = [s for s in signature if s not in state]
    if missing:
        sample = sorted(state)[:4]
        raise CheckpointError(f"{source}: not a {family} checkpoint (no {missing[0]!r}; it has keys like {sample})")


def convert_state(module: nn.Module, state: dict[str, Tensor], source: str, *,
                  rename: tuple[tuple[str, str], ...] = (),
                  ignore_prefixes: tuple[str, ...] = (), aux: Optional[dict[str, Optional[Tensor]]] = None,
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
                k = new + k[len(old):]
                break
        if k in out:
            raise CheckpointError(f"{source}: key {k!r} occurs twice after renaming (old and new key names mixed?)")
        out[k] = v
    for k, expect in (aux or {}).items():
        if k in out:
            v = out.pop(k)
            if expect is not None and (v.shape != expect.shape or not torch.equal(v.to(expect.dtype), expect)):
                raise CheckpointError(f"{source}: buffer {k!r} {tuple(v.shape)} differs from the layout this "
                                      f"adapter assumes {tuple(expect.shape)}: is the config (token counts) right?")
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
    signature: ClassVar[tuple[str, ...]] = ()      # original key names every checkpoint of the family has
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
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)
