"""torch.distributed in one place: the process group for `torchrun` (NCCL on GPU, gloo on CPU), this process's rank,
and the few collectives the library uses (each the identity without a process group). Outputs that several ranks
write to disk are `robustok.distributed_outputs`."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from robustok.errors import RobustokError

if TYPE_CHECKING:
    from robustok.metrics.frechet import RunningStats

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
    parts = gather_objects(obj)
    return parts if rank_world()[0] == 0 else []


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj) -> list:
    """All ranks' `obj` (a list with one entry when not distributed)."""
    _, world = rank_world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)  # all_gather: supported by every backend (small objects only)
    return out


def gather_stats(stats: RunningStats) -> RunningStats:
    """Merge every rank's running statistics into one (identical on all ranks)."""
    from robustok.metrics.frechet import RunningStats

    parts = gather_objects((stats.n, stats.mean, stats.scatter))
    merged = RunningStats()
    for n, mean, scatter in parts:
        if n:
            merged.merge_parts(n, mean, scatter)
    return merged


def gather_array(x: np.ndarray | None) -> np.ndarray | None:
    """Concatenate per-rank arrays (rank order); None stays None."""
    parts = [p for p in gather_objects(x) if p is not None]
    return np.concatenate(parts) if parts else None


def gather_strided(x: np.ndarray | None) -> np.ndarray | None:
    """Per-rank arrays of strided shares (rank r holds items r, r + world, ...) put back in item order; shares
    of other sizes (e.g. streams split by shard) are concatenated in rank order. None (no items) counts as empty."""
    parts = gather_objects(x)
    world = len(parts)
    present = [p for p in parts if p is not None]
    if world == 1 or not present:
        return x
    n = sum(len(p) for p in present)
    if any((0 if p is None else len(p)) != len(range(r, n, world)) for r, p in enumerate(parts)):
        return np.concatenate(present)
    out = np.empty((n, *present[0].shape[1:]), dtype=np.result_type(*present))
    for r, p in enumerate(parts):
        if p is not None:
            out[r::world] = p
    return out


def sum_all(values: dict[str, float]) -> dict[str, float]:
    """Sum a dict of numbers over ranks."""
    total: dict[str, float] = {}
    for part in gather_objects(values):
        for k, v in part.items():
            total[k] = total.get(k, 0.0) + v
    return total
