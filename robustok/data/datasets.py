"""Datasets behind one spec string: `fashion-mnist:train|test`, an image folder, or `wds:<shard pattern>`.

`robustok.data.spec.parse_data_spec` classifies a spec; `DATASET_KINDS` maps its kind to a builder
`(value, resolution, channels, train, root, seed) -> dataset`; `IMAGE_SUFFIXES` is the one list of image file
suffixes (training folders and FID folders alike). A new data set registers a kind here and its names with
`robustok.data.spec.register_named_spec`.

Map-style datasets take `(index, seed)` pairs from `GlobalBatchSampler`, so augmentation is a pure function
of (run seed, epoch, index): deterministic for any number of workers or ranks, and exactly resumable.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import warnings
import zlib
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, IterableDataset

from robustok.data.fashion_mnist import load_fashion_mnist
from robustok.data.spec import parse_data_spec
from robustok.data.transforms import center_crop, random_crop, to_mode, to_tensor
from robustok.errors import DataError
from robustok.extras import require
from robustok.registry import Registry

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".JPEG"}
MIN_IMAGE_SIDE = 8  # smaller images are degenerate (an icon, a 1x1 placeholder): an error, not an upsample


def check_pixels(path: str | Path, size: tuple[int, int]) -> None:
    """Refuse (`DataError` naming the file) an image whose header declares more pixels than Pillow's limit
    (`PIL.Image.MAX_IMAGE_PIXELS`, about 89 million; None: no limit), before it is decoded."""
    limit = Image.MAX_IMAGE_PIXELS
    w, h = size
    if limit is not None and w * h > limit:
        raise DataError(
            f"{path}: refused, image too large ({w}x{h} = {w * h:,} pixels, over the limit of "
            f"{limit:,}; decoding it would take about {w * h * 3 / 2**20:,.0f} MB); nothing was decoded"
        )


def open_image(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Open and fully decode an image, raising `DataError` naming the file if it is empty, corrupt, truncated,
    over Pillow's pixel limit (checked from the header, before decoding) or smaller than `MIN_IMAGE_SIDE`
    pixels on a side."""
    try:
        if data is None:
            if Path(path).stat().st_size == 0:
                raise DataError(f"{path}: empty (zero-byte) image file")
        with warnings.catch_warnings():  # Pillow's warning about the size: check_pixels refuses it instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path if data is None else io.BytesIO(data))
        check_pixels(path, img.size)  # from the header, before anything is decoded
        img.load()
    except DataError:
        raise
    except Image.DecompressionBombError as err:
        raise DataError(f"{path}: refused, image too large ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None
    if min(img.size) < MIN_IMAGE_SIDE:
        raise DataError(
            f"{path}: image is {img.size[0]}x{img.size[1]} pixels; images smaller than "
            f"{MIN_IMAGE_SIDE} pixels on a side are not used (degenerate, would be upsampled)"
        )
    return img


class ImageDataset(Dataset):
    """Base: subclasses provide `__len__`, `load(i) -> PIL image` and `labels`; this applies the transforms."""

    labels: np.ndarray
    num_classes: int

    def __init__(self, resolution: int, channels: int, train: bool):
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        self.resolution, self.channels, self.train = resolution, channels, train

    def load(self, i: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def first_image(self) -> Image.Image:
        """The first image, in its own mode (see `native_channels`)."""
        return self.load(0)

    def __getitem__(self, item) -> tuple[torch.Tensor, int]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        img = to_mode(self.load(int(i)), self.channels)
        if self.train and seed is not None:
            img = random_crop(img, self.resolution, np.random.default_rng(seed))
        elif img.size != (self.resolution, self.resolution):
            img = center_crop(img, self.resolution)
        return to_tensor(img), int(self.labels[int(i)])


class FashionMNIST(ImageDataset):
    """Fashion-MNIST, 28x28 gray, zero-padded to 32x32 (then resized if `resolution` != 32)."""

    def __init__(
        self, split: str, resolution: int = 32, channels: int = 1, train: bool = False, root: str | None = None
    ):
        super().__init__(resolution, channels, train)
        images, self.labels = load_fashion_mnist(split, root)
        self.images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
        self.num_classes = 10

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i], "L")


