"""The one input path of every command that reads images (pretokenize, post-train-data, eval-tokenizer, fid,
fid-stats, benchmark-tokenizers, diagnose): `image_batches`.

A `DataLoader` whose worker processes decode and crop the next batches while the caller's model runs on the
current one (prefetching), with pinned memory and non-blocking copies when the batches go to a CUDA device.
The output order does not depend on the number of workers, so results are bit-identical for any `workers`:
map-style data sets (folders, Fashion-MNIST) are read in explicit index batches (by default this rank's strided
share, as before); a `wds:` stream is read by every worker, each decoding only its own batches (batch b goes
to worker b mod N, which is the order the loader returns them in). An unreadable image found inside a worker
is reported as a `DataError` naming the file, the same error as without workers.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Optional, Protocol, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info

from robustok.errors import DataError

MAX_DEFAULT_WORKERS = 8
IN_MEMORY_KINDS = {"fashion-mnist", "npz"}  # spec kinds held in memory: nothing to decode, no workers by default


def default_workers() -> int:
    """The cores this process may use, shared among the ranks of this node (torchrun), capped at 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_DEFAULT_WORKERS, cores // ranks))


def workers_for(spec: str, workers: Optional[int]) -> int:
    """The worker count for a data spec: `workers` if given, else 0 for data held in memory (Fashion-MNIST,
    sample `.npz` files) and `default_workers()` for images decoded from files (folders, `wds:` shards)."""
    from robustok.data.spec import parse_data_spec

    if workers is not None:
        if workers < 0:
            raise DataError(f"--workers must be >= 0, got {workers}")
        return workers
    return 0 if parse_data_spec(str(spec), allow_npz=True).kind in IN_MEMORY_KINDS else default_workers()


class _Failure:
    """An error met while reading inside a worker, carried to the main process as a value (so the message that
    names the file arrives intact, and the first failure in output order is the one reported)."""

    def __init__(self, message: str):
        self.message = message


class MapDataset(Protocol):
    """A map-style data set with a length (folders, Fashion-MNIST, `.npz` samples)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: Any) -> Any: ...


class _Checked(Dataset):
    """Items of a map-style data set, with a `DataError` turned into a `_Failure`."""

    def __init__(self, dataset: MapDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: Any) -> Any:
        try:
            return self.dataset[i]
        except DataError as err:
            return _Failure(str(err))


def _collate(items: list) -> Any:
    """A batch of items, or the first failure among them."""
    failed = next((it for it in items if isinstance(it, _Failure)), None)
    return failed if failed is not None else default_collate(items)


class _OrderedStream(IterableDataset):
    """Batches of a `wds:` stream in stream order for any number of workers: worker w of N decodes batches
    w, w + N, ... (it skips the other samples undecoded), and the loader takes one batch per worker in turn."""

    def __init__(self, stream: Any, batch_size: int, limit: Optional[int]):
        self.stream, self.batch_size, self.limit = stream, batch_size, limit

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        items: list = []
        try:
            for k, sample in enumerate(self.stream.samples()):
                if self.limit is not None and k >= self.limit:
                    break
                if (k // self.batch_size) % workers != worker:
                    continue
                items.append(self.stream.item(sample))
                if len(items) == self.batch_size:
                    yield default_collate(items)
                    items = []
        except DataError as err:
            yield _Failure(str(err))
            return
        if items:
            yield default_collate(items)


def _to_device(batch: Any, device: Optional[torch.device]) -> Any:
    if device is None:
        return batch
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=device.type == "cuda")  # from pinned memory: overlaps compute
    return type(batch)(_to_device(b, device) for b in batch) if isinstance(batch, (list, tuple)) else batch


def _drain(loader: DataLoader, device: Optional[torch.device]) -> Iterator[Any]:
    """The loader's batches on `device`; a failure carried from a worker is raised here."""
    for batch in loader:
        if isinstance(batch, _Failure):
            raise DataError(batch.message)
        yield _to_device(batch, device)


def _stream_batches(
    stream: IterableDataset, batch_size: int, limit: Optional[int], workers: int, device: Optional[torch.device]
) -> Iterator[Any]:
    """Batches of a stream: in stream order for an un-augmented `wds:` stream; an augmenting (shuffled) stream
    is read as it comes, its workers splitting the shards (its order then depends on the number of workers)."""
    from robustok.data.datasets import WebDatasetShards

    pin = device is not None and device.type == "cuda"
    if isinstance(stream, WebDatasetShards) and not stream.train:
        yield from _drain(
            DataLoader(_OrderedStream(stream, batch_size, limit), batch_size=None, num_workers=workers, pin_memory=pin),
            device,
        )
        return
    count = 0
    for batch in DataLoader(stream, batch_size=batch_size, num_workers=workers, pin_memory=pin):
        if limit is not None and count >= limit:
            return
        take = batch[0].shape[0] if limit is None else min(batch[0].shape[0], limit - count)
        count += take
        yield _to_device(tuple(b[:take] for b in batch), device)


def image_batches(
    dataset: Any,
    batch_size: int = 100,
    *,
    batches: Optional[Sequence[Iterable[int]]] = None,  # lists or integer arrays of item indices
    num_images: Optional[int] = None,
    rank: int = 0,
    world: int = 1,
    workers: int = 0,
    device: Optional[str | torch.device] = None,
) -> Iterator[Any]:
    """Collated batches (e.g. `(images, labels)`) of `dataset`, read by `workers` processes (0: in this one).

    Map-style data: the items of `batches` (lists of item indices) in that order, or by default this rank's
    strided share of the first `num_images` items (`rank::world`) in batches of `batch_size`. Streams (`wds:`)
    split their shards by rank themselves; `num_images` then limits this rank's share. `device`: where the
    batches go (pinned memory and non-blocking copies on CUDA); None leaves them on the CPU.
    """
    device = torch.device(device) if device is not None else None
    pin = device is not None and device.type == "cuda"
    if workers < 0:
        raise DataError(f"--workers must be >= 0, got {workers}")
    if isinstance(dataset, IterableDataset):
        if batches is not None:
            raise DataError("explicit index batches need a map-style data set (folder or fashion-mnist), not wds:")
        yield from _stream_batches(dataset, batch_size, num_images, workers, device)
        return
    if batches is None:
        n = len(dataset) if num_images is None else min(num_images, len(dataset))
        mine = range(rank, n, world)
        batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    yield from _drain(
        DataLoader(
            _Checked(dataset),
            batch_sampler=[[int(i) for i in b] for b in batches],
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=pin,
        ),
        device,
    )
