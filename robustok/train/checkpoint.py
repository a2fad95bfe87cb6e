"""Training checkpoints: `<run>/checkpoints/step-NNNNNNN/` with safetensors weights and a weights-only trainer state.

A checkpoint is written under a temporary name; a completion marker (`complete.json`, listing its files) is
written last and the folder is then renamed into place, so only complete checkpoints are ever listed. Pruning
removes an old checkpoint's marker first and renames it away before deleting it, so a crash while pruning never
leaves a half-deleted one listed.
A checkpoint is saved only when every weight and optimiser-state tensor is finite.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from robustok.errors import CheckpointError, WriteError
from robustok.hub import (
    atomic_write_bytes,
    disk_errno,
    load_state_checked,
    load_tensors,
    remove_stale_temps,
    save_tensors,
    write_error,
)
from robustok.train.faults import fault_point

PATTERN = re.compile(r"^step-(\d{7,})$")
MARKER = "complete.json"
RANKS = "ranks.safetensors"  # under torchrun: the buffers of ranks 1.. (rank 0's are in the module files)


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def is_complete(path: Path) -> bool:
    """True when `path` has its completion marker and every file the marker lists.

    Checkpoints of robustok versions before the marker (no `complete.json`) count when they hold `trainer.pt`,
    so older runs stay resumable; this version never leaves a `step-*` folder without its marker.
    """
    if not (path / MARKER).exists():
        return (path / "trainer.pt").is_file() and (path / "model.safetensors").is_file()  # pre-marker layout
    try:
        files = json.loads((path / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((path / f).is_file() for f in files)


def checkpoint_step(path: Path) -> int:
    """The step of a checkpoint folder named `step-NNNNNNN`."""
    m = PATTERN.match(path.name)
    if m is None:
        raise CheckpointError(f"{path}: not a checkpoint folder (expected a name like step-0000100)")
    return int(m.group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and PATTERN.match(p.name) and is_complete(p)]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def non_finite(tree: Any, prefix: str = "") -> Optional[str]:
    """The name of the first tensor in a nested dict/list/tensor structure that has NaN or inf (None if none)."""
    if torch.is_tensor(tree):
        return None if not tree.is_floating_point() or bool(torch.isfinite(tree).all()) else prefix or "tensor"
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for k, v in items:
        bad = non_finite(v, f"{prefix}.{k}" if prefix else str(k))
        if bad:
            return bad
    return None


def last_finite_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The newest complete checkpoint whose weights are all finite (checked by reading them)."""
    for ckpt in reversed(list_checkpoints(run_dir)):
        try:
            if all(non_finite(load_tensors(f)) is None for f in ckpt.glob("*.safetensors")):
                return ckpt
        except CheckpointError:
            continue
    return None


def _remove(path: Path) -> None:
    """Delete a checkpoint folder: its marker first, then an atomic rename out of the `step-*` names, so a
    crash midway never leaves a half-deleted checkpoint listed."""
    (path / MARKER).unlink(missing_ok=True)
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    path.rename(trash)
    fault_point("ckpt-prune")
    shutil.rmtree(trash, ignore_errors=True)


def clean_stale(run_dir: str | Path) -> None:
    """Remove leftovers of crashed saves: temp folders, incomplete `step-*` folders, temp files of the run."""
    remove_stale_temps(run_dir)
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.is_dir() and (
            p.name.startswith((".tmp-step-", ".trash-step-")) or (PATTERN.match(p.name) and not is_complete(p))
        ):
            _remove(p)


def rank_buffers(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """This process's persistent buffers of `modules` as `<module>/<buffer>` -> CPU tensor. Under `torchrun` some
    differ between ranks (e.g. the discriminator's LeCam EMAs of each rank's own logits); a checkpoint keeps
    every rank's so that a resumed run continues each rank exactly."""
    out = {}
    for name, module in modules.items():
        names = {n for n, _ in module.named_buffers()}
        out.update({f"{name}/{k}": v.detach().cpu().clone() for k, v in module.state_dict().items() if k in names})
    return out


def load_rank_buffers(path: str | Path, modules: dict[str, nn.Module], rank: int) -> bool:
    """Load rank `rank`'s buffers from checkpoint `path`'s `ranks.safetensors`; False if it holds none for it
    (a 1-process checkpoint, another number of processes, or a checkpoint of an earlier version)."""
    f = Path(path) / RANKS
    if not f.is_file():
        return False
    mine = {k.split("/", 1)[1]: v for k, v in load_tensors(f).items() if k.split("/", 1)[0] == str(rank)}
    if not mine:
        return False
    for name, module in modules.items():
        own = dict(module.named_buffers())
        with torch.no_grad():
            for k, v in mine.items():
                mod, _, buf = k.partition("/")
                if mod == name and buf in own:
                    own[buf].copy_(v)
    return True


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    modules: dict[str, nn.Module],
    trainer_state: dict,
    keep: int = 2,
    ranks: Optional[list[dict[str, torch.Tensor]]] = None,
) -> Path:
    """Write modules (safetensors) + `trainer.pt` (optimizer/scheduler/RNG state) atomically; prune old ones.
    `ranks` (under `torchrun`): every rank's `rank_buffers`, kept for ranks 1.. in `ranks.safetensors`.

    Refuses (CheckpointError) to save non-finite weights or optimiser state: a checkpoint is always resumable.
    """
    states = {name: module.state_dict() for name, module in modules.items()}
    if ranks and any(ranks[1:]):
        states[RANKS.split(".")[0]] = {
            f"{r}/{k}": v for r, buffers in enumerate(ranks) if r > 0 for k, v in buffers.items()
        }
    bad = non_finite(states) or non_finite(trainer_state)
    if bad:
        raise CheckpointError(f"not saving the step-{step} checkpoint: {bad} is not finite")
    root = checkpoint_dir(run_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    buf = io.BytesIO()
    torch.save(trainer_state, buf)
    need = sum(t.numel() * t.element_size() for s in states.values() for t in s.values()) + buf.tell()
    try:
        tmp.mkdir(parents=True)
        files = []
        for name, state in states.items():
            save_tensors(state, tmp / f"{name}.safetensors")
            files.append(f"{name}.safetensors")
            fault_point("ckpt-file", tmp / f"{name}.safetensors")
        atomic_write_bytes(tmp / "trainer.pt", buf.getvalue())
        files.append("trainer.pt")
        fault_point("ckpt-file", tmp / "trainer.pt")
        atomic_write_bytes(tmp / MARKER, json.dumps({"step": step, "files": files}).encode())
    except (OSError, WriteError) as err:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoints stay as they were
        code = err.code if isinstance(err, WriteError) else disk_errno(err)
        if code is not None:
            raise write_error(code, final, need) from None  # names the checkpoint and its whole size
        raise
    if final.exists():
        _remove(final)
    tmp.rename(final)
    fault_point("ckpt-rename")
    prune(run_dir, keep)
    return final


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints (keep <= 0: keep all)."""
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        _remove(old)


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
