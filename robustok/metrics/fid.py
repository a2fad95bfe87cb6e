"""FID between image sets, folders, sample files or cached statistics, with any feature network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robustok.distributed import gather_stats, gather_strided, rank_world
from robustok.errors import DataError
from robustok.metrics.features import FeatureNet
from robustok.metrics.frechet import GaussianStats, RunningStats, frechet_distance
from robustok.metrics.sources import ImageSource, is_stats_file


@dataclass
class SetStats:
    """Statistics of one image set, plus optional extras (features/logits kept only when asked for)."""

    stats: GaussianStats
    image_size: tuple[int, int] | None = None
    features: np.ndarray | None = None
    logits: np.ndarray | None = None


def extract(
    batches,
    net: FeatureNet,
    what: str,
    keep_features: bool = False,
    keep_logits: bool = False,
    image_size: tuple[int, int] | None = None,
) -> SetStats:
    """Stream uint8 batches through `net`; accumulate mean/cov; gather across ranks once at the end."""
    running = RunningStats()
    feats, logits = [], []
    size = image_size
    for images in batches:
        if images.dtype != torch.uint8:
            raise DataError(f"{what}: feature extraction needs uint8 images, got {images.dtype}")
        if size is None:
            size = tuple(images.shape[-2:])
        elif tuple(images.shape[-2:]) != size:
            raise DataError(f"{what}: image size {tuple(images.shape[-2:])} differs from the set's {size}")
        if keep_logits:
            f, lg = net.forward_all(images)
            logits.append(lg.numpy())
        else:
            f = net(images)
        running.update(f)
        if keep_features:
            feats.append(f.numpy())
    merged = gather_stats(running)
    # in item order (ranks hold strided shares): IS splits and labels line up as in one process
    out_f = gather_strided(np.concatenate(feats) if feats else None) if keep_features else None
    out_l = gather_strided(np.concatenate(logits) if logits else None) if keep_logits else None
    return SetStats(merged.finalize(what), size, out_f, out_l)


def source_stats(
    spec: str,
    net: FeatureNet,
    batch_size: int = 100,
    num_images: int | None = None,
    data_root: str | None = None,
    resolution: int = 32,
    keep_features: bool = False,
    keep_logits: bool = False,
    workers: int | None = 0,
) -> SetStats:
    """Statistics of a folder / sample `.npz` / data spec, or those read from a stats `.npz`; images are read
    by `workers` processes (None: `robustok.data.loader.workers_for` the spec)."""
    if is_stats_file(spec):
        images = None
        if keep_features or keep_logits:
            with np.load(spec) as data:
                if "arr_0" not in data.files:
                    raise DataError(
                        f"{spec}: a statistics file has no per-image features (needed for "
                        "IS/precision/recall) and no images (arr_0) to compute them from"
                    )
            # an ADM reference batch: features of its images (arr_0) for IS/P/R, FID from its stored mu/sigma
            rank, world = rank_world()
            src = ImageSource(spec, num_images, data_root, resolution, workers=workers)
            images = extract(src.batches(batch_size, rank, world), net, spec, keep_features, keep_logits)
        stats = GaussianStats.load(spec)
        if stats.mu.shape[0] != net.dim:
            raise DataError(
                f"{spec}: statistics have dimension {stats.mu.shape[0]} but the {net.name} features "
                f"have {net.dim}: computed with another feature network?"
            )
        with np.load(spec) as data:
            size = _image_size(data["image_size"], spec) if "image_size" in data.files else None
            name = str(data["features"]) if "features" in data.files else None
        if name is not None and name != net.name:
            raise DataError(f"{spec}: statistics were computed with '{name}' features, not '{net.name}'")
        if images is not None:
            stats.n = stats.n or images.stats.n
            return SetStats(stats, size or images.image_size, images.features, images.logits)
        return SetStats(stats, size)
    rank, world = rank_world()
    src = ImageSource(spec, num_images, data_root, resolution, workers=workers)
    return extract(src.batches(batch_size, rank, world), net, spec, keep_features, keep_logits)


def _image_size(value: np.ndarray, spec: str) -> tuple[int, int]:
    """The (H, W) stored in a statistics file."""
    dims = [int(v) for v in np.ravel(value)]
    if len(dims) != 2:
        raise DataError(f"{spec}: image_size must hold 2 values (H, W), got {dims}")
    return dims[0], dims[1]


def save_stats(path: str, s: SetStats, features: str) -> None:
    """Write `mu`, `sigma` (ADM-compatible) plus `num_images`, `features`, `image_size`."""
    from pathlib import Path

    from robustok.hub import atomic_file

    extra = {"image_size": np.array(s.image_size)} if s.image_size else {}
    out = Path(path if str(path).endswith(".npz") else f"{path}.npz")  # as np.savez names it
    with atomic_file(out) as f:  # written under a temporary name, then renamed
        # numpy's stubs match **extra against savez's allow_pickle: bool keyword (extra only holds image_size)
        np.savez(
            f,
            mu=s.stats.mu,
            sigma=s.stats.sigma,
            num_images=np.int64(s.stats.n),
            features=np.array(features),
            **extra,  # type: ignore[arg-type]
        )


def check_sizes(a: SetStats, b: SetStats, name_a: str, name_b: str) -> None:
    if a.image_size and b.image_size and tuple(a.image_size) != tuple(b.image_size):
        raise DataError(
            f"image sizes differ: {name_a} has {a.image_size[0]}x{a.image_size[1]}, {name_b} has "
            f"{b.image_size[0]}x{b.image_size[1]}; FID compares sets of one resolution"
        )


def fid_between(a: SetStats, b: SetStats) -> float:
    return frechet_distance(a.stats, b.stats)
