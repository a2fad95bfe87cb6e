"""An image folder -> WebDataset tar shards that the `wds:<pattern>` data spec reads.

Each sample is `<key>.jpg` or `<key>.png` (the file's bytes unchanged for JPEG/PNG; other formats are re-encoded
as PNG) plus `<key>.cls` (the class index as text, classes = sorted subfolder names, as `ImageFolder` numbers
them; a flat folder has no `.cls`). Samples are shuffled with a fixed seed (so a streaming reader's shuffle
buffer sees all classes) and written in shards of `shard_size`; each shard is written to a temporary name and
renamed when complete, so an interrupted run never leaves a truncated tar under a final name, and a rerun skips
shards that already exist. `classes.txt` lists the class names in index order. `.<prefix>-shards.json` records the
settings and the file list the shards were cut from: a rerun resumes only a folder made with the same ones, and a
non-empty folder made otherwise (or not by make-shards) is refused unless `overwrite` (then every shard is rewritten).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from robustok.errors import DataError
from robustok.hub import atomic_file

KEEP_AS_IS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}


@dataclass
class ShardSummary:
    pattern: str  # brace pattern for `wds:`
    num_images: int
    num_shards: int
    num_classes: int
    written: int  # shards written by this call (the others existed already)


def _settings(ds, folder: Path, shard_size: int, prefix: str, shuffle: bool, seed: int) -> dict:
    """What decides the shards' content: the settings and a hash of the (relative) file list and labels."""
    h = hashlib.sha256()
    for f, label in zip(ds.files, ds.labels):
        h.update(f"{Path(f).relative_to(folder)}\t{int(label)}\n".encode())
    return {
        "num_images": len(ds.files),
        "files_sha256": h.hexdigest()[:16],
        "shard_size": shard_size,
        "prefix": prefix,
        "shuffle": shuffle,
        "seed": seed,
    }


def _may_resume(out: Path, mark: Path, settings: dict, overwrite: bool) -> bool:
    """True if the shards already in `out` may be kept (made with `settings`); refuses a non-empty folder made
    otherwise unless `overwrite` (then False: every shard is rewritten)."""
    from robustok.outputs import OutputExistsError

    if not out.is_dir() or not any(out.iterdir()):
        return False
    try:
        previous = json.loads(mark.read_text()) if mark.is_file() else None
    except (OSError, ValueError):
        previous = None
    if previous == settings:
        return True
    if overwrite:
        return False
    if previous is None:
        why = f"not a make-shards folder for --prefix {settings['prefix']} (no {mark.name})"
    else:
        keys = sorted(k for k in settings if previous.get(k) != settings[k])
        why = f"its shards were made with different {', '.join(keys)} (see {mark.name})"
    raise OutputExistsError(
        f"--out {out}: already exists and is not empty; {why}; pass --overwrite to write "
        "every shard anew into it, or choose another folder (nothing was changed)"
    )


def _sample_bytes(path: Path) -> tuple[str, bytes]:
    """(extension, bytes) of one image: JPEG/PNG bytes unchanged, anything else re-encoded as PNG."""
    from robustok.data.datasets import open_image

    ext = KEEP_AS_IS.get(path.suffix.lower())
    img = open_image(path)  # validates every file (corrupt/truncated -> DataError naming it)
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
    with atomic_file(path) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, src, label in items:
            ext, data = _sample_bytes(src)
            _add(tar, f"{key}.{ext}", data)
            if label >= 0:
                _add(tar, f"{key}.cls", str(label).encode())


def make_shards(
    folder: str | Path,
    out: str | Path,
    shard_size: int = 1000,
    prefix: str = "shard",
    shuffle: bool = True,
    seed: int = 0,
    workers: int = 1,
    log: Optional[Callable[[str], None]] = None,
    overwrite: bool = False,
) -> ShardSummary:
    """Write `folder`'s images as `out/<prefix>-NNNNNN.tar` shards (`workers` processes); return a summary with
    the `wds:` pattern. Resumes a folder made with the same settings; see the module docstring for `overwrite`."""
    from robustok.data.datasets import ImageFolder
    from robustok.outputs import check_disjoint, output_lock

    if shard_size < 1:
        raise DataError(f"--shard-size must be >= 1, got {shard_size}")
    ds = ImageFolder(folder, resolution=1, channels=3)  # file list + labels only; nothing is decoded here
    order = np.random.default_rng(seed).permutation(len(ds.files)) if shuffle else np.arange(len(ds.files))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    check_disjoint(out, {"image folder": folder})
    with output_lock(out):  # a second make-shards into the same --out stops at once
        settings = _settings(ds, Path(folder), shard_size, prefix, shuffle, seed)
        mark = out / f".{prefix}-shards.json"
        resume = _may_resume(out, mark, settings, overwrite)
        out.mkdir(parents=True, exist_ok=True)
        from robustok.hub import atomic_write_bytes

        atomic_write_bytes(mark, json.dumps(settings, indent=2).encode())
        if ds.classes:
            atomic_write_bytes(out / "classes.txt", ("\n".join(ds.classes) + "\n").encode())
        n_shards = (len(order) + shard_size - 1) // shard_size
        width = max(6, len(str(n_shards - 1)))
        jobs = []
        for s in range(n_shards):
            path = out / f"{prefix}-{s:0{width}d}.tar"
            if not (resume and path.is_file()):
                idx = order[s * shard_size : (s + 1) * shard_size]
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
