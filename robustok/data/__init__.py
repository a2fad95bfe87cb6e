"""Data loading used by every stage: one spec string -> dataset -> deterministic, per-rank batches."""

from __future__ import annotations

from typing import Iterator, Optional, Protocol, cast

import torch
from torch.utils.data import DataLoader, IterableDataset

from robustok.data.datasets import (
    FashionMNIST,
    GlobalBatchSampler,
    ImageFolder,
    WebDatasetShards,
    build_dataset,
    open_image,
)
from robustok.data.loader import default_workers, image_batches, workers_for
from robustok.data.transforms import from_uint8, to_uint8
from robustok.errors import DataError
from robustok.seeding import data_stream_seed


class SeededStream(Protocol):
    """What `train_batches`/`eval_batches` set on an `IterableDataset` (`WebDatasetShards`, `TokenShards`)."""

    seed: int
    rank: Optional[int]
    world: Optional[int]
    repeat: bool


__all__ = [
    "build_dataset",
    "train_batches",
    "eval_batches",
    "image_batches",
    "workers_for",
    "FashionMNIST",
    "ImageFolder",
    "WebDatasetShards",
    "GlobalBatchSampler",
    "open_image",
    "to_uint8",
    "from_uint8",
]


def train_batches(
    dataset, global_batch: int, seed: int, rank: int = 0, world: int = 1, start_step: int = 0, num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless `(images, labels)` training batches for this rank, resumable at `start_step`."""
    if isinstance(dataset, IterableDataset):
        if global_batch % world:
            raise DataError(f"global batch {global_batch} is not divisible by the {world} ranks")
        # streams are reseeded (not replayed) on resume; rank/world are given explicitly because data-loader
        # workers started by spawn do not see the process group
        # cast: torch's IterableDataset type cannot say that every stream given here is a SeededStream
        stream = cast(SeededStream, dataset)
        stream.seed, stream.rank, stream.world = data_stream_seed(seed, start_step), rank, world
        loader = DataLoader(dataset, batch_size=global_batch // world, num_workers=num_workers, drop_last=True)
    else:
        sampler = GlobalBatchSampler(len(dataset), global_batch, seed, rank, world, start_step)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, persistent_workers=num_workers > 0)
    return iter(loader)


def eval_batches(
    spec_or_dataset,
    batch_size: int = 100,
    num_images: Optional[int] = None,
    resolution: int = 32,
    channels: int = 1,
    root: Optional[str] = None,
    rank: int = 0,
    world: int = 1,
    num_workers: Optional[int] = 0,
    device: Optional[str | torch.device] = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Un-augmented `(images [-1,1], labels)` batches of the first `num_images` images (all if None), read by
    `num_workers` processes (None: `robustok.data.loader.workers_for` the spec) through `image_batches`.

    Under distributed evaluation each rank gets a disjoint, strided share.
    """
    if isinstance(spec_or_dataset, str):
        num_workers = workers_for(spec_or_dataset, num_workers)
        ds = build_dataset(spec_or_dataset, resolution, channels, train=False, root=root)
    else:
        num_workers = default_workers() if num_workers is None else num_workers
        ds = spec_or_dataset
    if isinstance(ds, IterableDataset):  # streams split by rank themselves: this rank's share of the limit
        cast(SeededStream, ds).repeat = False  # cast: as in train_batches
        if num_images is not None and world > 1:
            num_images = len(range(rank, num_images, world))
    yield from image_batches(
        ds, batch_size, num_images=num_images, rank=rank, world=world, workers=num_workers, device=device
    )
