"""The library API for evaluation: generation metrics of a sample set and the metrics of a tokenizer.

`robustok fid` and `robustok eval-tokenizer` are thin command-line wrappers of these two functions, and the demo
computes its gFID and tokenizer metrics with them, so Python, the CLI and the demo give the same numbers.
Under `torchrun` every rank calls them with the same arguments and extracts features of a strided share; the
statistics are gathered once and rank 0 gets the results (other ranks get an empty dict from `evaluate_samples`).
Images given as tensors or batches (not as a spec or path) are taken as this rank's share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from robustok.errors import ConfigError

SAMPLE_METRICS = ("fid", "is", "pr", "acc")
TOKENIZER_METRICS = ("psnr", "ssim", "lpips", "rfid", "pfid", "usage")
ImageSet = Union[str, Path, torch.Tensor, Iterable[torch.Tensor], Any]  # spec/path, uint8 images/batches, SetStats


def feature_net(
    features: Any = "fmnist",
    device: Optional[str | torch.device] = None,
    inception_weights: Optional[str] = None,
    data_root: Optional[str] = None,
    log=None,
):
    """`features` as a feature network: a registered name (`robustok.metrics.features.FEATURES`) or a network."""
    if not isinstance(features, str):
        return features
    from robustok.metrics.features import get_feature_net

    return get_feature_net(
        features,
        device or ("cuda" if torch.cuda.is_available() else "cpu"),
        inception_weights,
        data_root,
        log=log or (lambda m: None),
    )


def _stats(images: ImageSet, net, what: str, keep_features: bool, keep_logits: bool, kw: dict):
    """SetStats of an image set given as a spec/path, a uint8 tensor, an iterable of uint8 batches or SetStats."""
    from robustok.metrics.fid import SetStats, extract, source_stats

    if isinstance(images, SetStats):
        if (keep_features and images.features is None) or (keep_logits and images.logits is None):
            raise ConfigError(f"{what}: precomputed statistics hold no per-image features/logits for IS/PR/acc")
        return images
    if isinstance(images, (str, Path)):
        return source_stats(str(images), net, keep_features=keep_features, keep_logits=keep_logits, **kw)
    if torch.is_tensor(images):
        tensor, step = images, kw["batch_size"]
        n = len(tensor) if kw["num_images"] is None else min(kw["num_images"], len(tensor))
        images = (tensor[lo : min(lo + step, n)] for lo in range(0, n, step))
    return extract(images, net, what, keep_features, keep_logits)


def _labels(samples: ImageSet, labels: Optional[Sequence[int]], num_images: Optional[int]) -> np.ndarray:
    from robustok.metrics.sources import read_sample_labels

    if labels is not None:
        return np.asarray(labels, dtype=np.int64)[:num_images]
    if not (isinstance(samples, (str, Path)) and str(samples).endswith(".npz")):
        raise ConfigError(
            f"metric acc: {samples if isinstance(samples, (str, Path)) else 'the samples'} must be a "
            "samples .npz with labels (arr_1), or pass labels="
        )
    return read_sample_labels(samples)[:num_images]


def evaluate_samples(
    samples: ImageSet,
    reference: ImageSet,
    metrics: Sequence[str] = ("fid",),
    features: Any = "fmnist",
    *,
    num_images: Optional[int] = None,
    batch_size: int = 100,
    resolution: int = 32,
    data_root: Optional[str] = None,
    labels: Optional[Sequence[int]] = None,
    inception_weights: Optional[str] = None,
    device: Optional[str] = None,
    workers: Optional[int] = 0,
) -> dict:
    """FID of `samples` against `reference`, and optionally IS, precision/recall and class accuracy.

    Image sets: a folder, a samples `.npz` (`arr_0`, ADM layout), a statistics `.npz` (`mu`, `sigma`), a data
    spec (`fashion-mnist:test`, `wds:<pattern>`), a uint8 tensor (N, C, H, W), an iterable of uint8 batches or
    precomputed `robustok.metrics.fid.SetStats`. `metrics` ⊆ fid, is (10 splits), pr (k=3, against the
    reference), acc (needs `labels`, or a samples `.npz` holding them as `arr_1`); `features`: a registered
    feature network name or a network. Returns {"fid", "features", "num_images": [n_samples, n_reference],
    "is", "is_std", "precision", "recall", "class_accuracy" (those asked for)}, as `robustok fid --json` writes.
    Images of folders and data specs are read by `workers` processes (None: as many as suit each set).

        >>> import robustok
        >>> r = robustok.evaluate_samples("samples.npz", "fashion-mnist:test", ["fid", "pr"])  # doctest: +SKIP
        >>> r["fid"], r["precision"], r["recall"]                                                # doctest: +SKIP
    """
    from robustok.distributed import rank_world
    from robustok.metrics.fid import check_sizes, fid_between
    from robustok.metrics.generation import class_accuracy, inception_score, precision_recall

    wanted = list(metrics)
    if not wanted or any(m not in SAMPLE_METRICS for m in wanted):
        raise ConfigError(f"--metrics: choose from {', '.join(SAMPLE_METRICS)}; got {','.join(wanted)!r}")
    y = _labels(samples, labels, num_images) if "acc" in wanted else None
    if "acc" in wanted and features == "inception":
        raise ConfigError(
            "--metrics acc needs a classifier over the generator's classes (e.g. --features "
            "fmnist); the FID Inception's 1008 outputs do not follow ImageNet's class ids"
        )
    net = feature_net(features, device, inception_weights, data_root)
    if ("is" in wanted or "acc" in wanted) and not net.has_logits:
        raise ConfigError(
            f"IS and class accuracy need a feature network with logits; {net.source or net.name} has none"
        )
    kw = dict(batch_size=batch_size, num_images=num_images, data_root=data_root, resolution=resolution, workers=workers)
    a = _stats(
        samples,
        net,
        str(samples) if isinstance(samples, (str, Path)) else "samples",
        "pr" in wanted,
        "is" in wanted or "acc" in wanted,
        kw,
    )
    b = _stats(
        reference, net, str(reference) if isinstance(reference, (str, Path)) else "reference", "pr" in wanted, False, kw
    )
    check_sizes(
        a,
        b,
        str(samples) if isinstance(samples, (str, Path)) else "samples",
        str(reference) if isinstance(reference, (str, Path)) else "reference",
    )
    if rank_world()[0] != 0:
        return {}
    out = {"fid": fid_between(a, b), "features": net.name, "num_images": [a.stats.n, b.stats.n]}
    if "is" in wanted:
        out["is"], out["is_std"] = inception_score(a.logits)
    if y is not None:  # labels were read because "acc" is wanted
        out["class_accuracy"] = class_accuracy(a.logits, y)
    if "pr" in wanted:
        out["precision"], out["recall"] = precision_recall(b.features, a.features, k=3)
    return out


def evaluate_tokenizer(
    tokenizer: Any,
    data: Any = "fashion-mnist:test",
    metrics: Sequence[str] = ("psnr", "ssim", "rfid", "pfid", "usage"),
    features: Any = "fmnist",
    *,
    num_images: Optional[int] = 10_000,
    batch_size: int = 100,
    pfid: Any = None,
    lpips: Any = None,
    data_root: Optional[str] = None,
    inception_weights: Optional[str] = None,
    device: Optional[str] = None,
    log=None,
    workers: Optional[int] = 0,
) -> dict:
    """Reconstruction metrics of a tokenizer on the first `num_images` images of `data`, in one pass.

    `tokenizer`: a directory (any kind `robustok.load_tokenizer` reads) or a loaded tokenizer; `data`: a data
    spec or an iterable of (images [-1, 1], labels) batches; `metrics` ⊆ psnr, ssim, lpips, rfid, pfid, usage;
    `features`: a feature network name or network (rFID/pFID); `pfid`: a `robustok.metrics.pfid.PFIDConfig`
    (default: the paper's grid, seed 0); `lpips`: an `robustok.metrics.lpips.LPIPS` module (for lpips);
    `workers`: processes reading the images of a data spec (None: `robustok.data.loader.workers_for` it).
    Returns the dict `robustok eval-tokenizer --json` writes (psnr, ssim, rfid, pfid, pfid_grid, codebook_usage, ...).

        >>> import robustok
        >>> r = robustok.evaluate_tokenizer("runs/tok/tokenizer", "fashion-mnist:test", ["psnr", "rfid"],
        ...                                 num_images=1000)                                     # doctest: +SKIP
        >>> r["psnr"], r["rfid"]                                                                  # doctest: +SKIP
    """
    from robustok.data import eval_batches
    from robustok.distributed import rank_world
    from robustok.metrics.pfid import PFIDConfig
    from robustok.metrics.tokenizer_eval import evaluate_tokenizer as one_pass
    from robustok.tokenizer.loading import load_tokenizer

    metrics = list(metrics)
    bad = [m for m in metrics if m not in TOKENIZER_METRICS]
    if bad or not metrics:
        raise ConfigError(
            f"--metrics: unknown metric(s) {bad or metrics!r}; choose from {', '.join(TOKENIZER_METRICS)}"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer(tokenizer, map_location=device) if isinstance(tokenizer, (str, Path)) else tokenizer
    tok = tok.eval()
    net = (
        feature_net(features, device, inception_weights, data_root, log)
        if "rfid" in metrics or "pfid" in metrics
        else None
    )
    if isinstance(data, (str, Path)):
        rank, world = rank_world()
        data = eval_batches(
            str(data),
            batch_size,
            num_images,
            tok.config.image_size,
            tok.config.channels,
            root=data_root,
            rank=rank,
            world=world,
            num_workers=workers,
            device=device,
        )
    return one_pass(tok, data, metrics, net, pfid if pfid is not None else PFIDConfig(seed=0), lpips, log=log)
