"""Input throughput on ImageNet-like JPEGs: robustok's input path vs a plain DataLoader, and pretokenize end to end.

    pip install scikit-image                     # the photos the images are made from (once)
    python benchmarks/input.py [--images 2000] [--workers 0,1,2] [--resolution 256] [--device cpu|cuda]

Makes (once, then reuses) a folder of `--images` JPEGs of about 500 x 375 px (landscape or portrait, quality 90)
from random crops and flips of the photos scikit-image ships, then prints side by side, for each worker count:
images/s of the input path alone (`robustok.data.eval_batches` on the folder: decode, ADM center crop to
`--resolution`, tensor), of a plain `torch.utils.data.DataLoader` over PIL with the same transform (the reference
a user would write), and their ratio; then the rate of the tokenizer alone (encoding decoded batches held in
memory), and of `pretokenize` end to end (`write_token_store`, the command's code; a small random conv tokenizer
unless `--tokenizer`) at the largest worker count, against min(input rate, model rate). Goals (issue 24): the
input path within 5% of the plain reference at equal workers; scaling with workers up to the cores; pretokenize
end to end within 10% of min(input, model).
Every rate is the best of `--repeats` passes over the folder after one pass that fills the page cache. Run it on
a quiet machine: rates measured while other processes run mean little.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "grass",
    "gravel",
    "brick",
)


def make_folder(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` JPEGs (quality 90) of 500 x 375 or 375 x 500 px: random 4:3 crops of scikit-image's photos, resized,
    randomly flipped, with a little noise (so no two files are alike). Reused when the folder already holds them."""
    files = sorted(folder.glob("*.JPEG"))
    if len(files) == n:
        return files
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("benchmarks/input.py needs scikit-image for its photos: pip install scikit-image") from None
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    photos = []
    for name in PHOTOS:
        arr = getattr(data, name)()
        photos.append(Image.fromarray(arr).convert("RGB"))
    rng = np.random.default_rng(seed)
    for i in range(n):
        photo = photos[i % len(photos)]
        portrait = rng.random() < 0.25
        w, h = photo.size
        ch = int(min(h, w * 3 / 4) * rng.uniform(0.5, 1.0))  # a 4:3 box, landscape
        cw = int(ch * 4 / 3)
        if portrait:
            cw, ch = int(min(w, h * 3 / 4) * rng.uniform(0.5, 1.0)), 0
            ch = int(cw * 4 / 3)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = photo.crop((left, top, left + cw, top + ch)).resize((375, 500) if portrait else (500, 375), Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-4, 5, (img.size[1], img.size[0], 1), dtype=np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / f"img_{i:06d}.JPEG", quality=90)
    return sorted(folder.glob("*.JPEG"))


class PlainFolder(torch.utils.data.Dataset):
    """The reference: what a user would write (PIL open, RGB, the same center crop and tensor conversion)."""

    def __init__(self, files: list[Path], resolution: int):
        self.files, self.resolution = files, resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from robustok.data.transforms import center_crop, to_tensor

        return to_tensor(center_crop(Image.open(self.files[i]).convert("RGB"), self.resolution)), 0


def rate(run, images: int, repeats: int) -> float:
    """Best images/s of `repeats` calls of `run()` (each reads `images` images)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return images / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    from robustok.data import build_dataset, eval_batches
    from robustok.data.loader import default_workers
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.tokenizer.model import Tokenizer, TokenizerConfig
    from robustok.tokens.store import write_token_store

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--folder",
        default=str(Path(tempfile.gettempdir()) / "robustok-input-bench"),
        help="where the JPEGs are made (reused when it holds --images of them)",
    )
    p.add_argument("--images", type=int, default=2000)
    p.add_argument(
        "--workers",
        default=",".join(str(w) for w in sorted({0, 1, 2, min(cores, 8)})),
        help="comma list of worker counts (default 0,1,2 and the cores this process may use)",
    )
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tokenizer", default=None, help="a tokenizer directory (default: a small random conv one)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--pretok-images",
        type=int,
        default=None,
        help="images pretokenized end to end (default: all on CUDA, at most 512 on a CPU)",
    )
    a = p.parse_args()
    workers = [int(w) for w in a.workers.split(",") if w.strip()]
    files = make_folder(Path(a.folder), a.images)
    n, res, bs = len(files), a.resolution, a.batch_size
    for f in files:  # fill the page cache: decode, not disk
        f.read_bytes()
    print(f"{n} JPEGs of ~500x375 px in {a.folder}; {cores} cores; center crop to {res} px; batch {bs}")

    def ours(w: int):
        return lambda: sum(len(x) for x, _ in eval_batches(a.folder, bs, None, res, 3, num_workers=w))

    def plain(w: int):
        loader = torch.utils.data.DataLoader(PlainFolder(files, res), batch_size=bs, num_workers=w)
        return lambda: sum(len(x) for x, _ in loader)

    print(
        "\n| workers | input path (img/s) | plain DataLoader (img/s) | input / plain (goal >= 0.95) "
        "| input path vs 0 workers |"
    )
    print("|---:|---:|---:|---:|---:|")
    inputs = {}
    for w in workers:
        inputs[w], ref = rate(ours(w), n, a.repeats), rate(plain(w), n, a.repeats)
        print(
            f"| {w} | {inputs[w]:.1f} | {ref:.1f} | {inputs[w] / ref:.3f} | {inputs[w] / inputs[workers[0]]:.2f}x |",
            flush=True,
        )

    device = torch.device(a.device)
    if a.tokenizer:
        tok = load_tokenizer(a.tokenizer, map_location=str(device)).eval()
    else:
        torch.manual_seed(0)
        tok = (
            Tokenizer(
                TokenizerConfig(
                    image_size=res,
                    channels=3,
                    base_channels=8,
                    channel_mult=[1, 2, 4, 8, 8],
                    hidden_dim=64,
                    codebook_size=4096,
                    code_dim=8,
                )
            )
            .to(device)
            .eval()
        )
    held = [
        x.to(device)
        for x, _ in eval_batches(
            a.folder, bs, 8 * bs, tok.config.image_size, tok.config.channels, num_workers=max(workers)
        )
    ]  # 8 batches, decoded once

    def model_only():
        with torch.no_grad():
            for x in held:
                tok.encode(x)
        _sync(device)

    model = rate(model_only, sum(len(x) for x in held), a.repeats)
    w = max(workers)
    out = Path(tempfile.mkdtemp(prefix="robustok-input-bench-store-"))
    ds = build_dataset(a.folder, tok.config.image_size, tok.config.channels)

    count = a.pretok_images or (n if device.type == "cuda" else min(n, 512))

    def pretokenize():
        write_token_store(tok, ds, out / "store", batch_size=bs, limit=count, progress=False, overwrite=True, workers=w)
        _sync(device)

    end_to_end = rate(pretokenize, count, a.repeats)
    shutil.rmtree(out, ignore_errors=True)
    bound = min(inputs[w], model)
    print(f"\ntokenizer alone ({tok.config.image_size} px, {device}): {model:.1f} img/s")
    print(
        f"pretokenize end to end, {count} images, {w} workers: {end_to_end:.1f} img/s = {end_to_end / bound:.3f} of "
        f"min(input {inputs[w]:.1f}, model {model:.1f}) (goal >= 0.90)"
    )
    print(f"(robustok's default --workers here: {default_workers()})")


if __name__ == "__main__":
    main()
