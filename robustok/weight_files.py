"""Reading weight files that robustok did not write (original releases, pretrained backbones), safely.

`read_checkpoint` opens a file as safetensors, or with `torch.load(weights_only=True)` allowing
`argparse.Namespace` as the only extra class (the LlamaGen/RobusTok training scripts store their arguments next to
the weights), and picks the state dict inside a training checkpoint. Errors name the file. Used by the adapters
(`robustok.adapters`) and by core code that loads pretrained backbones (DINOv2 in `robustok.tokenizer.vit`).
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from robustok.errors import CheckpointError
from robustok.hf_hub import resolve_weights
from robustok.hub import load_tensors


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
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (invalid pickle data: {msg.splitlines()[0][:200]})"
            ) from None
        m = (
            re.search(r"Unsupported global: GLOBAL \S+", msg)
            or re.search(r"WeightsUnpickler error: [^\n.]+", msg)
            or re.search(r"unsupported GLOBAL \S+", msg)
        )
        detail = m.group(0) if m else msg.splitlines()[0][:200]
        raise CheckpointError(
            f"{path}: refused to load: the file needs full unpickling ({detail}); only weights-only "
            "checkpoints (tensors, plain containers, argparse.Namespace) or safetensors files are accepted. "
            "If you trust the file, re-save just its state dict as safetensors"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError, ImportError, KeyError) as err:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None


def read_checkpoint(
    path: str | Path, entry: Optional[str] = None, entries: tuple[str, ...] = ("model",)
) -> tuple[dict[str, Tensor], str]:
    """Read a state dict from an original weight file. Returns `(state, description of where it came from)`.

    `.safetensors` files are read directly. Pickled files (`.pt`, `.bin`, `.pth`, ...) go through
    `torch.load(weights_only=True)`; if the object is a dict of dicts, `entry` (or the first of `entries`
    present) selects the state dict, e.g. "ema" or "model" of a training checkpoint. `path` may be a Hub
    reference `hf://<org>/<repo>/<file>` (`robustok.hf_hub`).
    """
    path = resolve_weights(path)
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
            raise CheckpointError(
                f"{path}: has no state dict under {entry!r} (top-level keys: {sorted(map(str, obj))[:8]})"
            )
        obj, where = obj[entry], f"{path}[{entry!r}]"
    elif not all(isinstance(v, Tensor) for v in obj.values()):  # a training checkpoint, not a bare state dict
        pick = next((e for e in entries if isinstance(obj.get(e), dict)), None)
        if pick is None:
            raise CheckpointError(
                f"{path}: a checkpoint dict without any of the entries {list(entries)} "
                f"(top-level keys: {sorted(map(str, obj))[:8]})"
            )
        obj, where = obj[pick], f"{path}[{pick!r}]"
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad or not obj:
        raise CheckpointError(
            f"{where}: not a state dict of tensors (e.g. {bad[:3]!r})" if bad else f"{where}: empty state dict"
        )
    return dict(obj), where
