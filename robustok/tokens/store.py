"""Token stores: a dataset encoded once by a tokenizer, kept as sharded `.npy` files that load by memory map.

Layout of a store directory:
```
manifest.json          format, tokenizer fingerprint, kind (ids|latents), grid, K, count, classes, shards, stats
ids-00000.npy          (n, h, w) uint16 token ids (int32 if K > 65536)   | latents-00000.npy (n, C, h, w) float16
labels-00000.npy       (n,) int32 class ids (-1 = unlabeled)
```
With `storage="wds"` the entries go to WebDataset tar shards instead (`tokens-00000.tar`, one sample per entry:
`ids.npy` or `latents.npy`, and `cls`), for streaming at scale; `open_token_store` opens either kind.
The manifest is written last, so a directory without one is an incomplete store (`write_token_store` builds
the store in a temporary sibling folder and renames it into place only when complete). View 0 of every image is
the un-augmented image, view 1 its horizontal flip, views >= 2 the paper's random resized crop (+ flip), seeded by
(seed, view, index).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from robustok.errors import DataError
from robustok.extras import require
from robustok.tokens.kinds import TokenKind, check_fingerprint, kind_of_tokenizer, token_kind
from robustok.tokens.write import ShardWriter, encode_batches

MANIFEST = "manifest.json"
FORMAT = "robustok-tokens/1"
STORAGES = ("npy", "wds")


def write_token_store(
    tokenizer: Any,
    dataset: Any,
    out: str | Path,
    views: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    shard_size: int = 100_000,
    limit: Optional[int] = None,
    source: str = "",
    progress: bool = True,
    storage: str = "npy",
    overwrite: bool = False,
    workers: int = 0,
) -> dict:
    """Encode `dataset` (`views` augmented copies of its first `limit` images) with `tokenizer` into `out`.

    Discrete tokenizers store ids, continuous ones (`is_discrete == False`) store float16 latents plus their
    per-channel mean/std. `storage`: "npy" (memory-mapped shards) or "wds" (WebDataset tar shards).
    Under `torchrun` the ranks encode strided batches and rank 0 cuts the shards (the same store as one
    process's, for map-style data). The store is built in a temporary sibling folder and renamed into place when
    complete; an existing non-empty `out` is refused unless `overwrite` (then replaced only at that rename).
    `workers` processes read and decode the images while the tokenizer encodes (the store is the same for any
    number). Returns the manifest.
    """
    from tqdm import tqdm

    from robustok.distributed import rank_world
    from robustok.distributed_outputs import sharded
    from robustok.hub import atomic_write_bytes
    from robustok.outputs import staged_output
    from robustok.train.faults import fault_point

    if views < 1:
        raise DataError(f"--views must be >= 1, got {views}")
    if batch_size < 1 or shard_size < 1:
        raise DataError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    if storage not in STORAGES:
        raise DataError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    out = Path(out)
    rank, world = rank_world()
    with staged_output(out, overwrite) as staged:
        kind = token_kind(kind_of_tokenizer(tokenizer))
        total = None
        if not isinstance(dataset, IterableDataset):
            items = (len(dataset) if limit is None else min(limit, len(dataset))) * views
            total = sum(min(batch_size, items - b * batch_size) for b in range(rank, -(-items // batch_size), world))
        bar = tqdm(total=total, desc="pretokenize", unit="img", disable=not progress or rank != 0, dynamic_ncols=True)
        mine = encode_batches(
            tokenizer, dataset, views, seed, batch_size, limit, storage == "wds", rank, world, bar, workers
        )
        writer = ShardWriter(staged.build, storage, kind.name, shard_size)
        grid: Optional[list[int]] = None
        channels, max_label = 0, -1
        sums: dict[str, Any] = {}
        for _, a in sharded(staged.parts, mine):  # under torchrun: the ranks' batches, merged by rank 0
            writer.add(a["x"], a["y"], a.get("idx"))
            grid, channels = kind.grid(a["x"]), kind.channels(a["x"])
            kind.add_sums(sums, a)
            max_label = max(max_label, int(a["y"].max()) if len(a["y"]) else -1)
            fault_point("store-batch", staged.build)
        bar.close()
        if rank == 0:
            writer.flush()
            if writer.count == 0 or grid is None:
                raise DataError(f"{source or 'data set'}: no images to pretokenize")
            manifest = _manifest(
                tokenizer, dataset, writer, kind, storage, grid, channels, sums, max_label, views, source, seed
            )
            atomic_write_bytes(staged.build / MANIFEST, json.dumps(manifest, indent=2).encode())
            staged.commit()
    return manifest if rank == 0 else read_manifest(out)


def _manifest(
    tokenizer: Any,
    dataset: Any,
    writer: ShardWriter,
    kind: TokenKind,
    storage: str,
    grid: list[int],
    channels: int,
    sums: dict,
    max_label: int,
    views: int,
    source: str,
    seed: int,
) -> dict:
    """The manifest of a finished store, with the kind's statistics (latents: the per-channel mean and std)."""
    count = writer.count
    num_classes = max(int(getattr(dataset, "num_classes", 0) or 0), max_label + 1)
    manifest = {
        "format": FORMAT,
        "storage": storage,
        "kind": kind.name,
        "tokenizer_fingerprint": tokenizer.fingerprint(),
        "codebook_size": kind.codebook_field(tokenizer.codebook_size),
        "grid": grid,
        "latent_channels": channels,
        "count": count,
        "views": views,
        "num_classes": num_classes,
        "source": source,
        "seed": seed,
        "shards": writer.shards,
    }
    return {**manifest, **kind.statistics(sums, count * grid[0] * grid[1])}


def write_array_store(
    out: str | Path,
    kind: str,
    codes: np.ndarray,
    labels: np.ndarray,
    fingerprint: str,
    codebook_size: int,
    num_classes: int,
    source: str = "",
    extra: Optional[dict] = None,
) -> dict:
    """A complete one-shard npy token store of in-memory `codes` ((n, h, w) ids | (n, C, h, w) latents) and
    `labels` (-1: none) in the folder `out`, manifest last (the caller stages `out` and renames it into place).
    `extra`: more manifest fields (e.g. what made the tokens). Returns the manifest."""
    from robustok.hub import atomic_write_bytes

    tk = token_kind(kind)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(out, "npy", kind, max(len(codes), 1))
    writer.add(codes, labels.astype(np.int32), None)
    writer.flush()
    manifest = {
        "format": FORMAT,
        "storage": "npy",
        "kind": kind,
        "tokenizer_fingerprint": fingerprint,
        "codebook_size": tk.codebook_field(codebook_size),
        "grid": tk.grid(codes),
        "latent_channels": tk.channels(codes),
        "count": writer.count,
        "views": 1,
        "num_classes": int(num_classes),
        "source": source,
        "shards": writer.shards,
        **(extra or {}),
    }
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a token store, with `DataError` naming the file if missing, unreadable or empty."""
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: token store not found")
    if not path.is_file():
        raise DataError(f"{path}: not found; is {directory} a (complete) token store from `robustok pretokenize`?")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        found = m.get("format") if isinstance(m, dict) else None
        raise DataError(f"{path}: not a robustok token store manifest (format {found!r})")
    if int(m.get("count", 0)) <= 0 or not m.get("shards"):
        raise DataError(f"{directory}: empty token store (0 entries)")
    return m


class _StoreInfo:
    """What every token store reader exposes, read from (and checked against) the manifest."""

    def _read_header(self, directory: str | Path, fingerprint: Optional[str], storage: str) -> dict:
        self.dir = Path(directory)
        m = self.manifest = read_manifest(directory)
        if m.get("storage", "npy") != storage:
            raise DataError(
                f"{self.dir / MANIFEST}: a {m.get('storage', 'npy')!r} store, not {storage!r}; "
                "open it with robustok.tokens.store.open_token_store"
            )
        check_fingerprint(m.get("tokenizer_fingerprint", ""), fingerprint or "", str(self.dir / MANIFEST))
        try:
            self.kind: str = m["kind"]
            self.grid: list[int] = [int(g) for g in m["grid"]]
            self.codebook_size: int = int(m["codebook_size"])
            self.num_classes: int = int(m["num_classes"])
            self.counts = [int(s["count"]) for s in m["shards"]]
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{self.dir / MANIFEST}: missing or invalid field ({type(err).__name__}: {err})") from None
        self.token_kind = token_kind(self.kind, str(self.dir / MANIFEST))
        self.fingerprint: str = m.get("tokenizer_fingerprint", "")
        self.offsets = np.cumsum([0] + self.counts)
        if self.offsets[-1] != int(m["count"]):
            raise DataError(
                f"{self.dir / MANIFEST}: shard counts sum to {self.offsets[-1]}, manifest says {m['count']}"
            )
        return m

    @property
    def entry_shape(self) -> tuple[int, ...]:
        return self.token_kind.entry_shape(self.grid, self.manifest)

    @property
    def latent_stats(self) -> tuple[list[float], list[float]]:
        return list(self.manifest.get("latent_mean", [])), list(self.manifest.get("latent_std", []))

    def _check_rows(self, where: str, x: np.ndarray, y: np.ndarray, where_labels: Optional[str] = None) -> None:
        """The kind's values (token ids: integers in [0, K)); labels: integers in [-1, num_classes) (-1: unlabeled)."""
        self.token_kind.check_rows(where, x, self.codebook_size)
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where_labels or where}: labels must be integers, got dtype {y.dtype}")
        if y.size and (int(y.max()) >= max(self.num_classes, 0) or int(y.min()) < -1):
            raise DataError(
                f"{where_labels or where}: labels span [{int(y.min())}, {int(y.max())}], outside [-1, "
                f"{self.num_classes}) (num_classes in the manifest)"
            )

    def _tensor(self, row: np.ndarray) -> torch.Tensor:
        return self.token_kind.to_tensor(row)

    def __len__(self) -> int:
        return int(self.offsets[-1])