class ImageFolder(ImageDataset):
    """Images under a folder: class subfolders -> labels by sorted name; a flat folder -> unlabeled (label -1)."""

    def __init__(self, root: str | Path, resolution: int, channels: int, train: bool = False):
        super().__init__(resolution, channels, train)
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: data folder not found")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files: list[Path] = []
        labels: list[int] = []
        if subdirs:
            self.classes = [p.name for p in subdirs]
            for label, d in enumerate(subdirs):
                found = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
                if not found:
                    raise DataError(f"{d}: class folder contains no images")
                files += found
                labels += [label] * len(found)
        else:
            self.classes = []
            files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            labels = [-1] * len(files)
        if not files:
            raise DataError(f"{root}: no images found (looked for {sorted(IMAGE_SUFFIXES)})")
        self.files, self.labels = files, np.asarray(labels, dtype=np.int64)
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> Image.Image:
        return open_image(self.files[i])


class WebDatasetShards(IterableDataset):
    """WebDataset tar shards with `.png`/`.jpg`/`.jpeg` images and optional `.cls` labels, split by rank and worker.

    An endless, shuffled stream (the shuffle seed depends on the run seed and the step it starts from).
    `rank`/`world` are set by `train_batches`: data-loader workers (spawned or forked) split the shards and seed
    their shuffle by them, as they cannot ask the process group; unset, the process group decides.
    """

    rank: Optional[int] = None
    world: Optional[int] = None

    def __init__(
        self,
        pattern: str,
        resolution: int,
        channels: int,
        train: bool = False,
        seed: int = 0,
        num_classes: int = 0,
        repeat: bool = True,
    ):
        wds = require("webdataset", "wds: shard data sets")

        self.pattern, self.resolution, self.channels, self.train = pattern, resolution, channels, train
        self.seed, self.num_classes, self.repeat = seed, num_classes, repeat
        self.urls = list(wds.shardlists.expand_urls(pattern))
        missing = [u for u in self.urls if "://" not in u and not Path(u).is_file()]
        if not self.urls or missing:
            raise DataError(f"wds:{pattern}: shard(s) not found: {missing[:3] or pattern}")

    def first_image(self) -> Image.Image:
        """The first image of the first shard, in its own mode."""
        wds = require("webdataset", "wds: shard data sets")

        ds = wds.WebDataset(self.urls[:1], shardshuffle=False, empty_check=False)
        for sample in _checked(ds, self.pattern):
            return self._image(sample)
        raise DataError(f"wds:{self.pattern}: the first shard holds no samples")

    def _image(self, sample: dict) -> Image.Image:
        key = sample.get("__key__", "?")
        raw = next((sample[k] for k in ("png", "jpg", "jpeg", "webp") if k in sample), None)
        if raw is None:
            raise DataError(f"{sample.get('__url__', self.pattern)}:{key}: sample has no .png/.jpg image")
        return open_image(f"{sample.get('__url__', self.pattern)}:{key}", raw)

    def _rank_world(self) -> tuple[int, int]:
        """The explicit `rank`/`world`, else the process group's, else torchrun's environment (what a
        data-loader worker of a torchrun rank sees), else (0, 1)."""
        if self.rank is not None and self.world is not None:
            return self.rank, self.world
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def _pipeline(self, shuffle: bool, split_workers: bool):
        wds = require("webdataset", "wds: shard data sets")

        rank, world = self._rank_world()
        return wds.WebDataset(
            self.urls,
            shardshuffle=1000 if shuffle else False,
            seed=self.seed,
            nodesplitter=partial(_split_by_rank, rank=rank, world=world),
            workersplitter=wds.split_by_worker if split_workers else None,
            empty_check=False,
        )

    def samples(self) -> Iterator[dict]:
        """This rank's undecoded samples in shard order, once, not split by worker (`robustok.data.loader`
        has every worker read them all and decode only its own batches)."""
        return _checked(self._pipeline(False, False), self.pattern)

    def item(self, sample: dict, rng: Optional[np.random.Generator] = None) -> tuple[torch.Tensor, int]:
        """The decoded, cropped image of one sample and its label (-1 if none)."""
        key = sample.get("__key__", "?")
        img = to_mode(self._image(sample), self.channels)
        if self.train:
            if rng is None:
                raise ValueError("WebDatasetShards.item: a training (random-crop) item needs an `rng`")
            img = random_crop(img, self.resolution, rng)
        else:
            img = center_crop(img, self.resolution)
        return to_tensor(img), _label(sample, key)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, worker, self._rank_world()[0]])
        ds = self._pipeline(self.train, True)
        if self.train:
            ds = ds.shuffle(1000, rng=_PyRandom(rng))
        while True:
            for sample in _checked(ds, self.pattern):
                yield self.item(sample, rng)
            if not self.repeat:
                return


