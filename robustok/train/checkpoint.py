"""Training checkpoints: `<run>/checkpoints/step-NNNNNNN/` with safetensors weights and a weights-only trainer state.

A checkpoint directory is written under a temporary name and renamed when complete, so a crash never leaves a
half-written checkpoint where `--resume` would find it, and older checkpoints are pruned only after that.
"""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from robustok.errors import CheckpointError
from robustok.hub import atomic_write_bytes, load_state_checked, load_tensors, save_tensors

PATTERN = re.compile(r"^step-(\d{7,})$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and PATTERN.match(p.name) and (p / "trainer.pt").is_file()]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: str | Path, step: int, modules: dict[str, nn.Module], trainer_state: dict,
                    keep: int = 2) -> Path:
    """Write modules (safetensors) + `trainer.pt` (optimizer/scheduler/RNG state) atomically; prune old ones."""
    root = checkpoint_dir(run_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, module in modules.items():
        save_tensors(module.state_dict(), tmp / f"{name}.safetensors")
    buf = io.BytesIO()
    torch.save(trainer_state, buf)
    atomic_write_bytes(tmp / "trainer.pt", buf.getvalue())
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, modules: dict[str, nn.Module]) -> dict:
    """Load module weights into `modules` and return the trainer state (loaded with weights_only=True)."""
    path = Path(path)
    for name, module in modules.items():
        f = path / f"{name}.safetensors"
        load_state_checked(module, load_tensors(f), str(f))
    try:
        return torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling problem is reported the same way
        raise CheckpointError(f"{path / 'trainer.pt'}: cannot load trainer state safely ({err})") from None
