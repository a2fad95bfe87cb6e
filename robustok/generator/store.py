"""Token stores: a dataset encoded once by a tokenizer, kept as sharded `.npy` files that load by memory map.

Layout of a store directory:
```
manifest.json          format, tokenizer fingerprint, kind (ids|latents), grid, K, count, classes, shards, stats
ids-00000.npy          (n, h, w) uint16 token ids (int32 if K > 65536)   | latents-00000.npy (n, C, h, w) float16
labels-00000.npy       (n,) int32 class ids (-1 = unlabeled)
```
The manifest is written last, so a directory without one is an incomplete store. View 0 of every image is the
un-augmented image, view 1 its horizontal flip, views >= 2 the paper's random resized crop (+ flip), seeded by
(seed, view, index).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from robustok.errors import DataError

MANIFEST = "manifest.json"
FORMAT = "robustok-tokens/1"


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


class _Views(Dataset):
    """Item k -> view k // n of image k % n (see the module docstring)."""

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


def _batches(dataset: Any, views: int, seed: int, batch_size: int, limit: Optional[int]
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(dataset, IterableDataset):
        if views != 1:
            raise DataError("several views need a map-style data set (folder or fashion-mnist), not wds:")
        from robustok.data import eval_batches
        yield from eval_batches(dataset, batch_size=batch_size, num_images=limit)
        return
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = _Views(dataset, n, views, seed)
    total = len(items)
    for lo in range(0, total, batch_size):
        pairs = [items[k] for k in range(lo, min(lo + batch_size, total))]
        yield torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def write_token_store(tokenizer: Any, dataset: Any, out: str | Path, views: int = 1, seed: int = 0,
                      batch_size: int = 256, shard_size: int = 100_000, limit: Optional[int] = None,
                      source: str = "", progress: bool = True) -> dict:
    """Encode `dataset` (`views` augmented copies of its first `limit` images) with `tokenizer` into `out`.

    Discrete tokenizers store ids, continuous ones (`is_discrete == False`) store float16 latents plus their
    per-channel mean/std. Returns the manifest.
    """
    from tqdm import tqdm

    if views < 1:
        raise DataError(f"--views must be >= 1, got {views}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()                       # the store is incomplete until rewritten
    discrete = bool(getattr(tokenizer, "is_discrete", True))
    K = int(tokenizer.codebook_size) if discrete else 0
    id_dtype = np.uint16 if K <= 65536 else np.int32
    device = next(tokenizer.parameters()).device if hasattr(tokenizer, "parameters") else torch.device("cpu")
    shards: list[dict] = []
    buf_x: list[np.ndarray] = []
    buf_y: list[np.ndarray] = []
    buffered = count = 0
    grid: Optional[list[int]] = None
    channels = 0
    s1 = s2 = None
    max_label = -1

    def flush() -> None:
        nonlocal buf_x, buf_y, buffered
        if not buffered:
            return
        k = len(shards)
        stem = "ids" if discrete else "latents"
        xs, ys = np.concatenate(buf_x), np.concatenate(buf_y)
        _save_npy(out / f"{stem}-{k:05d}.npy", xs)
        _save_npy(out / f"labels-{k:05d}.npy", ys)
        shards.append({"data": f"{stem}-{k:05d}.npy", "labels": f"labels-{k:05d}.npy", "count": int(len(xs))})
        buf_x, buf_y, buffered = [], [], 0

    total = None
    if not isinstance(dataset, IterableDataset):
        total = (len(dataset) if limit is None else min(limit, len(dataset))) * views
    bar = tqdm(total=total, desc="pretokenize", unit="img", disable=not progress, dynamic_ncols=True)
    with torch.no_grad():
        for x, y in _batches(dataset, views, seed, batch_size, limit):
            x = x.to(device)
            if discrete:
                ids = tokenizer.encode(x)
                if ids.dim() != 3:
                    raise DataError(f"tokenizer.encode returned shape {tuple(ids.shape)}, expected (B, h, w)")
                lo, hi = int(ids.min()), int(ids.max())
                if lo < 0 or hi >= K:
                    raise DataError(f"tokenizer produced ids in [{lo}, {hi}], outside [0, {K})")
                arr = ids.cpu().numpy().astype(id_dtype)
                grid = list(arr.shape[1:])
            else:
                z = tokenizer.encode_latents(x).float()
                zd = z.double()
                s1 = zd.sum((0, 2, 3)) if s1 is None else s1 + zd.sum((0, 2, 3))
                s2 = (zd ** 2).sum((0, 2, 3)) if s2 is None else s2 + (zd ** 2).sum((0, 2, 3))
                arr = z.cpu().numpy().astype(np.float16)
                channels, grid = arr.shape[1], list(arr.shape[2:])
            labels = y.numpy().astype(np.int32)
            max_label = max(max_label, int(labels.max()) if len(labels) else -1)
            start = 0
            while start < len(arr):             # split batches across shard boundaries
                take = min(len(arr) - start, shard_size - buffered)
                buf_x.append(arr[start:start + take])
                buf_y.append(labels[start:start + take])
                buffered += take
                count += take
                start += take
                if buffered >= shard_size:
                    flush()
            bar.update(len(arr))
    flush()
    bar.close()
    if count == 0:
        raise DataError(f"{source or 'data set'}: no images to pretokenize")
    fingerprint = tokenizer.fingerprint() if hasattr(tokenizer, "fingerprint") else ""
    num_classes = max(int(getattr(dataset, "num_classes", 0) or 0), max_label + 1)
    manifest = {"format": FORMAT, "kind": "ids" if discrete else "latents", "tokenizer_fingerprint": fingerprint,
                "codebook_size": K, "grid": grid, "latent_channels": channels, "count": count, "views": views,
                "num_classes": num_classes, "source": source, "seed": seed, "shards": shards}
    if not discrete:
        n = count * grid[0] * grid[1]
        mean = (s1 / n)
        manifest["latent_mean"] = mean.tolist()
        manifest["latent_std"] = (s2 / n - mean ** 2).clamp_min(1e-12).sqrt().tolist()
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / MANIFEST)
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


class TokenDataset(Dataset):
    """Map-style view of a token store: item `i` or `(i, seed)` -> (ids LongTensor (h, w) | latents (C, h, w), label).

    Opening checks everything before any compute: manifest, tokenizer fingerprint (if `fingerprint` is given),
    shard files and shapes, and (if `validate`) that every id is < K.
    """

    def __init__(self, directory: str | Path, fingerprint: Optional[str] = None, validate: bool = True):
        self.dir = Path(directory)
        m = self.manifest = read_manifest(directory)
        if fingerprint and m.get("tokenizer_fingerprint") and m["tokenizer_fingerprint"] != fingerprint:
            raise DataError(f"{self.dir / MANIFEST}: tokens come from tokenizer {m['tokenizer_fingerprint']}, "
                            f"not from the expected tokenizer {fingerprint}")
        self.kind: str = m["kind"]
        self.grid: list[int] = list(m["grid"])
        self.codebook_size: int = int(m["codebook_size"])
        self.num_classes: int = int(m["num_classes"])
        self.fingerprint: str = m.get("tokenizer_fingerprint", "")
        self.counts = [int(s["count"]) for s in m["shards"]]
        self.offsets = np.cumsum([0] + self.counts)
        if self.offsets[-1] != int(m["count"]):
            raise DataError(f"{self.dir / MANIFEST}: shard counts sum to {self.offsets[-1]}, "
                            f"manifest says {m['count']}")
        self._data: list[Optional[np.ndarray]] = [None] * len(self.counts)
        self._labels: list[Optional[np.ndarray]] = [None] * len(self.counts)
        for k in range(len(self.counts)):
            x, y = self._open(k)
            shape = tuple(self.grid) if self.kind == "ids" else (int(m["latent_channels"]), *self.grid)
            if x.shape != (self.counts[k], *shape) or y.shape != (self.counts[k],):
                raise DataError(f"{self.dir / m['shards'][k]['data']}: shape {x.shape} does not match the manifest "
                                f"({self.counts[k]}, {shape})")
            if validate and self.kind == "ids" and len(x) and int(x.max()) >= self.codebook_size:
                raise DataError(f"{self.dir / m['shards'][k]['data']}: token id {int(x.max())} >= codebook size "
                                f"{self.codebook_size}")
        self._data = [None] * len(self.counts)          # re-open lazily in each worker process
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

    @property
    def latent_stats(self) -> tuple[list[float], list[float]]:
        return list(self.manifest.get("latent_mean", [])), list(self.manifest.get("latent_std", []))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, item) -> tuple[torch.Tensor, int]:
        i = int(item[0] if isinstance(item, tuple) else item)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        x, y = self._open(k)
        row = np.asarray(x[i - self.offsets[k]])
        t = torch.from_numpy(row.astype(np.int64)) if self.kind == "ids" else torch.from_numpy(row.astype(np.float32))
        return t, int(y[i - self.offsets[k]])
