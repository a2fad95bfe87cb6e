"""Image sets for FID: folders of images, ADM-style sample `.npz` files (`arr_0`, uint8 NHWC), data specs.

Every source yields uint8 batches (B, C, H, W); statistics `.npz` files (`mu`, `sigma`) are handled by the caller.
Specs are classified by `robustok.data.spec.parse_data_spec` and folders use `robustok.data.datasets`'
`IMAGE_SUFFIXES`, as everywhere else. Folders are read as RGB; a data set (`wds:`, a named set) in its own mode:
gray stays 1 channel, colour is RGB (judged by its first image).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from robustok.data.datasets import IMAGE_SUFFIXES
from robustok.errors import DataError

# what np.load raises on a truncated or corrupt .npz (a zip of .npy files)
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def write_samples_npz(path: str | Path, images) -> None:
    """Write uint8 images as an ADM sample file: `arr_0` (N, H, W, C) uint8. Accepts NCHW tensors or NHWC arrays."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
        if images.dtype != torch.uint8:
            raise DataError(f"{path}: samples must be uint8, got {images.dtype}")
        images = images.permute(0, 2, 3, 1).numpy()
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise DataError(f"{path}: samples must be uint8 (N, H, W, C), got {arr.dtype} {arr.shape}")
    np.savez(path, arr_0=arr)


def read_samples_npz(path: str | Path) -> np.ndarray:
    """Read `arr_0` (N, H, W, C) uint8 from an ADM sample file."""
    try:
        with np.load(path) as data:
            if "arr_0" not in data.files:
                raise DataError(
                    f"{path}: sample file needs key 'arr_0' (or 'mu'/'sigma' for statistics), "
                    f"found {sorted(data.files)}"
                )
            arr = data["arr_0"]
    except NPZ_ERRORS as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or arr.dtype != np.uint8:
        raise DataError(f"{path}: 'arr_0' must be uint8 (N, H, W, C) with C in (1, 3), got {arr.dtype} {arr.shape}")
    return arr


def read_sample_labels(path: str | Path) -> np.ndarray:
    """Read `arr_1` (N,) integer class labels from a sample file written by `robustok sample`; N must equal the
    number of images in `arr_0` (read from its header, without loading the images)."""
    try:
        with np.load(path) as data:
            if "arr_1" not in data.files or "arr_0" not in data.files:
                raise DataError(
                    f"{path}: no labels ('arr_1') in this sample file; class accuracy needs the classes "
                    "the samples were generated for (`robustok sample` writes them)"
                )
            labels = data["arr_1"]
            with data.zip.open("arr_0.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                num_images = read_header(f)[0][0]
    except (*NPZ_ERRORS, KeyError, IndexError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'arr_1' must be 1-D integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) != num_images:
        raise DataError(f"{path}: {num_images} images but {len(labels)} labels (arr_1)")
    return labels.astype(np.int64)


def is_stats_file(path: str | Path) -> bool:
    """True for an `.npz` holding `mu` and `sigma` (ADM reference batches hold both those and `arr_0`)."""
    p = Path(path)
    if p.suffix != ".npz" or not p.is_file():
        return False
    try:
        with np.load(p) as data:
            return "mu" in data.files and "sigma" in data.files
    except NPZ_ERRORS as err:
        raise DataError(f"{p}: not a readable .npz file ({err})") from None


@dataclass
class ImageSource:
    """A named image set that yields uint8 batches; `image_size` is (H, W) once known."""

    spec: str
    num_images: int | None = None
    data_root: str | None = None
    resolution: int = 32
    image_size: tuple[int, int] | None = None
    workers: int | None = 0  # reading processes (None: `robustok.data.loader.workers_for` the spec)

    def batches(self, batch_size: int = 100, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
        from robustok.data.spec import parse_data_spec

        kind = parse_data_spec(self.spec, allow_npz=True).kind
        if kind == "npz":
            yield from self._array_batches(read_samples_npz(self.spec), batch_size, rank, world)
        elif kind == "folder":
            yield from self._folder_batches(Path(self.spec), batch_size, rank, world)
        else:
            yield from self._spec_batches(batch_size, rank, world)

    def _check_size(self, size: tuple[int, int], where: str) -> tuple[int, int]:
        """The set's (H, W): `size` for the first batch, else checked to be the same."""
        if self.image_size is None:
            self.image_size = size
        elif self.image_size != size:
            raise DataError(
                f"{where}: image size {size[0]}x{size[1]} differs from the set's "
                f"{self.image_size[0]}x{self.image_size[1]}; all images must have one size"
            )
        return self.image_size

    def _array_batches(self, arr: np.ndarray, batch_size: int, rank: int, world: int):
        n = len(arr) if self.num_images is None else min(self.num_images, len(arr))
        self._check_size(tuple(arr.shape[1:3]), self.spec)
        idx = np.arange(rank, n, world)
        for i in range(0, len(idx), batch_size):
            yield torch.from_numpy(np.ascontiguousarray(arr[idx[i : i + batch_size]])).permute(0, 3, 1, 2)

    def _folder_batches(self, root: Path, batch_size: int, rank: int, world: int):
        from robustok.data import open_image
        from robustok.data.loader import image_batches, workers_for

        files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"{root}: no images found (looked for {sorted(IMAGE_SUFFIXES)})")
        if self.num_images is not None:
            files = files[: self.num_images]
        first = open_image(files[0])
        size = self._check_size((first.size[1], first.size[0]), str(files[0]))
        images = FolderImages(files, size)
        for batch in image_batches(
            images, batch_size, rank=rank, world=world, workers=workers_for(self.spec, self.workers)
        ):
            yield batch.permute(0, 3, 1, 2)

    def _spec_batches(self, batch_size: int, rank: int, world: int):
        from robustok.data import eval_batches, to_uint8
        from robustok.data.datasets import native_channels

        channels = native_channels(self.spec, self.data_root)
        for x, _ in eval_batches(
            self.spec,
            batch_size,
            self.num_images,
            resolution=self.resolution,
            channels=channels,
            root=self.data_root,
            rank=rank,
            world=world,
            num_workers=self.workers,
        ):
            self._check_size((int(x.shape[-2]), int(x.shape[-1])), self.spec)
            yield to_uint8(x)


class FolderImages(torch.utils.data.Dataset):
    """The files of an image folder as RGB uint8 (H, W, 3) tensors, all of the size `size` (H, W)."""

    def __init__(self, files: list[Path], size: tuple[int, int]):
        self.files, self.size = files, tuple(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from robustok.data import open_image
        from robustok.data.transforms import to_mode

        img = to_mode(open_image(self.files[i]), 3)
        if (img.size[1], img.size[0]) != self.size:
            raise DataError(
                f"{self.files[i]}: image size {img.size[1]}x{img.size[0]} differs from the set's "
                f"{self.size[0]}x{self.size[1]}; all images must have one size"
            )
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
