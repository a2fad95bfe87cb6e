"""Writing token stores (see `robustok.tokens.store`): encoded batches, and the shards they are cut into.

`encode_batches` yields this rank's numbered batches (all of them in one process; a strided share under
`torchrun`), so that rank 0 can merge every rank's batches in batch order and cut the same shards as one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from robustok.errors import DataError
from robustok.extras import require
from robustok.tokens.kinds import kind_of_tokenizer, token_kind


def save_npy(path: Path, arr: np.ndarray) -> None:
    """`np.save` under a temporary name, then renamed (`robustok.hub.atomic_file`)."""
    from robustok.hub import atomic_file

    with atomic_file(path) as f:
        np.save(f, arr)


class _Views(Dataset):
    """Item k -> view k // n of image k % n (see the store module's docstring)."""

    def __init__(self, dataset: Dataset, n: int, views: int, seed: int):
        self.dataset, self.n, self.views, self.seed = dataset, n, views, seed

    def __len__(self) -> int:
        return self.n * self.views

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        view, i = divmod(k, self.n)
        if view >= 2:
            return self.dataset[(i, [self.seed, view, i])]
        x, y = self.dataset[i]
        return (x.flip(-1) if view == 1 else x), y


def _batches(
    dataset: Any,
    views: int,
    seed: int,
    batch_size: int,
    limit: Optional[int],
    permute: bool,
    rank: int,
    world: int,
    workers: int = 0,
    device: Any = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, Optional[np.ndarray]]]:
    """This rank's (batch number, images, labels, item indices) batches, read by `workers` processes through
    `robustok.data.loader.image_batches`; `permute`: items in a seeded random order (for streamed stores, whose
    shuffle buffer alone would leave class-sorted folders in class runs).

    Map-style data: batch b of the global order goes to rank b % world. Streams (wds:) split by rank themselves;
    their batches are numbered j * world + rank and carry no item indices."""
    from robustok.data import eval_batches
    from robustok.data.loader import image_batches

    if isinstance(dataset, IterableDataset):
        if views != 1:
            raise DataError("several views need a map-style data set (folder or fashion-mnist), not wds:")
        for j, (x, y) in enumerate(
            eval_batches(
                dataset,
                batch_size=batch_size,
                num_images=limit,
                rank=rank,
                world=world,
                num_workers=workers,
                device=device,
            )
        ):
            yield j * world + rank, x, y, None
        return
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = _Views(dataset, n, views, seed)
    order = np.random.default_rng([seed, 7]).permutation(len(items)) if permute else np.arange(len(items))
    numbers = range(rank, -(-len(order) // batch_size), world)
    chunks = [order[b * batch_size : (b + 1) * batch_size] for b in numbers]
    for b, idx, (x, y) in zip(numbers, chunks, image_batches(items, batches=chunks, workers=workers, device=device)):
        yield b, x, y, idx


def encode_batches(
    tokenizer: Any,
    dataset: Any,
    views: int,
    seed: int,
    batch_size: int,
    limit: Optional[int],
    permute: bool,
    rank: int = 0,
    world: int = 1,
    bar: Any = None,
    workers: int = 0,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(batch number, arrays) for this rank: `x` (ids or float16 latents), `y` (int32 labels), `idx` (item indices,
    map-style data only) and, for latents, `s1`/`s2` (per-channel sums of z and z^2, float64)."""
    kind = token_kind(kind_of_tokenizer(tokenizer))
    device = next(tokenizer.parameters(), torch.empty(0)).device
    with torch.no_grad():
        for b, x, y, idx in _batches(dataset, views, seed, batch_size, limit, permute, rank, world, workers, device):
            out: dict[str, np.ndarray] = {
                "y": y.cpu().numpy().astype(np.int32),
                **kind.encode_batch(tokenizer, x.to(device)),
            }
            if idx is not None:
                out["idx"] = np.asarray(idx)
            if bar is not None:
                bar.update(len(out["x"]))
            yield b, out


def _save_tar(path: Path, stem: str, xs: np.ndarray, ys: np.ndarray, keys: np.ndarray) -> None:
    """One WebDataset shard, written under a temporary name and then renamed; each entry's key is its item
    index (view * images + image, see `_Views`)."""
    wds = require("webdataset", "WebDataset token stores (--format wds)")

    from robustok.hub import atomic_file

    with atomic_file(path) as f, wds.TarWriter(f) as sink:
        for x, y, key in zip(xs, ys, keys):
            sink.write({"__key__": f"{int(key):09d}", f"{stem}.npy": np.ascontiguousarray(x), "cls": str(int(y))})


class ShardWriter:
    """Cuts a sequence of encoded batches into shards of `shard_size` entries (npy pairs or wds tars)."""

    def __init__(self, out: Path, storage: str, stem: str, shard_size: int):
        self.out, self.storage, self.stem, self.shard_size = out, storage, stem, shard_size
        self.shards: list[dict] = []
        self.count = 0
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._k: list[np.ndarray] = []
        self._buffered = 0

    def add(self, arr: np.ndarray, labels: np.ndarray, keys: Optional[np.ndarray]) -> None:
        """Append entries (keys: item indices; None: numbered by their position in the store)."""
        if keys is None:
            keys = np.arange(self.count, self.count + len(arr))
        start = 0
        while start < len(arr):  # split batches across shard boundaries
            take = min(len(arr) - start, self.shard_size - self._buffered)
            self._x.append(arr[start : start + take])
            self._y.append(labels[start : start + take])
            self._k.append(keys[start : start + take])
            self._buffered += take
            self.count += take
            start += take
            if self._buffered >= self.shard_size:
                self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        k, stem = len(self.shards), self.stem
        xs, ys = np.concatenate(self._x), np.concatenate(self._y)
        if self.storage == "wds":
            _save_tar(self.out / f"tokens-{k:05d}.tar", stem, xs, ys, np.concatenate(self._k))
            self.shards.append({"tar": f"tokens-{k:05d}.tar", "count": int(len(xs))})
        else:
            save_npy(self.out / f"{stem}-{k:05d}.npy", xs)
            save_npy(self.out / f"labels-{k:05d}.npy", ys)
            self.shards.append({"data": f"{stem}-{k:05d}.npy", "labels": f"labels-{k:05d}.npy", "count": int(len(xs))})
        self._x, self._y, self._k, self._buffered = [], [], [], 0
