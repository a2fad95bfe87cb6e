"""Outputs written by several ranks and merged into one: generation and encoding under `torchrun`.

Work is cut into numbered batches; rank r takes batches r, r + world, r + 2 world, ... Each rank saves its
batches' arrays as numbered part files (written under a temporary name, then renamed) in a parts folder, plus
an index listing them. After a barrier, rank 0 reads every rank's batches back in global batch order and writes
the final output; the parts folder is then removed. Without a process group (one process) `sharded` passes the
batches straight through, with no part files. The parts folder must be on a file system that every rank sees
(one machine under `torchrun --nproc_per_node N`, or a shared file system).
"""

from __future__ import annotations

import heapq
import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from robustok.distributed import barrier, rank_world
from robustok.errors import DataError
from robustok.hub import atomic_file, atomic_write_bytes

INDEX = "rank-{rank:05d}.json"


def mine(num_batches: int, rank: int | None = None, world: int | None = None) -> range:
    """The batch numbers this rank handles: a strided share of `range(num_batches)`."""
    if rank is None or world is None:
        rank, world = rank_world()
    return range(rank, num_batches, world)


@contextmanager
def rank0_first():
    """Run the block on rank 0 first, then on the other ranks (e.g. to fill a cache once)."""
    rank, world = rank_world()
    if world > 1 and rank != 0:
        barrier()
    yield
    if world > 1 and rank == 0:
        barrier()


def start_parts(parts: str | Path) -> Path:
    """Clear a stale parts folder (rank 0) and create it; every rank returns once it exists."""
    parts = Path(parts)
    rank, _ = rank_world()
    if rank == 0:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
    barrier()
    return parts


class PartWriter:
    """This rank's per-batch arrays, buffered and saved as `.npz` part files of about `chunk_bytes` each."""

    def __init__(self, parts: str | Path, chunk_bytes: int = 1 << 28):
        self.parts, self.chunk_bytes = Path(parts), chunk_bytes
        self.rank, _ = rank_world()
        self.files: list[str] = []
        self.batches: list[int] = []
        self._buf: dict[str, np.ndarray] = {}
        self._bytes = 0

    def add(self, batch: int, **arrays: np.ndarray) -> None:
        """Keep `arrays` (any shapes) as batch number `batch`; batches must come in increasing order."""
        if self.batches and batch <= self.batches[-1]:
            raise ValueError(f"batch {batch} after batch {self.batches[-1]}: batches must increase")
        self.batches.append(int(batch))
        for name, arr in arrays.items():
            self._buf[f"{int(batch)}/{name}"] = np.asarray(arr)
        self._bytes += sum(np.asarray(a).nbytes for a in arrays.values())
        if self._bytes >= self.chunk_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        name = f"rank-{self.rank:05d}-{len(self.files):05d}.npz"
        with atomic_file(self.parts / name) as f:
            # numpy's stub declares savez's `allow_pickle` flag (numpy >= 2.1), so mypy rejects any **dict of
            # arrays; these keys are "batch/name", never that flag (passing it would store an array under numpy 1.x)
            np.savez(f, **self._buf)  # type: ignore[arg-type]
        self.files.append(name)
        self._buf, self._bytes = {}, 0

    def close(self) -> None:
        """Save what is buffered and the index of this rank's part files (written last: the part is complete)."""
        self._flush()
        atomic_write_bytes(
            self.parts / INDEX.format(rank=self.rank),
            json.dumps({"files": self.files, "batches": self.batches}).encode(),
        )


def _rank_batches(parts: Path, rank: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(batch, arrays) of one rank's part files, in its order, reading one file at a time."""
    path = parts / INDEX.format(rank=rank)
    if not path.is_file():
        raise DataError(f"{path}: missing; rank {rank} did not finish its share of the output")
    index = json.loads(path.read_text())
    for name in index["files"]:
        with np.load(parts / name) as data:
            grouped: dict[int, dict[str, np.ndarray]] = {}
            for key in data.files:
                b, field = key.split("/", 1)
                grouped.setdefault(int(b), {})[field] = data[key]
        for b in sorted(grouped):
            yield b, grouped[b]


def merged_batches(parts: str | Path, world: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Every rank's (batch, arrays) in increasing batch order (read by rank 0 after a barrier)."""
    if world is None:
        world = rank_world()[1]
    streams = [_rank_batches(Path(parts), r) for r in range(world)]
    yield from heapq.merge(*streams, key=lambda item: item[0])


def finish_parts(parts: str | Path) -> None:
    """Remove the parts folder (rank 0) once the output is written; every rank returns after that."""
    rank, _ = rank_world()
    if rank == 0:
        shutil.rmtree(parts, ignore_errors=True)
    barrier()


def sharded(
    parts: str | Path, produce: Iterator[tuple[int, dict[str, np.ndarray]]]
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """This rank's `(batch, arrays)` from `produce`, merged over ranks: on rank 0 every rank's batches in batch
    order, on the other ranks nothing. One process: `produce` itself, with no part files. Iterate it on every
    rank, write the output on rank 0, then call `finish_parts(parts)` on every rank."""
    rank, world = rank_world()
    if world == 1:
        yield from produce
        return
    writer = PartWriter(start_parts(parts))
    for b, arrays in produce:
        writer.add(b, **arrays)
    writer.close()
    barrier()
    if rank == 0:
        yield from merged_batches(parts, world)
