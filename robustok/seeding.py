"""Every random stream's seed, derived in one place from a run's seed.

The values are part of the results: the committed studies and the demo's reference were made with these exact
formulas, so each is kept as it was written (they differ in their multipliers for that reason). Streams are named
so that two of them never share a seed by accident; `tests/test_seeding.py` checks they do not collide.
"""

from __future__ import annotations

import torch

STRIDE = 1_000_003  # a prime: runs whose seeds differ by one get streams far apart
MAX_SEED = 2**63 - 1
PAIR_STREAMS = {"sample": 0, "mask": 500_000_009, "held_out": 900_000_011}  # offsets of post-train-data's streams


def step_seed(seed: int, step: int, rank: int) -> int:
    """One training step on one rank: resuming at step s replays exactly the same randomness."""
    return (seed * STRIDE + step * 4099 + rank * 7919) % MAX_SEED


def data_stream_seed(seed: int, start_step: int) -> int:
    """A streaming (WebDataset) input's shuffle seed for a run (re)started at `start_step`."""
    return seed * STRIDE + start_step


def batch_seed(seed: int, batch: int) -> int:
    """Sampling batch `batch` (batch 0: `seed` itself), independent of the number of ranks."""
    return seed + STRIDE * batch


def pair_batch_seed(seed: int, batch: int, stream: str) -> int:
    """post-train-data's batch `batch` in one of its streams: `sample`, `mask` (teacher forcing) or `held_out`."""
    return seed * STRIDE + PAIR_STREAMS[stream] + batch


def pfid_cell_seed(seed: int, cell: int, rank: int) -> int:
    """pFID's perturbation in grid cell `cell` on one rank."""
    return int(seed) * STRIDE + cell * 7_919 + rank * 104_729


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A `torch.Generator` on `device` seeded with `seed`."""
    return torch.Generator(device=device).manual_seed(seed)
