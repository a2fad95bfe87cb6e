"""torch.distributed set-up for `torchrun` (NCCL on GPU, gloo on CPU) and small collective helpers."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from robustok.errors import RobustokError

T = TypeVar("T")


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> DistInfo:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1); pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise RobustokError(
                f"LOCAL_RANK {local}, but only {torch.cuda.device_count()} CUDA device(s) are visible: "
                "launch at most one process per GPU, or hide the GPUs (CUDA_VISIBLE_DEVICES=) "
                "to run the processes on the CPU with gloo"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Destroy the group while the interpreter is whole, on every exit path: left to interpreter
        # finalisation, gloo's worker threads abort the process ("terminate called without an active exception").
        atexit.register(cleanup)
    return DistInfo(rank, world, local, device)


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def cleanup() -> None:
    if initialized():
        dist.destroy_process_group()


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks (identity without a process group)."""
    if not initialized() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def average_gradients(params) -> None:
    """All-reduce-average the gradients of `params` (for modules trained outside DDP, e.g. discriminators)."""
    if not initialized():
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def barrier() -> None:
    if initialized():
        dist.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (picklable; identity without a process group)."""
    if not initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(obj: object) -> list:
    """Every rank's picklable `obj`, in rank order, on rank 0 (other ranks: []; without a process group: [obj])."""
    if not initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)  # all_gather: supported by every backend (small objects only)
    return out if dist.get_rank() == 0 else []
