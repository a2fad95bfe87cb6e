"""Distributed evaluation helpers: each rank handles a strided shard; results are gathered once."""

from __future__ import annotations

import numpy as np
import torch

from robustok.metrics.frechet import RunningStats


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_objects(obj) -> list:
    """All ranks' `obj` (a list with one entry when not distributed)."""
    _, world = rank_world()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def gather_stats(stats: RunningStats) -> RunningStats:
    """Merge every rank's running statistics into one (identical on all ranks)."""
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