def _checked(samples, pattern: str) -> Iterator[dict]:
    """Iterate WebDataset samples, turning a corrupt or unreadable tar into a `DataError` naming the shard."""
    import tarfile

    it = iter(samples)
    while True:
        try:
            sample = next(it)
        except StopIteration:
            return
        except (tarfile.TarError, OSError, EOFError, ValueError) as err:
            shard = next(
                (a for a in getattr(err, "args", ()) if isinstance(a, str) and a != str(err.args[0])), f"wds:{pattern}"
            )
            raise DataError(
                f"{shard}: corrupt or unreadable WebDataset tar shard ({err.args[0] if err.args else err})"
            ) from None
        yield sample


def _label(sample: dict, key: str) -> int:
    if "cls" not in sample:
        return -1
    try:
        return int(sample["cls"].decode().strip())
    except (UnicodeDecodeError, ValueError):
        raise DataError(
            f"{sample.get('__url__', '?')}:{key}.cls: not an integer class label ({sample['cls'][:20]!r})"
        ) from None


class _PyRandom:
    """Adapter giving webdataset's shuffle a seeded `random.Random`-like object."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def randint(self, a: int, b: int) -> int:
        return int(self.rng.integers(a, b + 1))

    def random(self) -> float:
        return float(self.rng.random())


def _split_by_rank(urls: Iterable[Any], rank: int, world: int) -> Iterator[Any]:
    """Every `world`-th shard from `rank` (a module function: it must pickle into spawned workers)."""
    return itertools.islice(urls, rank, None, world)


DATASET_KINDS: Registry = Registry("data set kind", "data spec")
DATASET_KINDS.register(
    "fashion-mnist",
    lambda value, resolution, channels, train, root, seed: FashionMNIST(value, resolution, channels, train, root),
)
DATASET_KINDS.register(
    "wds",
    lambda value, resolution, channels, train, root, seed: WebDatasetShards(value, resolution, channels, train, seed),
)
DATASET_KINDS.register(
    "folder", lambda value, resolution, channels, train, root, seed: ImageFolder(value, resolution, channels, train)
)


def build_dataset(
    spec: str, resolution: int = 32, channels: int = 1, train: bool = False, root: Optional[str] = None, seed: int = 0
):
    """The dataset named by `spec`: `fashion-mnist:train|test`, a folder path, or `wds:<pattern>` (see data.spec)."""
    parsed = parse_data_spec(str(spec))
    return DATASET_KINDS.lookup(parsed.kind)(parsed.value, resolution, channels, train, root, seed)


def native_channels(spec: str, root: Optional[str] = None) -> int:
    """1 if the images of a data spec are gray, else 3, judged by its first image (Fashion-MNIST: 1)."""
    img = build_dataset(spec, channels=3, root=root).first_image()
    return 1 if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Endless batches of `(index, seed)` for this rank, starting at global step `start_step`.

    Each epoch is a permutation seeded by (seed, epoch); global batch b is positions [b*B, (b+1)*B) of it and
    rank r takes its r-th slice, so the global data order does not depend on the number of ranks.
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        start_step: int = 0,
        shuffle: bool = True,
    ):
        if global_batch % world:
            raise DataError(f"global batch {global_batch} is not divisible by the {world} ranks")
        if n < global_batch:
            raise DataError(f"data set has {n} images, fewer than one global batch of {global_batch}")
        self.n, self.B, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.start_step, self.shuffle = start_step, shuffle
        self.per_epoch = n // global_batch
        self.local = global_batch // world

    def __iter__(self):
        step = self.start_step
        while True:
            epoch, b = divmod(step, self.per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
            lo = b * self.B + self.rank * self.local
            idx = order[lo : lo + self.local]
            yield [(int(i), [self.seed, epoch, int(i)]) for i in idx]
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62
