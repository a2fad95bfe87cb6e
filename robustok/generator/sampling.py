"""From a trained generator + its tokenizer to images: batched sampling, PNG folders and ADM-style `samples.npz`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from robustok.errors import ConfigError
from robustok.generator.options import SamplingOptions

__all__ = ["SamplingOptions", "balanced_labels", "generate", "sample_codes", "write_samples"]


def in_precision(generator: Any, opts: SamplingOptions, sample: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`sample()` under the autocast of `opts.precision` on the generator's device; float results as fp32."""
    from robustok.train.precision import autocast, resolve_precision

    device = next(generator.parameters()).device
    with autocast(resolve_precision(opts.precision, device)[0], device):
        out = sample()
    return out.float() if out.is_floating_point() else out


@torch.no_grad()
def sample_codes(
    generator: Any, labels: torch.Tensor, opts: SamplingOptions, rng: Optional[torch.Generator] = None
) -> torch.Tensor:
    """The generator's tokens for class ids `labels` (B,): ids (B, h, w) or raw latents (B, C, h, w)."""
    return in_precision(generator, opts, lambda: generator.sample_codes(labels, opts, generator=rng))


@torch.no_grad()
def generate(
    generator: Any, tokenizer: Any, labels: torch.Tensor, opts: SamplingOptions, rng: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Images float [-1, 1] (B, C, H, W) for class ids `labels` (B,)."""
    return generator.decode(tokenizer, sample_codes(generator, labels, opts, rng))


def balanced_labels(num_images: int, num_classes: int, null_class: int) -> torch.Tensor:
    """`i % num_classes` for i < num_images (equal counts per class); the null class if unconditional."""
    if num_classes <= 0:
        return torch.full((num_images,), null_class, dtype=torch.long)
    return torch.arange(num_images) % num_classes


def write_samples(
    generator: Any,
    tokenizer: Any,
    num_images: int,
    out: str | Path,
    opts: SamplingOptions,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool = True,
    classes: Optional[list[int]] = None,
    overwrite: bool = False,
    labels: str = "balanced",
    resize: int = 0,
) -> Path:
    """Sample `num_images` images (classes balanced, or only `classes`) into `out/<class>/<index>.png` and
    `out/samples.npz` (`arr_0` uint8 NHWC, `arr_1` int64 labels). Returns the npz path.

    `labels="random"`: uniform class draws seeded by `seed` (LlamaGen's evaluation) instead of equal counts.
    `resize`: the decoded images are resized to this size (bicubic, as LlamaGen's 384 -> 256) before saving.

    The images go to a temporary sibling folder that is renamed to `out` when complete; an existing non-empty
    `out` is refused unless `overwrite` (then replaced only at that rename).

    Batch b draws from its own seed stream (`batch_seed(seed, b)`), so under `torchrun` the ranks take strided
    batches and the merged `samples.npz` holds the same images as one process's."""
    from tqdm import tqdm

    from robustok.data import to_uint8
    from robustok.distributed import rank_world
    from robustok.distributed_outputs import mine, sharded
    from robustok.outputs import check_out, staged_output
    from robustok.seeding import batch_seed
    from robustok.train.faults import fault_point

    if num_images < 1:
        raise ConfigError(f"--num-images must be >= 1, got {num_images}")
    opts = generator.sampling(opts)
    opts.check()
    generator.check_tokenizer(tokenizer)
    n_cls = generator.config.num_classes
    if classes:
        bad = [c for c in classes if not 0 <= c < max(n_cls, 1)]
        if bad or n_cls == 0:
            raise ConfigError(f"--classes {bad or classes}: the generator has {n_cls} classes")
        class_ids = torch.tensor(classes)[torch.arange(num_images) % len(classes)]
    elif labels == "random" and n_cls > 0:
        class_ids = torch.randint(0, n_cls, (num_images,), generator=torch.Generator().manual_seed(seed))
    elif labels in ("balanced", "random"):
        class_ids = balanced_labels(num_images, n_cls, generator.null_class)
    else:
        raise ConfigError(f"labels must be 'balanced' or 'random', got {labels!r}")
    check_out(out, overwrite)
    dev = next(generator.parameters()).device
    out = Path(out)
    rank, _ = rank_world()
    num_batches = -(-num_images // batch_size)
    share = sum(min(batch_size, num_images - b * batch_size) for b in mine(num_batches))
    bar = tqdm(total=share, desc="sample", unit="img", disable=not progress or rank != 0, dynamic_ncols=True)
    with staged_output(out, overwrite) as staged:  # every rank writes its PNGs into rank 0's build folder

        def produce():
            for b in mine(num_batches):  # under torchrun: this rank's strided share of the batches
                lo = b * batch_size
                y = class_ids[lo : lo + batch_size].to(dev)
                rng = torch.Generator(device=dev).manual_seed(batch_seed(seed, b))
                img = generate(generator, tokenizer, y, opts, rng)
                if resize:
                    img = torch.nn.functional.interpolate(img, size=(resize, resize), mode="bicubic")
                img = to_uint8(img).permute(0, 2, 3, 1).cpu().numpy()
                _save_pngs(staged.build, img, y.tolist(), lo, n_cls)
                bar.update(img.shape[0])
                fault_point("samples-batch", staged.build)
                yield b, {"images": img}

        arrays = [a["images"] for _, a in sharded(staged.parts, produce())]
        bar.close()
        if rank == 0:
            np.savez(staged.build / "samples.npz", np.concatenate(arrays), class_ids.numpy().astype(np.int64))
            staged.commit()
    return out / "samples.npz"


def _save_pngs(out: Path, img: np.ndarray, labels: list[int], start: int, num_classes: int) -> None:
    """`out/<class>/<index>.png` (or `out/uncond/...`) for uint8 NHWC images numbered from `start`."""
    from PIL import Image

    for k, label in enumerate(labels):
        folder = out / (f"{label:03d}" if label < num_classes else "uncond")
        folder.mkdir(exist_ok=True)
        pix = img[k, :, :, 0] if img.shape[-1] == 1 else img[k]
        Image.fromarray(pix).save(folder / f"{start + k:06d}.png")