class TokenDataset(_StoreInfo, Dataset):
    """Map-style view of a token store: item `i` or `(i, seed)` -> (ids LongTensor (h, w) | latents (C, h, w), label).

    Opening checks everything before any compute: manifest, tokenizer fingerprint (if `fingerprint` is given),
    shard files and shapes, and (if `validate`) that every id is < K.
    """

    def __init__(self, directory: str | Path, fingerprint: Optional[str] = None, validate: bool = True):
        m = self._read_header(directory, fingerprint, "npy")
        self._data: list[Optional[np.ndarray]] = [None] * len(self.counts)
        self._labels: list[Optional[np.ndarray]] = [None] * len(self.counts)
        for k in range(len(self.counts)):
            x, y = self._open(k)
            shape = self.entry_shape
            if x.shape != (self.counts[k], *shape) or y.shape != (self.counts[k],):
                raise DataError(
                    f"{self.dir / m['shards'][k]['data']}: shape {x.shape} does not match the manifest "
                    f"({self.counts[k]}, {shape})"
                )
            if validate:
                self._check_rows(str(self.dir / m["shards"][k]["data"]), x, y, str(self.dir / m["shards"][k]["labels"]))
        self._data = [None] * len(self.counts)  # re-open lazily in each worker process
        self._labels = [None] * len(self.counts)

    def _open(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._data[k] is None:
            sh = self.manifest["shards"][k]
            for key in ("data", "labels"):
                if not (self.dir / sh[key]).is_file():
                    raise DataError(f"{self.dir / sh[key]}: shard file missing")
            try:
                self._data[k] = np.load(self.dir / sh["data"], mmap_mode="r")
                self._labels[k] = np.load(self.dir / sh["labels"], mmap_mode="r")
            except (ValueError, OSError) as err:
                raise DataError(f"{self.dir / sh['data']}: unreadable shard ({err})") from None
        return self._data[k], self._labels[k]  # type: ignore[return-value]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All entries and labels as arrays (memory-mapped for a one-shard store, else concatenated)."""
        opened = [self._open(k) for k in range(len(self.counts))]
        if len(opened) == 1:
            return opened[0]
        return np.concatenate([x for x, _ in opened]), np.concatenate([y for _, y in opened])

    def __getitem__(self, item) -> tuple[torch.Tensor, int]:
        i = int(item[0] if isinstance(item, tuple) else item)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        x, y = self._open(k)
        return self._tensor(np.asarray(x[i - self.offsets[k]])), int(y[i - self.offsets[k]])


class TokenShards(_StoreInfo, IterableDataset):
    """Streaming view of a WebDataset token store: endless shuffled (entry, label) pairs for training.

    Each rank and data-loader worker reads its own share: whole shards when they split into equal-sized shares
    (so that no entry is drawn more often than another), else every n-th entry of every shard. `rank`/`world`
    are set by `train_batches` (default: the process group's). Opening checks the manifest, the fingerprint and
    that every shard exists; each entry's shape and ids are checked as it is read (errors name the shard and the
    key).
    """

    rank: Optional[int] = None
    world: Optional[int] = None

    def __init__(
        self,
        directory: str | Path,
        fingerprint: Optional[str] = None,
        seed: int = 0,
        shuffle: bool = True,
        repeat: bool = True,
        buffer: int = 2000,
    ):
        m = self._read_header(directory, fingerprint, "wds")
        self.urls = [str(self.dir / sh["tar"]) for sh in m["shards"]]
        missing = [u for u in self.urls if not Path(u).is_file()]
        if missing:
            raise DataError(f"{missing[0]}: shard file missing ({len(missing)} of {len(self.urls)} missing)")
        self.seed, self.shuffle, self.repeat, self.buffer = seed, shuffle, repeat, buffer
        self.stem = self.token_kind.name

    def _share(self) -> tuple[list[str], int, int]:
        """(my shards, entry stride, entry offset) for this rank and worker."""
        from robustok.distributed import rank_world

        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        rank, world = rank_world()
        rank, world = (rank if self.rank is None else self.rank), (world if self.world is None else self.world)
        readers, me = world * workers, rank * workers + worker
        if len(self) < readers:
            raise DataError(
                f"{self.dir}: {len(self)} entries cannot feed {readers} readers ({world} ranks x {workers} workers)"
            )
        shares = [sum(self.counts[k::readers]) for k in range(readers)]
        if len(self.urls) >= readers and len(set(shares)) == 1:
            return self.urls[me::readers], 1, 0
        return self.urls, readers, me

    def _decode(self, sample: dict) -> tuple[torch.Tensor, int]:
        import io

        where = f"{sample.get('__url__', self.dir)}:{sample.get('__key__', '?')}"
        raw = sample.get(f"{self.stem}.npy")
        if raw is None:
            raise DataError(f"{where}: entry has no {self.stem}.npy")
        try:
            row = np.load(io.BytesIO(raw), allow_pickle=False)
            label = int(sample["cls"].decode().strip()) if "cls" in sample else -1
        except (ValueError, OSError, UnicodeDecodeError) as err:
            raise DataError(f"{where}: unreadable entry ({err})") from None
        if row.shape != self.entry_shape:
            raise DataError(f"{where}: shape {row.shape} does not match the manifest's {self.entry_shape}")
        self._check_rows(where, row, np.asarray([label]))
        return self._tensor(row), label

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        wds = require("webdataset", "WebDataset token stores")

        from robustok.data.datasets import _PyRandom

        urls, stride, offset = self._share()
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0, offset])
        epoch = 0
        while True:
            order = list(urls)
            if self.shuffle:
                order = [order[i] for i in np.random.default_rng([self.seed, epoch]).permutation(len(order))]
            ds = wds.WebDataset(order, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
            if stride > 1:
                ds = ds.slice(offset, None, stride)
            if self.shuffle:
                ds = ds.shuffle(self.buffer, rng=_PyRandom(rng))
            try:
                for sample in ds:
                    yield self._decode(sample)
            except (tarfile.ReadError, EOFError, OSError) as err:
                raise DataError(f"{self.dir}: unreadable tar shard ({type(err).__name__}: {err})") from None
            epoch += 1
            if not self.repeat:
                return


def open_token_store(directory: str | Path, fingerprint: Optional[str] = None) -> TokenDataset | TokenShards:
    """The reader that fits the store: memory-mapped `TokenDataset` (npy) or streaming `TokenShards` (wds)."""
    storage = read_manifest(directory).get("storage", "npy")
    if storage == "wds":
        return TokenShards(directory, fingerprint)
    return TokenDataset(directory, fingerprint)
