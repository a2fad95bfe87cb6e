"""An image folder -> WebDataset tar shards that the `wds:<pattern>` data spec reads.

Each sample is `<key>.jpg` or `<key>.png` (the file's bytes unchanged for JPEG/PNG; other formats are re-encoded
as PNG) plus `<key>.cls` (the class index as text, classes = sorted subfolder names, as `ImageFolder` numbers
them; a flat folder has no `.cls`). Samples are shuffled with a fixed seed (so a streaming reader's shuffle
buffer sees all classes) and written in shards of `shard_size`; each shard is written to a temporary name and
renamed when complete, so an interrupted run never leaves a truncated tar under a final name, and a rerun skips
shards that already exist. `classes.txt` lists the class names in index order.
"""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from robustok.errors import DataError

KEEP_AS_IS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}


@dataclass
class ShardSummary:
    pattern: str          # brace pattern for `wds:`
    num_images: int
    num_shards: int
    num_classes: int
    written: int          # shards written by this call (the others existed already)


def _sample_bytes(path: Path) -> tuple[str, bytes]:
    """(extension, bytes) of one image: JPEG/PNG bytes unchanged, anything else re-encoded as PNG."""
    from robustok.data.datasets import open_image

    ext = KEEP_AS_IS.get(path.suffix.lower())
    img = open_image(path)              # validates every file (corrupt/truncated -> DataError naming it)
    if ext is not None:
        return ext, path.read_bytes()
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "png", buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, items: list[tuple[str, Path, int]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for key, src, label in items:
                    ext, data = _sample_bytes(src)
                    _add(tar, f"{key}.{ext}", data)
                    if label >= 0:
                        _add(tar, f"{key}.cls", str(label).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_shards(folder: str | Path, out: str | Path, shard_size: int = 1000, prefix: str = "shard",
                shuffle: bool = True, seed: int = 0, workers: int = 1,
                log: Optional[Callable[[str], None]] = None) -> ShardSummary:
    """Write `folder`'s images as `out/<prefix>-NNNNNN.tar` shards (`workers` processes); return a summary with
    the `wds:` pattern."""
    from robustok.data.datasets import ImageFolder

    if shard_size < 1:
        raise DataError(f"--shard-size must be >= 1, got {shard_size}")
    ds = ImageFolder(folder, resolution=1, channels=3)      # file list + labels only; nothing is decoded here
    order = np.random.default_rng(seed).permutation(len(ds.files)) if shuffle else np.arange(len(ds.files))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ds.classes:
        (out / "classes.txt").write_text("\n".join(ds.classes) + "\n")
    n_shards = (len(order) + shard_size - 1) // shard_size
    width = max(6, len(str(n_shards - 1)))
    jobs = []
    for s in range(n_shards):
        path = out / f"{prefix}-{s:0{width}d}.tar"
        if not path.is_file():
            idx = order[s * shard_size:(s + 1) * shard_size]
            jobs.append((path, [(f"{int(i):09d}", ds.files[int(i)], int(ds.labels[int(i)])) for i in idx]))
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as pool:
            for done, _ in enumerate(pool.map(_write_shard, *zip(*jobs)), 1):
                if log is not None:
                    log(f"{done}/{len(jobs)} shards written")
    else:
        for done, (path, items) in enumerate(jobs, 1):
            _write_shard(path, items)
            if log is not None:
                log(f"{path} ({len(items)} images; {done}/{len(jobs)})")
    written = len(jobs)
    last = f"{n_shards - 1:0{width}d}"
    pattern = str(out / (f"{prefix}-{{{'0' * width}..{last}}}.tar" if n_shards > 1 else f"{prefix}-{last}.tar"))
    return ShardSummary(pattern, len(order), n_shards, len(ds.classes), written)
